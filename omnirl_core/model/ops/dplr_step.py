"""Per-step DPLR recurrence (RWKV-7) compiled with numba, forward and backward written out: the CPU kernel for
small heads, where the chunked matrix form of :mod:`.dplr` does several times the arithmetic of the recurrence
itself (at head dim 16 and chunk 32 about 4.7x).

Same semantics, arguments and results as :func:`.dplr.dplr_naive`. Per batch row and head, state ``S`` [K, V]::

    u_t = alpha_t^T S_{t-1}                               (the low-rank read of the undecayed previous state)
    S_t = diag(d_t) S_{t-1} + beta_t u_t^T + k_t v_t^T,   d_t = exp(gk_t)
    o_t = S_t^T (scale q_t)

Backward, with ``dS`` the gradient of the loss w.r.t. ``S_t`` (it starts as the final state's gradient) and
``do_t`` that of ``o_t``, for t = T-1 down to 0::

    dS     += (scale q_t) do_t^T                          (o_t's share of dS_t)
    dq_t    = scale S_t do_t
    dk_t    = dS v_t                dv_t    = dS^T k_t
    dbeta_t = dS u_t                du_t    = dS^T beta_t
    dgk_t   = d_t * rowsum(dS * S_{t-1})                  (elementwise product, summed over the values)
    dalpha_t = S_{t-1} du_t
    dS      <- diag(d_t) dS + alpha_t du_t^T             (now the gradient w.r.t. S_{t-1})

and the initial state's gradient is the last ``dS``. The compiled loops take ``scale q`` and ``d = exp(gk)``, which
torch computes (its autograd then applies the chain rule for both: ``dgk = d * dd`` with ``dd = rowsum(dS *
S_{t-1})`` the loops' gradient of ``d``). The backward pass needs ``S_t`` and ``S_{t-1}``: the forward
pass keeps ``u_t`` for every step and the state every ``checkpoint_every`` steps, and the backward pass recomputes
the states inside each such segment from its checkpoint (one multiply-add pass over the state per step, ``u_t``
being known), so memory is ``T * V + (T / checkpoint_every) * K * V`` per head rather than ``T * K * V``.

Precision: float64 inputs are computed in float64 (for ``torch.autograd.gradcheck``), anything else in float32
like the reference; ``o`` comes back in ``v``'s dtype, the state in the computing dtype. The loops run on one
thread (batch x heads one after another) and vectorise over the value channels; ``fastmath`` allows only
reassociation and fused multiply-adds, so NaN and infinity propagate as in the reference.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

__all__ = ["HAVE_NUMBA", "NUMBA_ERROR", "STEP_MAX_HEAD_DIM", "dplr_recurrent", "rwkv7_recurrent", "use_step_kernel"]

STEP_MAX_HEAD_DIM = 64  # per step up to here: measured faster than the chunked form at 8-128 on one thread
CHECKPOINT_EVERY = 16  # steps between stored states; the backward pass recomputes the ones in between

try:
    from numba import njit

    HAVE_NUMBA, NUMBA_ERROR = True, ""
except ImportError as err:  # numba is a dependency; without it the layers run the chunked form and say so
    HAVE_NUMBA, NUMBA_ERROR = False, f"{type(err).__name__}: {err}"

    def njit(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


_FAST = {"reassoc", "contract"}  # vectorised reductions and FMAs; no assumption about NaN or infinity


# Layout: the inputs as [N, T, D] with N = batch x heads (each head's steps one after another: the loops run
# much faster than on the callers' [B, T, H, D], where one head's steps lie H rows apart), the outputs and
# gradients in the callers' [B, T, H, D], states [N, K, V]. ``zero`` is a 0-d array of the computing dtype:
# accumulators start from it, so float32 stays float32 (a Python float would promote every product to float64
# and the loops would not vectorise in single precision).


@njit(cache=True, fastmath=_FAST, inline="always")  # inlined into both callers (a call per row costs ~10%)
def _step(S, ut, ot, vt, at, bt, kt, qt, dt, z):  # pragma: no cover - compiled
    """One step of one row in place: ut = alpha^T S, then S = diag(d) S + beta ut^T + k v^T and ot = S^T q."""
    K, V = S.shape
    for j in range(V):
        ut[j] = z
        ot[j] = z
    for i in range(K):  # u = alpha^T S_{t-1}
        ai = at[i]
        Si = S[i]
        for j in range(V):
            ut[j] += ai * Si[j]
    for i in range(K):  # S_t = diag(d) S_{t-1} + beta u^T + k v^T;  o = S_t^T q
        di, bi, ki, qi = dt[i], bt[i], kt[i], qt[i]
        Si = S[i]
        for j in range(V):
            s = di * Si[j] + bi * ut[j] + ki * vt[j]
            Si[j] = s
            ot[j] += qi * s


@njit(cache=True, fastmath=_FAST)
def _forward(q, k, v, a, b, d, s0, zero, every, o, u, ckpt, s_out):  # pragma: no cover - compiled
    """q (scaled), k, a, b, d = exp(gk): [N, T, K]; v: [N, T, V]; s0: [N, K, V]. Writes o [B, T, H, V], u [N, T, V],
    the states at t = 0, every, 2 every, ... into ckpt [N, ceil(T / every), K, V], the final state into s_out."""
    N, T, K = q.shape
    V = v.shape[2]
    H = o.shape[2]
    z = zero[()]
    S = np.empty((K, V), dtype=s0.dtype)
    for n in range(N):
        bn, hn = n // H, n % H
        S[:, :] = s0[n]
        for t in range(T):
            if t % every == 0:
                ckpt[n, t // every] = S
            _step(S, u[n, t], o[bn, t, hn], v[n, t], a[n, t], b[n, t], k[n, t], q[n, t], d[n, t], z)
        s_out[n] = S


@njit(cache=True, fastmath=_FAST)
def _forward_only(q, k, v, a, b, d, s0, zero, o, s_out):  # pragma: no cover - compiled
    """:func:`_forward` without what only the backward pass reads (``u``, the checkpoints): the no-gradient path
    (online acting, one token at a time, where the per-call cost is most of the time)."""
    N, T, K = q.shape
    V = v.shape[2]
    H = o.shape[2]
    z = zero[()]
    u = np.empty(V, dtype=s0.dtype)
    for n in range(N):
        bn, hn = n // H, n % H
        S = s_out[n]
        S[:, :] = s0[n]
        for t in range(T):
            _step(S, u, o[bn, t, hn], v[n, t], a[n, t], b[n, t], k[n, t], q[n, t], d[n, t], z)


@njit(cache=True, fastmath=_FAST)
def _backward(q, k, v, a, b, d, u, ckpt, s_out, zero, every, do, ds_out,
              dq, dk, dv, da, db, dd, ds0):  # pragma: no cover - compiled
    """Gradients of :func:`_forward` w.r.t. q (scaled), k, v, a, b, d ([B, T, H, D]) and s0 ([N, K, V]), see the
    module docstring; ``do`` [N, T, V], ``ds_out`` [N, K, V]."""
    N, T, K = q.shape
    V = v.shape[2]
    H = dq.shape[2]
    z = zero[()]
    buf = np.empty((every + 1, K, V), dtype=s_out.dtype)  # S_{t0} ... S_{t1} of the current segment
    dS = np.empty((K, V), dtype=s_out.dtype)
    du = np.empty(V, dtype=s_out.dtype)
    n_seg = (T + every - 1) // every
    for n in range(N):
        bn, hn = n // H, n % H
        dS[:, :] = ds_out[n]
        for sg in range(n_seg - 1, -1, -1):
            t0 = sg * every
            t1 = min(t0 + every, T)
            L = t1 - t0
            buf[0] = ckpt[n, sg]
            for m in range(1, L):  # recompute S_{t0+1} ... S_{t1-1} (u is known)
                t = t0 + m - 1
                dt, bt, kt, ut, vt = d[n, t], b[n, t], k[n, t], u[n, t], v[n, t]
                for i in range(K):
                    di, bi, ki = dt[i], bt[i], kt[i]
                    src, dst = buf[m - 1, i], buf[m, i]
                    for j in range(V):
                        dst[j] = di * src[j] + bi * ut[j] + ki * vt[j]
            buf[L] = ckpt[n, sg + 1] if sg + 1 < n_seg else s_out[n]
            for t in range(t1 - 1, t0 - 1, -1):
                m = t - t0
                qt, kt, bt, dt, at = q[n, t], k[n, t], b[n, t], d[n, t], a[n, t]
                vt, ut, dot = v[n, t], u[n, t], do[n, t]
                dqt, dkt, dbt, ddt = dq[bn, t, hn], dk[bn, t, hn], db[bn, t, hn], dd[bn, t, hn]
                dat, dvt = da[bn, t, hn], dv[bn, t, hn]
                for j in range(V):
                    dvt[j] = z
                    du[j] = z
                for i in range(K):
                    qi, ki, bi = qt[i], kt[i], bt[i]
                    dSi, Sc, Sp = dS[i], buf[m + 1, i], buf[m, i]
                    acc_q = z
                    acc_k = z
                    acc_b = z
                    acc_d = z
                    for j in range(V):
                        x = dSi[j] + qi * dot[j]  # dS_t, o_t's share added
                        dSi[j] = x
                        acc_q += Sc[j] * dot[j]
                        acc_k += x * vt[j]
                        acc_b += x * ut[j]
                        acc_d += x * Sp[j]
                        dvt[j] += x * ki
                        du[j] += x * bi
                    dqt[i] = acc_q
                    dkt[i] = acc_k
                    dbt[i] = acc_b
                    ddt[i] = acc_d
                for i in range(K):  # dalpha = S_{t-1} du;  dS_{t-1} = diag(d) dS_t + alpha du^T
                    ai, di = at[i], dt[i]
                    dSi, Sp = dS[i], buf[m, i]
                    acc_a = z
                    for j in range(V):
                        acc_a += Sp[j] * du[j]
                        dSi[j] = di * dSi[j] + ai * du[j]
                    dat[i] = acc_a
        ds0[n] = dS


def _rows(x: torch.Tensor) -> torch.Tensor:
    """[B, T, H, D] -> contiguous [B * H, T, D] (a copy unless H or T is 1)."""
    B, T, H, D = x.shape
    return x.detach().transpose(1, 2).reshape(B * H, T, D).contiguous()


class _DplrRecurrence(torch.autograd.Function):
    """``(q scaled, k, v, alpha, beta, d = exp(gk), s0) -> (o, S_T)``, layout [B, T, H, D], one computing dtype."""

    @staticmethod
    def forward(ctx, q, k, v, alpha, beta, d, s0, every: int):
        B, T, H, K = q.shape
        V = v.shape[-1]
        dt = q.dtype
        xs = [_rows(x) for x in (q, k, v, alpha, beta, d)]  # the copies the backward pass reads too
        zero = torch.zeros((), dtype=dt)
        o = torch.empty(B, T, H, V, dtype=dt)
        u = torch.empty(B * H, T, V, dtype=dt)
        ckpt = torch.empty(B * H, -(-T // every), K, V, dtype=dt)
        s_out = torch.empty(B, H, K, V, dtype=dt)
        _forward(*(x.numpy() for x in xs), s0.detach().reshape(B * H, K, V).contiguous().numpy(), zero.numpy(),
                 every, o.numpy(), u.numpy(), ckpt.numpy(), s_out.view(B * H, K, V).numpy())
        ctx.save_for_backward(*xs, u, ckpt, s_out)
        ctx.every = every
        return o, s_out

    @staticmethod
    def backward(ctx, do, ds_out):
        q, k, v, alpha, beta, d, u, ckpt, s_out = ctx.saved_tensors
        N, T, K = q.shape
        B, H = s_out.shape[:2]
        V = v.shape[-1]
        grads = [torch.empty(B, T, H, x.shape[-1], dtype=q.dtype) for x in (q, k, v, alpha, beta, d)]
        ds0 = torch.empty_like(s_out)
        zero = torch.zeros((), dtype=q.dtype)
        do_ = _rows(do.to(q.dtype))
        ds_out_ = ds_out.detach().to(q.dtype).reshape(N, K, V).contiguous()
        _backward(*(x.numpy() for x in (q, k, v, alpha, beta, d, u, ckpt)), s_out.view(N, K, V).numpy(), zero.numpy(),
                  ctx.every, do_.numpy(), ds_out_.numpy(), *(x.numpy() for x in grads), ds0.view(N, K, V).numpy())
        return (*grads, ds0, None)


def _no_grad(q, k, v, alpha, beta, d, s0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o [B, T, H, V], S_T [B, H, K, V])`` by :func:`_forward_only` (no copy of an input at T = 1)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = torch.empty(B, T, H, V, dtype=q.dtype)
    s_out = torch.empty(B, H, K, V, dtype=q.dtype)
    _forward_only(*(_rows(x).numpy() for x in (q, k, v, alpha, beta, d)),
                  s0.detach().reshape(B * H, K, V).contiguous().numpy(), np.zeros((), dtype=s_out.numpy().dtype),
                  o.numpy(), s_out.view(B * H, K, V).numpy())
    return o, s_out


_OPAQUE: list = []  # the autograd function wrapped by torch.compiler.disable, once torch.compile is in use


def _apply(*args):
    """The autograd function; opaque to torch.compile, which cannot trace numba's dispatcher (the compiled graph
    breaks around it). The wrapper is made only once ``torch._dynamo`` is loaded: importing it costs a second and
    imports triton, which must not happen before Triton's interpreter is switched on (tests, bench/gpu_check)."""
    if "torch._dynamo" not in sys.modules:
        return _DplrRecurrence.apply(*args)
    if not _OPAQUE:
        _OPAQUE.append(torch.compiler.disable(_DplrRecurrence.apply))
    return _OPAQUE[0](*args)


