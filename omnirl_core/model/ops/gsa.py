"""Gated Slot Attention (GSA): two gated linear attentions over ``M`` memory slots joined by a softmax.

Per head, with slot log-decay ``g_t`` [M] (<= 0), slot write weights ``s_t`` [M]::

    Hk_t = Hk_{t-1} diag(e^{g_t}) + k_t s_t^T        [K, M]   (slot keys)
    p_t  = softmax(scale * Hk_t^T q_t)              [M]      (read weights over slots)
    Hv_t = diag(e^{g_t}) Hv_{t-1} + s_t v_t^T        [M, V]   (slot values)
    o_t  = Hv_t^T p_t                               [V]

This is fla's ``naive_recurrent_gsa`` / ``chunk_gsa`` (state ``(Hk, Hv)``). The chunked form factorises the
per-slot decays around the chunk's mid log-decay like ``ops.dplr`` (exact while a chunk's summed log decay
stays above about -170 per slot, and chunks are halved automatically past -MAX_CHUNK_DECAY; GSA's gates
``logsigmoid(f) / 8`` give about -0.1 per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dplr import MAX_CHUNK_DECAY

__all__ = ["gsa_chunked", "gsa_naive"]


def gsa_naive(q, k, v, s, g, scale: float = 1.0, initial_state=None, output_final_state: bool = True):
    """Per-step reference. q, k: [B, T, H, K]; v: [B, T, H, V]; s, g: [B, T, H, M].

    State: a pair (Hk [B, H, K, M], Hv [B, H, M, V]); returned in fp32.
    """
    B, T, H, K = q.shape
    V, M = v.shape[-1], s.shape[-1]
    q, k, v, s, g = (x.float() for x in (q, k, v, s, g))
    if initial_state is None:
        hk, hv = q.new_zeros(B, H, K, M), q.new_zeros(B, H, M, V)
    else:
        hk, hv = (x.float() for x in initial_state)
    outs = []
    for t in range(T):
        e = g[:, t].exp()  # [B, H, M]
        hk = hk * e.unsqueeze(-2) + k[:, t].unsqueeze(-1) * s[:, t].unsqueeze(-2)
        p = torch.einsum("bhk,bhkm->bhm", q[:, t] * scale, hk).softmax(-1)
        hv = hv * e.unsqueeze(-1) + s[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outs.append(torch.einsum("bhm,bhmv->bhv", p, hv))
    o = torch.stack(outs, dim=1) if T else q.new_zeros(B, 0, H, V)
    return o, ((hk, hv) if output_final_state else None)


def gsa_chunked(
    q, k, v, s, g, scale: float = 1.0, initial_state=None, output_final_state: bool = True, chunk_size: int = 32
):
    """Chunked matrix form of :func:`gsa_naive` (same arguments and results); any T.

    If some chunk's summed log decay falls below ``-MAX_CHUNK_DECAY`` the chunk length is halved (exactness).
    """
    args = (q, k, v, s, g)
    B, T, H, K = q.shape
    V, M = v.shape[-1], s.shape[-1]
    C = chunk_size
    q, k, v, s, g = (x.transpose(1, 2).float() for x in (q, k, v, s, g))  # [B, H, T, D]
    pad = (-T) % C
    if pad:  # padded steps: s = 0, g = 0 -> states unchanged
        q, k, v, s, g = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, s, g))
    N = (T + pad) // C
    q, k, v, s, g = (x.reshape(B, H, N, C, x.shape[-1]) for x in (q, k, v, s, g))
    q = q * scale
    G = g.cumsum(-2)  # [B, H, N, C, M]
    if C > 1 and G.numel() and float(G[..., -1, :].detach().min()) < -MAX_CHUNK_DECAY:
        return gsa_chunked(
            *args, scale=scale, initial_state=initial_state, output_final_state=output_final_state, chunk_size=C // 2
        )
    G_last = G[..., -1:, :]  # [B, H, N, 1, M]
    ref = 0.5 * G_last
    up, down = (G - ref).exp(), (ref - G).exp()  # e^{G_t - r}, e^{r - G_j}
    s_end = s * (G_last - G).exp()  # slot weights decayed to the chunk end   [B, H, N, C, M]
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    if initial_state is None:
        hk, hv = q.new_zeros(B, H, K, M), q.new_zeros(B, H, M, V)
    else:
        hk, hv = (x.float() for x in initial_state)

    # pass 1: slot scores  o_k[t, m] = sum_{j<=t} (q_t . k_j) s_j[m] e^{G_t[m] - G_j[m]} + e^{G_t[m]} (q_t^T Hk_0)[m]
    A = (q @ k.transpose(-1, -2)).masked_fill(~incl, 0.0)  # [B, H, N, C, C]
    ok_intra = up * (A @ (s * down))  # [B, H, N, C, M]
    Nk = k.transpose(-1, -2) @ s_end  # [B, H, N, K, M]
    dk = G_last.exp()  # column decay per chunk  [B, H, N, 1, M]
    starts = []
    for n in range(N):
        starts.append(hk)
        hk = hk * dk[:, :, n] + Nk[:, :, n]
    ok = ok_intra + G.exp() * (q @ torch.stack(starts, dim=2))  # [B, H, N, C, M]
    p = ok.softmax(-1)

    # pass 2: ordinary gated linear attention with keys s, queries p, values v and slot-wise decay
    A2 = ((p * up) @ (s * down).transpose(-1, -2)).masked_fill(~incl, 0.0)  # [B, H, N, C, C]
    Nv = s_end.transpose(-1, -2) @ v  # [B, H, N, M, V]
    dv = G_last.transpose(-1, -2).exp()  # row decay  [B, H, N, M, 1]
    starts = []
    for n in range(N):
        starts.append(hv)
        hv = hv * dv[:, :, n] + Nv[:, :, n]
    o = A2 @ v + (p * G.exp()) @ torch.stack(starts, dim=2)  # [B, H, N, C, V]
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)
    return o, ((hk, hv) if output_final_state else None)
