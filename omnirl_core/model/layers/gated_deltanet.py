"""Gated DeltaNet block: short convolutions, gated delta rule, gated RMSNorm output; SwiGLU MLP; pre-RMSNorm.

Parameter names equal flash-linear-attention 0.6's ``GatedDeltaNetBlock`` / ``GatedDeltaNet`` / ``GatedMLP``
(``attn.{q,k,v,a,b,g,o}_proj``, ``attn.A_log``, ``attn.dt_bias``, ``attn.{q,k,v}_conv1d.weight``,
``attn.o_norm.weight``, ``mlp.{gate,up,down}_proj``, ``attn_norm``, ``mlp_norm``).

Per step: ``q, k = l2norm(silu(conv(W x)))``, ``v = silu(conv(W_v x))``, ``beta = sigmoid(b_proj x)``,
``g = -exp(A_log) softplus(a_proj x + dt_bias)`` (log decay), then the gated delta rule (``omnirl_core.model.ops``).
Recurrent state (dict): ``conv_q``, ``conv_k``, ``conv_v`` [B, D_*, W-1] and ``ssm`` [B, H, K, V] (fp32).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.gated_delta import gated_delta_chunked, gated_delta_naive
from .common import GatedMLP, PreNormBlock, RMSNorm, RMSNormGated, ShortConvolution, fla_kernel

__all__ = ["GatedDeltaNet", "GatedDeltaNetBlock"]


class GatedDeltaNet(nn.Module):
    """``forward(x [B, T, D], state) -> (y [B, T, D], new_state)``."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int = 48,
        num_heads: int = 8,
        expand_v: float = 2.0,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        D = hidden_size
        self.num_heads, self.head_k_dim = num_heads, head_dim
        self.head_v_dim = int(head_dim * expand_v)
        self.key_dim, self.value_dim = num_heads * head_dim, num_heads * self.head_v_dim
        self.chunk_size, self.backend = chunk_size, backend
        self.q_proj = nn.Linear(D, self.key_dim, bias=False)
        self.k_proj = nn.Linear(D, self.key_dim, bias=False)
        self.v_proj = nn.Linear(D, self.value_dim, bias=False)
        self.a_proj = nn.Linear(D, num_heads, bias=False)
        self.b_proj = nn.Linear(D, num_heads, bias=False)
        self.A_log = nn.Parameter(torch.zeros(num_heads))
        self.dt_bias = nn.Parameter(torch.zeros(num_heads))
        self.q_conv1d = ShortConvolution(self.key_dim, conv_size)
        self.k_conv1d = ShortConvolution(self.key_dim, conv_size)
        self.v_conv1d = ShortConvolution(self.value_dim, conv_size)
        self.g_proj = nn.Linear(D, self.value_dim, bias=False)
        self.o_norm = RMSNormGated(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, D, bias=False)
        if not self.A_log.is_meta:
            with torch.no_grad():  # Mamba2-style: A ~ U(0, 16), dt ~ logU(1e-3, 0.1)
                self.A_log.copy_(torch.empty(num_heads).uniform_(1e-4, 16).log())
                dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                dt = dt.clamp(min=1e-4)
                self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: torch.Tensor, state: dict | None = None):
        B, T, _ = x.shape
        H, K, V = self.num_heads, self.head_k_dim, self.head_v_dim
        state = state or {}
        q, cq = self.q_conv1d(self.q_proj(x), state.get("conv_q"))
        k, ck = self.k_conv1d(self.k_proj(x), state.get("conv_k"))
        v, cv = self.v_conv1d(self.v_proj(x), state.get("conv_v"))
        q = F.normalize(q.view(B, T, H, K), dim=-1)  # [B, T, H, K]
        k = F.normalize(k.view(B, T, H, K), dim=-1)
        v = v.view(B, T, H, V)
        beta = torch.sigmoid(self.b_proj(x))  # [B, T, H]
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias)  # log decay  [B, T, H]
        S = state.get("ssm")
        chunk_gdr = fla_kernel("Gated DeltaNet", x, self.backend, "gated_delta_rule", "chunk_gated_delta_rule")
        if chunk_gdr is not None:
            o, S = chunk_gdr(q=q, k=k, v=v, g=g, beta=beta, scale=K**-0.5, initial_state=S, output_final_state=True)
        elif T < 8:
            o, S = gated_delta_naive(q, k, v, beta, g, scale=K**-0.5, initial_state=S)
        else:
            o, S = gated_delta_chunked(q, k, v, beta, g, scale=K**-0.5, initial_state=S, chunk_size=self.chunk_size)
        o = self.o_norm(o.to(x.dtype), self.g_proj(x).view(B, T, H, V))  # [B, T, H, V]
        return self.o_proj(o.reshape(B, T, H * V)), {"conv_q": cq, "conv_k": ck, "conv_v": cv, "ssm": S}


class GatedDeltaNetBlock(PreNormBlock):
    """``x + attn(RMSNorm(x))`` then ``+ mlp(RMSNorm(.))``; ``forward(x, state)`` and ``step(x_t, state)``."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        head_dim: int = 48,
        num_heads: int = 8,
        expand_v: float = 2.0,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        self.attn_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.attn = GatedDeltaNet(
            hidden_size, head_dim, num_heads, expand_v, norm_eps=norm_eps, chunk_size=chunk_size, backend=backend
        )
        self.mlp_norm = RMSNorm(hidden_size, eps=norm_eps)
        self.mlp = GatedMLP(hidden_size, intermediate_size)