def dplr_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gk: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`.dplr.dplr_naive` computed by the compiled per-step kernel (CPU tensors; needs numba).

    q, k, alpha, beta, gk: [B, T, H, K]; v: [B, T, H, V]; initial_state [B, H, K, V]; ``scale`` defaults to
    ``K ** -0.5``. Differentiable w.r.t. every tensor argument, the initial state included.
    """
    if not HAVE_NUMBA:
        raise RuntimeError(f"dplr_recurrent needs numba ({NUMBA_ERROR}); dplr_chunked computes the same")
    xs = (q, k, v, alpha, beta, gk) + (() if initial_state is None else (initial_state,))
    if any(x.device.type != "cpu" for x in xs):
        raise ValueError("dplr_recurrent runs on CPU tensors; use dplr_chunked (or fla's kernels) on a GPU")
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else float(scale)
    dt = torch.float64 if all(x.dtype == torch.float64 for x in xs) else torch.float32
    out_dtype = v.dtype
    s0 = q.new_zeros(B, H, K, V, dtype=dt) if initial_state is None else initial_state.to(dt)
    q, k, v, alpha, beta, gk = (x.to(dt) for x in (q, k, v, alpha, beta, gk))
    q = q if scale == 1.0 else q * scale  # RWKV-7's scale is 1
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, alpha, beta, gk, s0)):
        o, S = _apply(q, k, v, alpha, beta, gk.exp(), s0, max(1, int(checkpoint_every)))
    else:  # nothing to differentiate: the loops alone, without the autograd function or what it keeps
        o, S = _no_grad(q, k, v, alpha, beta, gk.exp(), s0)
    return o.to(out_dtype), (S if output_final_state else None)


def rwkv7_recurrent(r, w, k, v, a, b, scale: float = 1.0, initial_state=None, output_final_state: bool = True):
    """RWKV-7 recurrence by the per-step kernel, same convention as :func:`.dplr.rwkv7_naive`."""
    return dplr_recurrent(r, k, v, a, b, w, scale=scale, initial_state=initial_state,
                          output_final_state=output_final_state)


def use_step_kernel(x: torch.Tensor, head_dim: int) -> bool:
    """Whether the per-step kernel is the faster CPU path for heads of ``head_dim`` keys (ignores numba's
    presence: callers check :data:`HAVE_NUMBA` to say when it is missing)."""
    return x.device.type == "cpu" and head_dim <= STEP_MAX_HEAD_DIM
