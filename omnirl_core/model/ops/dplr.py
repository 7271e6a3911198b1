"""Diagonal-plus-low-rank (DPLR) delta rule, the recurrence behind RWKV-7.

State ``S`` is ``[K, V]`` per head (keys x values). One step, with per-channel log decay ``gk_t`` (<= 0)::

    S_t = diag(exp(gk_t)) S_{t-1} + beta_t (alpha_t^T S_{t-1}) + k_t v_t^T
    o_t = S_t^T (scale * q_t)

(note that the low-rank term reads the *undecayed* previous state). This is exactly the semantics of
flash-linear-attention's ``dplr_recurrence`` / ``chunk_dplr_delta_rule``, and RWKV-7 is the special case
``alpha = -kk``, ``beta = kk * a``, ``gk = w``, ``scale = 1`` (``chunk_rwkv7(r, w, k, v, a=-kk, b=kk*a)``).
In RWKV-7's own ``[V, K]`` orientation the same update reads ``S_t = S_{t-1} (diag(w_t) - kk^T (a kk)) + v k^T``.

Chunked form (``dplr_chunked``). Inside a chunk of ``C`` steps let ``G_t`` be the inclusive cumulative log
decay and ``u_t = alpha_t^T S_{t-1}`` the low-rank "read" of the previous state. Then the chunk is a gated
linear attention with two key/value pairs, ``(k, v)`` and ``(beta, u)``::

    S_t = e^{G_t} S_0 + sum_{j<=t} e^{G_t - G_j} (k_j v_j^T + beta_j u_j)
    u_t = (alpha_t e^{G_{t-1}})^T S_0 + sum_{j<t} (alpha_t e^{G_{t-1}-G_j})^T (k_j v_j^T + beta_j u_j)

so ``(I - A_ab) U = A_ak V + (alpha e^{G_prev}) S_0`` with strictly lower-triangular ``A_ab, A_ak``: one unit
triangular solve per chunk gives ``U = U0 + W S_0`` (the WY / UT-transform idea). Everything except the
state hand-over ``S_next = M S_0 + N`` (``M`` ``[K, K]``) is computed for all chunks at once.

Numerics: the pairwise decays ``e^{G_t - G_j}`` are factorised as ``e^{G_t - r} e^{r - G_j}`` around the
chunk's mid log-decay ``r``, so each factor is at most ``exp(|G_C| / 2)``. This is exact in fp32 while the
summed log decay over one chunk stays above about -170 per channel; RWKV-7's decay ``w >= -exp(-0.5)`` gives
at most 39 for a 64-step chunk. Chunks are halved automatically when a chunk's decay passes -MAX_CHUNK_DECAY;
that check reads a value back from the tensors (a host sync, and a graph break under ``torch.compile``), so a
caller that knows a floor of the log decay passes it (``min_log_decay``) and the check is skipped whenever
``chunk_size * |min_log_decay| <= MAX_CHUNK_DECAY`` (RWKV-7: chunks up to 197 steps).

For small heads on CPU the per-step kernel of :mod:`.dplr_step` (numba, same semantics) is faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAX_CHUNK_DECAY", "dplr_chunked", "dplr_naive", "dplr_step", "rwkv7_chunked", "rwkv7_naive"]

MAX_CHUNK_DECAY = 120.0  # keeps every factor exp(|G| / 2) far below fp32 overflow


def _to_bhtd(*xs: torch.Tensor) -> list[torch.Tensor]:
    # [B, T, H, D] -> [B, H, T, D] in float32
    return [x.transpose(1, 2).float() for x in xs]


def dplr_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gk: torch.Tensor,
    state: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrent step. q, k, alpha, beta, gk: [B, H, K]; v: [B, H, V]; state: [B, H, K, V] (fp32).

    Returns (o [B, H, V], new state [B, H, K, V]).
    """
    read = torch.einsum("bhk,bhkv->bhv", alpha, state)  # alpha^T S_{t-1}   [B, H, V]
    state = state * gk.exp().unsqueeze(-1) + beta.unsqueeze(-1) * read.unsqueeze(-2) + k.unsqueeze(-1) * v.unsqueeze(-2)
    o = torch.einsum("bhk,bhkv->bhv", q * scale, state)
    return o, state


def dplr_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gk: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-step reference. q, k, alpha, beta, gk: [B, T, H, K]; v: [B, T, H, V]; initial_state [B, H, K, V].

    ``scale`` defaults to ``K ** -0.5``. Computes in fp32; ``o`` is returned in ``v``'s dtype, the state in fp32.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    q_, k_, v_, a_, b_, g_ = _to_bhtd(q, k, v, alpha, beta, gk)
    S = q_.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    outs = []
    for t in range(T):
        o, S = dplr_step(q_[:, :, t], k_[:, :, t], v_[:, :, t], a_[:, :, t], b_[:, :, t], g_[:, :, t], S, scale)
        outs.append(o)
    o = torch.stack(outs, dim=1) if T else v.new_zeros(B, 0, H, V).float()  # [B, T, H, V]
    return o.to(v.dtype), (S if output_final_state else None)


