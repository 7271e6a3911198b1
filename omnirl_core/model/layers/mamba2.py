"""Mamba2 block: ``x + mixer(RMSNorm(x))`` (no feed-forward part, as in flash-linear-attention's Mamba2Block).

Mixer (parameter names of fla 0.6's ``Mamba2`` layer: ``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``,
``norm.weight``, ``out_proj``)::

    [z | xBC | dt] = in_proj(u)                     z: d_inner, xBC: d_inner + 2 G N, dt: heads
    xBC = silu(causal depthwise conv(xBC))          (kernel 4, with bias)
    x, B, C = split(xBC)                            x: [heads, P], B, C: [G, N] shared by heads of a group
    dt = softplus(dt + dt_bias);  A = -exp(A_log)
    h_t = exp(dt A) h_{t-1} + dt B_t x_t^T;  y_t = C_t^T h_t + D x_t      (state [N, P] per head)
    out = out_proj(rmsnorm_grouped(y * silu(z)) * norm.weight)

The recurrence runs on ``omnirl_core.model.ops.simple_gla`` (chunked matmuls on CPU and GPU alike).
Recurrent state (dict): ``conv`` [B, conv_dim, W-1] and ``ssm`` [B, heads, N, P] (fp32).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.simple_gla import simple_gla_chunked, simple_gla_naive
from .common import RMSNorm, fla_kernel

__all__ = ["Mamba2", "Mamba2Block"]


class _GroupedGatedRMSNorm(nn.Module):
    """``rmsnorm(x * silu(z))`` over groups of ``group_size`` channels, times ``weight`` (gate before norm)."""

    def __init__(self, hidden_size: int, group_size: int, eps: float = 1e-5):
        super().__init__()
        self.group_size, self.eps = group_size, eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (x * F.silu(z)).float()
        shape = y.shape
        y = y.view(*shape[:-1], -1, self.group_size)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y.view(shape) * self.weight).to(x.dtype)


class Mamba2(nn.Module):
    """``forward(x [B, T, D], state) -> (y [B, T, D], new_state)``."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int = 128,
        state_size: int = 128,
        expand: int = 2,
        n_groups: int = 1,
        conv_kernel: int = 4,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "torch",
    ):
        super().__init__()
        self.backend = backend
        self.d_inner = expand * hidden_size
        assert self.d_inner % head_dim == 0, "expand * hidden_size must be divisible by head_dim"
        self.head_dim, self.num_heads = head_dim, self.d_inner // head_dim
        assert self.num_heads % n_groups == 0
        self.state_size, self.n_groups, self.chunk_size = state_size, n_groups, chunk_size
        self.conv_dim = self.d_inner + 2 * n_groups * state_size
        self.in_proj = nn.Linear(hidden_size, self.d_inner + self.conv_dim + self.num_heads, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel, groups=self.conv_dim, bias=True)
        self.dt_bias = nn.Parameter(torch.zeros(self.num_heads))
        self.A_log = nn.Parameter(torch.zeros(self.num_heads))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.norm = _GroupedGatedRMSNorm(self.d_inner, self.d_inner // n_groups, eps=norm_eps)
        self.out_proj = nn.Linear(self.d_inner, hidden_size, bias=False)
        if not self.A_log.is_meta:
            with torch.no_grad():
                dt = torch.exp(torch.rand(self.num_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
                dt = dt.clamp(min=1e-4)
                self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                self.A_log.copy_(torch.empty(self.num_heads).uniform_(1, 16).log())

    def forward(self, x: torch.Tensor, state: dict | None = None):
        Bsz, T, _ = x.shape
        H, P, N, Gr = self.num_heads, self.head_dim, self.state_size, self.n_groups
        state = state or {}
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, H], dim=-1)
        W = self.conv1d.kernel_size[0]
        xt = xbc.transpose(1, 2)  # [B, conv_dim, T]
        cache = state.get("conv")
        cache = xt.new_zeros(Bsz, self.conv_dim, W - 1) if cache is None else cache.to(xt.dtype)
        xx = torch.cat([cache, xt], dim=-1)
        xbc = F.silu(F.conv1d(xx, self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim)).transpose(1, 2)
        xs, Bm, Cm = xbc.split([self.d_inner, Gr * N, Gr * N], dim=-1)
        xs = xs.reshape(Bsz, T, H, P)
        rep = H // Gr  # heads per group
        Bm = Bm.reshape(Bsz, T, Gr, 1, N).expand(Bsz, T, Gr, rep, N).reshape(Bsz, T, H, N)
        Cm = Cm.reshape(Bsz, T, Gr, 1, N).expand(Bsz, T, Gr, rep, N).reshape(Bsz, T, H, N)
        dt = F.softplus(dt.float() + self.dt_bias)  # [B, T, H]
        g = dt * -self.A_log.float().exp()  # log decay
        v = xs.float() * dt.unsqueeze(-1)  # [B, T, H, P]
        S = state.get("ssm")
        chunk_simple_gla = fla_kernel("Mamba2", x, self.backend, "simple_gla", "chunk_simple_gla")
        if chunk_simple_gla is not None:  # GPU: fla's Triton kernel of the same scalar-gated rule
            y, S = chunk_simple_gla(q=Cm, k=Bm, v=v.to(Cm.dtype), g=g, scale=1.0, initial_state=S,
                                    output_final_state=True)
        elif T < 8:
            y, S = simple_gla_naive(Cm, Bm, v, g, scale=1.0, initial_state=S)
        else:
            y, S = simple_gla_chunked(Cm, Bm, v, g, scale=1.0, initial_state=S, chunk_size=self.chunk_size)
        y = y.to(x.dtype) + xs * self.D.view(H, 1).to(x.dtype)
        y = self.norm(y.reshape(Bsz, T, self.d_inner), z)
        return self.out_proj(y), {"conv": xx[..., xx.shape[-1] - (W - 1) :], "ssm": S}


class Mamba2Block(nn.Module):
    """``x + mixer(RMSNorm(x))``. ``forward(x, state, v_first) -> (y, state, v_first)``; ``step(x_t, state)``."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int = 128,
        state_size: int = 128,
        expand: int = 2,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "torch",
    ):
        super().__init__()
        self.norm = RMSNorm(hidden_size, eps=norm_eps)
        self.mixer = Mamba2(hidden_size, head_dim, state_size, expand, norm_eps=norm_eps, chunk_size=chunk_size,
                            backend=backend)

    def forward(self, x: torch.Tensor, state: dict | None = None, v_first=None):
        o, state = self.mixer(self.norm(x), state)
        return x + o, state, v_first

    def step(self, x_t: torch.Tensor, state: dict | None = None, v_first=None):
        y, state, _ = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state, v_first
