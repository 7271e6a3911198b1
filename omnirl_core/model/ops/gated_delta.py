"""Gated delta rule (Gated DeltaNet), scalar decay per head and step.

State ``S`` is ``[K, V]`` per head. One step, with log decay ``g_t`` (<= 0) and write strength ``beta_t``::

    S' = exp(g_t) S_{t-1}
    S_t = S' + beta_t k_t (v_t - S'^T k_t)^T
    o_t = S_t^T (scale * q_t)

(fla's ``naive_recurrent_gated_delta_rule`` / ``chunk_gated_delta_rule`` semantics; ``scale`` defaults to
``K ** -0.5``; keys are normally L2-normalised by the caller).

Chunked form: with ``G_t`` the inclusive cumulative log decay inside a chunk and ``u_t`` the written value
``beta_t (v_t - S'^T k_t)``, ``S_t = e^{G_t} S_0 + sum_{j<=t} e^{G_t - G_j} k_j u_j^T`` and

    (I + A) U = beta V - (beta e^{G} K) S_0,   A[t, j] = beta_t e^{G_t - G_j} k_t . k_j  (j < t)

one unit-triangular solve per chunk gives ``U = U0 - W S_0``. The decays form a ``[C, C]`` matrix computed
exactly (masked before ``exp``), so there is no overflow whatever the gate values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gated_delta_chunked", "gated_delta_naive", "gated_delta_step"]


def gated_delta_step(q, k, v, beta, g, state, scale: float):
    """One step. q, k: [B, H, K]; v: [B, H, V]; beta, g: [B, H]; state [B, H, K, V] fp32 -> (o [B, H, V], state)."""
    state = state * g.exp()[..., None, None]
    read = torch.einsum("bhk,bhkv->bhv", k, state)  # S'^T k
    u = beta.unsqueeze(-1) * (v - read)
    state = state + k.unsqueeze(-1) * u.unsqueeze(-2)
    o = torch.einsum("bhk,bhkv->bhv", q * scale, state)
    return o, state


def gated_delta_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-step reference. q, k: [B, T, H, K]; v: [B, T, H, V]; beta, g: [B, T, H]; initial_state [B, H, K, V]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    q_, k_, v_ = (x.float() for x in (q, k, v))
    beta_, g_ = beta.float(), g.float()
    S = q_.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    outs = []
    for t in range(T):
        o, S = gated_delta_step(q_[:, t], k_[:, t], v_[:, t], beta_[:, t], g_[:, t], S, scale)
        outs.append(o)
    o = torch.stack(outs, dim=1) if T else v.new_zeros(B, 0, H, V).float()
    return o.to(v.dtype), (S if output_final_state else None)


def gated_delta_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = True,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked matrix form of :func:`gated_delta_naive` (same arguments and results); any T."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    scale = K**-0.5 if scale is None else scale
    q, k, v_ = (x.transpose(1, 2).float() for x in (q, k, v))  # [B, H, T, D]
    beta, g = beta.transpose(1, 2).float(), g.transpose(1, 2).float()  # [B, H, T]
    pad = (-T) % C
    if pad:  # padded steps: g = 0, beta = 0 -> state unchanged
        q, k, v_ = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v_))
        beta, g = F.pad(beta, (0, pad)), F.pad(g, (0, pad))
    N = (T + pad) // C
    q, k, v_ = (x.reshape(B, H, N, C, x.shape[-1]) for x in (q, k, v_))
    beta, g = beta.reshape(B, H, N, C, 1), g.reshape(B, H, N, C)
    q = q * scale

    G = g.cumsum(-1)  # [B, H, N, C]
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    L = (G.unsqueeze(-1) - G.unsqueeze(-2)).masked_fill(~incl, float("-inf")).exp()  # e^{G_t - G_j}, j <= t
    L_strict = L.masked_fill(incl.logical_not().logical_or(torch.eye(C, dtype=torch.bool, device=q.device)), 0.0)
    G = G.unsqueeze(-1)  # [B, H, N, C, 1]

    A = beta * (k @ k.transpose(-1, -2)) * L_strict  # [B, H, N, C, C]
    eye = torch.eye(C, device=q.device, dtype=q.dtype)
    rhs = torch.cat([beta * v_, beta * G.exp() * k], dim=-1)  # [B, H, N, C, V + K]
    sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    U0, W = sol[..., :V], sol[..., V:]  # U = U0 - W S_0

    A_qk = (q @ k.transpose(-1, -2)) * L  # [B, H, N, C, C]
    O_intra = A_qk @ U0  # [B, H, N, C, V]
    Q_eff = q * G.exp() - A_qk @ W  # [B, H, N, C, K]
    G_last = G[..., -1:, :]  # [B, H, N, 1, 1]
    k_end = k * (G_last - G).exp()  # [B, H, N, C, K]
    M = G_last.exp() * eye.new_ones(K).diag() - k_end.transpose(-1, -2) @ W  # [B, H, N, K, K]
    Nc = k_end.transpose(-1, -2) @ U0  # [B, H, N, K, V]

    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    starts = []
    for n in range(N):
        starts.append(S)
        S = M[:, :, n] @ S + Nc[:, :, n]
    S0 = torch.stack(starts, dim=2)
    o = O_intra + Q_eff @ S0
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)
    return o.to(v.dtype), (S if output_final_state else None)
