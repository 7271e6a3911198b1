"""Gated Slot Attention block: ``x + attn(RMSNorm(x))`` then ``+ mlp(RMSNorm(.))`` (SwiGLU MLP).

Parameter names follow flash-linear-attention 0.6's ``GSABlock`` / ``GatedSlotAttention`` (``attn.{q,k,v,f,o}_proj``,
``attn.g_norm.weight``, ``attn_norm``, ``mlp_norm``, ``mlp.{gate,up,down}_proj``), default options (no short
convolution, swish feature map, scale 1, ``num_slots`` = head size, gate normaliser 8)::

    q, k = swish(W_q x), swish(W_k x);  v = silu(W_v x);  f = logsigmoid(W_f x) / 8;  s = 1 - exp(f)
    o = gsa(q, k, v, s, g=f);  y = o_proj(rmsnorm(silu(o)))

Recurrent state (dict): ``hk`` [B, H, K, M] and ``hv`` [B, H, M, V] (fp32). The PyTorch path runs on every
device (``omnirl_core.model.ops.gsa``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.gsa import gsa_chunked, gsa_naive
from .common import GatedMLP, PreNormBlock, RMSNorm, fla_kernel

__all__ = ["GSABlock", "GatedSlotAttention"]


class GatedSlotAttention(nn.Module):
    """``forward(x [B, T, D], state) -> (y [B, T, D], new_state)``."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int = 64,
        num_slots: int | None = None,
        norm_eps: float = 1e-5,
        gate_logit_normalizer: float = 8.0,
        chunk_size: int = 32,
        backend: str = "torch",
    ):
        super().__init__()
        assert hidden_size % head_dim == 0
        self.num_heads, self.head_dim = hidden_size // head_dim, head_dim
        self.num_slots = num_slots or head_dim
        self.gate_logit_normalizer, self.chunk_size, self.backend = gate_logit_normalizer, chunk_size, backend
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.f_proj = nn.Linear(hidden_size, self.num_heads * self.num_slots, bias=False)
        self.g_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, state: dict | None = None):
        B, T, D = x.shape
        H, K, M = self.num_heads, self.head_dim, self.num_slots
        q = F.silu(self.q_proj(x)).view(B, T, H, K)  # swish feature map
        k = F.silu(self.k_proj(x)).view(B, T, H, K)
        v = F.silu(self.v_proj(x)).view(B, T, H, K)
        f = F.logsigmoid(self.f_proj(x).float()).view(B, T, H, M) / self.gate_logit_normalizer  # slot log decay
        s = 1 - f.exp()  # slot write weights
        init = None if not state else (state["hk"], state["hv"])
        chunk_gsa = fla_kernel("GSA", x, self.backend, "gsa", "chunk_gsa")
        if chunk_gsa is not None:  # GPU: fla's Triton kernel, same semantics (slot weights in the input dtype)
            o, (hk, hv) = chunk_gsa(q=q, k=k, v=v, s=s.to(q.dtype), g=f, scale=1.0, initial_state=init,
                                    output_final_state=True)
        elif T < 8:
            o, (hk, hv) = gsa_naive(q, k, v, s, f, scale=1.0, initial_state=init)
        else:
            o, (hk, hv) = gsa_chunked(q, k, v, s, f, scale=1.0, initial_state=init, chunk_size=self.chunk_size)
        o = self.g_norm(F.silu(o.to(x.dtype).reshape(B, T, D)))
        return self.o_proj(o), {"hk": hk, "hv": hv}


class GSABlock(PreNormBlock):
    """``forward(x, state, v_first) -> (y, state, v_first)``; ``step(x_t, state)``."""

    def __init__(
        self, hidden_size: int, intermediate_size: int, head_dim: int = 64, norm_eps: float = 1e-5,
        chunk_size: int = 32, backend: str = "torch",
    ):
        super().__init__()
        self.attn_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.attn = GatedSlotAttention(hidden_size, head_dim, norm_eps=norm_eps, chunk_size=chunk_size, backend=backend)
        self.mlp_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.mlp = GatedMLP(hidden_size, intermediate_size)