def dplr_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gk: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
    chunk_size: int = 32,
    min_log_decay: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked matrix form of :func:`dplr_naive` (same arguments and results); any T (padded internally).

    If some chunk's summed log decay falls below ``-MAX_CHUNK_DECAY`` the chunk length is halved (exactness).
    ``min_log_decay``: a floor of every ``gk`` that the caller guarantees; when a whole chunk at that floor stays
    above ``-MAX_CHUNK_DECAY`` the check (a host sync) is skipped.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    scale = K**-0.5 if scale is None else scale
    args = (q, k, v, alpha, beta, gk)
    q, k, v_, alpha, beta, gk = _to_bhtd(*args)  # [B, H, T, D]
    pad = (-T) % C
    if pad:  # zero steps leave the state unchanged (decay 1, nothing written)
        q, k, v_, alpha, beta, gk = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v_, alpha, beta, gk))
    N = (T + pad) // C
    q, k, v_, alpha, beta, gk = (x.reshape(B, H, N, C, x.shape[-1]) for x in (q, k, v_, alpha, beta, gk))
    q = q * scale

    G = gk.cumsum(-2)  # inclusive cumulative log decay  [B, H, N, C, K]
    bounded = min_log_decay is not None and C * -min_log_decay <= MAX_CHUNK_DECAY
    if not bounded and C > 1 and G.numel() and float(G[..., -1, :].detach().min()) < -MAX_CHUNK_DECAY:
        return dplr_chunked(
            *args, scale=scale, initial_state=initial_state, output_final_state=output_final_state, chunk_size=C // 2
        )
    G_prev = G - gk  # exclusive                          [B, H, N, C, K]
    G_last = G[..., -1:, :]  # whole-chunk decay            [B, H, N, 1, K]
    ref = 0.5 * G_last  # factorisation point
    q_d = q * (G - ref).exp()
    a_d = alpha * (G_prev - ref).exp()
    k_d = k * (ref - G).exp()
    b_d = beta * (ref - G).exp()

    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()  # j <= t
    strict = incl.tril(-1)  # j < t
    A_qk = (q_d @ k_d.transpose(-1, -2)).masked_fill(~incl, 0.0)  # [B, H, N, C, C]
    A_qb = (q_d @ b_d.transpose(-1, -2)).masked_fill(~incl, 0.0)
    A_ak = (a_d @ k_d.transpose(-1, -2)).masked_fill(~strict, 0.0)
    A_ab = (a_d @ b_d.transpose(-1, -2)).masked_fill(~strict, 0.0)

    # (I - A_ab) [U0 | W] = [A_ak V | alpha e^{G_prev}];   U = U0 + W S_0
    eye = torch.eye(C, device=q.device, dtype=q.dtype)
    rhs = torch.cat([A_ak @ v_, alpha * G_prev.exp()], dim=-1)  # [B, H, N, C, V + K]
    sol = torch.linalg.solve_triangular(eye - A_ab, rhs, upper=False, unitriangular=True)
    U0, W = sol[..., :V], sol[..., V:]  # [B, H, N, C, V], [B, H, N, C, K]

    O_intra = A_qk @ v_ + A_qb @ U0  # [B, H, N, C, V]
    Q_eff = q * G.exp() + A_qb @ W  # o = O_intra + Q_eff S_0     [B, H, N, C, K]
    to_end = (G_last - G).exp()
    k_end, b_end = k * to_end, beta * to_end  # decayed to the chunk end
    M = torch.diag_embed(G_last.squeeze(-2).exp()) + b_end.transpose(-1, -2) @ W  # [B, H, N, K, K]
    Nc = k_end.transpose(-1, -2) @ v_ + b_end.transpose(-1, -2) @ U0  # [B, H, N, K, V]

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    starts = []
    for n in range(N):  # the only sequential part: S_{n+1} = M_n S_n + N_n
        starts.append(S)
        S = M[:, :, n] @ S + Nc[:, :, n]
    S0 = torch.stack(starts, dim=2)  # state at each chunk start  [B, H, N, K, V]
    o = O_intra + Q_eff @ S0  # [B, H, N, C, V]
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)  # [B, T, H, V]
    return o.to(v.dtype), (S if output_final_state else None)


def rwkv7_naive(r, w, k, v, a, b, scale: float = 1.0, initial_state=None, output_final_state: bool = True):
    """RWKV-7 recurrence with fla's ``chunk_rwkv7`` argument convention (a = -kk, b = kk * a_gate, w = log decay)."""
    return dplr_naive(r, k, v, a, b, w, scale=scale, initial_state=initial_state, output_final_state=output_final_state)


def rwkv7_chunked(
    r,
    w,
    k,
    v,
    a,
    b,
    scale: float = 1.0,
    initial_state=None,
    output_final_state: bool = True,
    chunk_size: int = 32,
    min_log_decay: float | None = None,
):
    """Chunked RWKV-7 recurrence, same convention as :func:`rwkv7_naive` (``min_log_decay``: see dplr_chunked)."""
    return dplr_chunked(
        r,
        k,
        v,
        a,
        b,
        w,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        chunk_size=chunk_size,
        min_log_decay=min_log_decay,
    )
