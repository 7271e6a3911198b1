"""Linear attention with a scalar gate per head and step (Mamba2's state-space duality form).

State ``S`` is ``[K, V]`` per head; with log decay ``g_t`` (<= 0)::

    S_t = exp(g_t) S_{t-1} + k_t v_t^T,     o_t = S_t^T (scale * q_t)

(fla's ``naive_recurrent_simple_gla`` semantics; ``scale`` defaults to ``K ** -0.5``). Mamba2 is this rule with
``q = C_t``, ``k = B_t``, ``v = dt_t x_t``, ``g = dt_t A``, ``scale = 1``.

Chunked form: ``O = (Q K^T * L) V + (Q e^{G}) S_0`` with ``L[t, j] = e^{G_t - G_j}`` (j <= t, computed exactly),
``S_C = e^{G_C} S_0 + (K e^{G_C - G})^T V``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["simple_gla_chunked", "simple_gla_naive"]


def simple_gla_naive(q, k, v, g, scale: float | None = None, initial_state=None, output_final_state: bool = True):
    """Per-step reference. q, k: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H]; initial_state [B, H, K, V]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K**-0.5 if scale is None else scale
    q, k, v, g = (x.float() for x in (q, k, v, g))
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    outs = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None] + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S))
    o = torch.stack(outs, dim=1) if T else q.new_zeros(B, 0, H, V)
    return o, (S if output_final_state else None)


def simple_gla_chunked(
    q, k, v, g, scale: float | None = None, initial_state=None, output_final_state: bool = True, chunk_size: int = 64
):
    """Chunked matrix form of :func:`simple_gla_naive` (same arguments and results); any T."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    scale = K**-0.5 if scale is None else scale
    q, k, v = (x.transpose(1, 2).float() for x in (q, k, v))  # [B, H, T, D]
    g = g.transpose(1, 2).float()  # [B, H, T]
    pad = (-T) % C
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g = F.pad(g, (0, pad))
    N = (T + pad) // C
    q, k, v = (x.reshape(B, H, N, C, x.shape[-1]) for x in (q, k, v))
    G = g.reshape(B, H, N, C).cumsum(-1)  # [B, H, N, C]
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    L = (G.unsqueeze(-1) - G.unsqueeze(-2)).masked_fill(~incl, float("-inf")).exp()  # [B, H, N, C, C]
    G = G.unsqueeze(-1)  # [B, H, N, C, 1]
    q = q * scale
    O_intra = ((q @ k.transpose(-1, -2)) * L) @ v  # [B, H, N, C, V]
    q_in = q * G.exp()  # [B, H, N, C, K]
    G_last = G[..., -1:, :]  # [B, H, N, 1, 1]
    Nc = (k * (G_last - G).exp()).transpose(-1, -2) @ v  # [B, H, N, K, V]
    decay = G_last.squeeze(-1).exp().unsqueeze(-1)  # [B, H, N, 1, 1]
    S = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.float()
    starts = []
    for n in range(N):
        starts.append(S)
        S = decay[:, :, n] * S + Nc[:, :, n]
    o = O_intra + q_in @ torch.stack(starts, dim=2)
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)
    return o, (S if output_final_state else None)
