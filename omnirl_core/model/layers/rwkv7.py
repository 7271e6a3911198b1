"""RWKV-7 ("Goose") block: time mix (DPLR delta-rule recurrence) + channel mix, pre-LayerNorm residual.

Parameter names equal those of flash-linear-attention 0.6's ``RWKV7Block`` / ``RWKV7Attention`` /
``RWKV7FeedForward`` (``attn.x_r ... attn.r_k``, ``attn.{r,k,v,o}_proj``, ``attn.{w,v,a,g}_lora.lora.{0,2}``,
``attn.g_norm``, ``ffn.x_k``, ``ffn.key``, ``ffn.value``, ``attn_norm``, ``ffn_norm``, ``pre_norm`` in layer 0), so a
``state_dict`` moves between the two unchanged. Differences: fla keeps ``x_k`` of the FFN as ``[D]`` like here;
fla stores recurrent state in a transformers ``Cache``, here it is a plain dict (below).

Recurrent state of one block (dict of tensors): ``attn_shift`` [B, D] (last input of the time mix),
``wkv`` [B, H, K, V] (fp32, keys x values orientation as fla's), ``ffn_shift`` [B, D].
``v_first``: layer 0's values [B, T, value_dim], mixed into the values of every later layer.

Recurrence kernels: fla's ``chunk_rwkv7`` on a CUDA tensor (``backend`` auto or fla); otherwise ours, chosen by
shape: on CPU at head dims up to ``ops.dplr_step.STEP_MAX_HEAD_DIM`` the per-step numba kernel
(``dplr_recurrent``), else the chunked form (``dplr_chunked``; the per-step reference for a few tokens). The
kernel report (``[omnirl kernels]``, ``kernels.json``) names the one taken, and says so when numba is missing.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import dplr_step
from ..ops.dplr import dplr_chunked, dplr_naive
from .common import LoRA, fla_kernel, token_shift

__all__ = ["RWKV7Attention", "RWKV7Block", "RWKV7FeedForward"]

W_SCALE = 0.6065306597126334  # exp(-0.5): per-step log decay w lies in [-exp(-0.5), 0]


def _round32(x: float) -> int:
    return max(32, int(round(x / 32) * 32))


class RWKV7Attention(nn.Module):
    """RWKV-7 time mix. ``forward(x [B, T, D], state, v_first) -> (y [B, T, D], new_state, v_first)``."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int = 64,
        layer_idx: int = 0,
        num_hidden_layers: int = 1,
        decay_low_rank_dim: int | None = None,
        a_low_rank_dim: int | None = None,
        v_low_rank_dim: int | None = None,
        gate_low_rank_dim: int | None = None,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        D = hidden_size
        assert D % head_dim == 0, f"hidden_size {D} not divisible by head_dim {head_dim}"
        self.hidden_size, self.head_dim, self.num_heads = D, head_dim, D // head_dim
        self.key_dim = self.value_dim = D
        self.layer_idx, self.num_hidden_layers = layer_idx, num_hidden_layers
        self.chunk_size, self.backend = chunk_size, backend
        f = head_dim / 64  # default low-rank sizes as fla/RWKV-7 choose them
        self.decay_low_rank_dim = decay_low_rank_dim or _round32(2.5 * D**0.5 * f)
        self.a_low_rank_dim = a_low_rank_dim or _round32(2.5 * D**0.5 * f)
        self.v_low_rank_dim = v_low_rank_dim or _round32(1.7 * D**0.5 * f)
        self.gate_low_rank_dim = gate_low_rank_dim or _round32(5 * D**0.5)

        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):  # token-shift mixing coefficients
            setattr(self, name, nn.Parameter(torch.zeros(1, 1, D)))
        self.k_k = nn.Parameter(torch.zeros(D))  # scales k before normalising it into the removal key kk
        self.k_a = nn.Parameter(torch.zeros(D))  # how much the in-context learning rate a scales k
        self.r_k = nn.Parameter(torch.zeros(self.num_heads, head_dim))  # "bonus" r.k term
        self.r_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.w_lora = LoRA(D, D, self.decay_low_rank_dim, activation="tanh")
        if layer_idx != 0:
            self.v_lora = LoRA(D, D, self.v_low_rank_dim, activation=None)
        self.a_lora = LoRA(D, D, self.a_low_rank_dim, activation=None)
        self.g_lora = LoRA(D, D, self.gate_low_rank_dim, activation="sigmoid", bias=False)
        self.g_norm = nn.GroupNorm(self.num_heads, D, eps=head_dim * norm_eps, affine=True)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """RWKV-7's layer-dependent initialisation (same formulas as the reference implementation)."""
        if self.x_r.is_meta:
            return
        D, L, i = self.hidden_size, self.num_hidden_layers, self.layer_idx
        r01 = i / max(L - 1, 1)  # 0 -> 1 over depth
        r10 = 1.0 - i / L  # 1 -> ~0 over depth
        n = torch.arange(D, dtype=torch.float32)
        ddd = (n / D).view(1, 1, D)
        linear = n / (D - 1) - 0.5
        zig = ((n % self.head_dim) - (self.head_dim - 1) / 2) / ((self.head_dim - 1) / 2)
        zig = zig * zig.abs()
        www = -6 + 6 * (n / (D - 1)) ** (1 + r01**0.3)
        for name, p in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
            getattr(self, name).copy_(1.0 - ddd ** (p * r10))
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        self.k_k.copy_(0.71 - linear * 0.1)
        self.w_lora.reset_lowrank(www + 0.5 + zig * 2.5)
        self.a_lora.reset_lowrank(-0.19 + zig * 0.3 + linear * 0.4)
        self.g_lora.reset_lowrank()
        if i != 0:
            self.v_lora.reset_lowrank(0.73 - linear * 0.4)
        self.g_norm.weight.fill_(((i + 1) / L) ** 0.7)
        self.g_norm.bias.zero_()
        nn.init.orthogonal_(self.r_proj.weight)
        nn.init.orthogonal_(self.k_proj.weight, gain=0.1)
        nn.init.orthogonal_(self.v_proj.weight)
        self.o_proj.weight.zero_()

    def forward(self, x: torch.Tensor, state: dict | None = None, v_first: torch.Tensor | None = None):
        B, T, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        state = state or {}
        delta = token_shift(x, state.get("attn_shift")) - x  # [B, T, D]
        mix = torch.stack([self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g])  # [6, 1, 1, D]
        xr, xw, xk, xv, xa, xg = torch.addcmul(x, delta, mix).unbind(0)  # x + delta * x_r, ...: [B, T, D] each

        r = self.r_proj(xr)  # receptance (query)                  [B, T, D]
        w = -W_SCALE * torch.sigmoid(self.w_lora(xw))  # log decay in [-e^-0.5, 0]
        k = self.k_proj(xk)
        v = self.v_proj(xv)
        if self.layer_idx == 0:
            v_first = v
        else:
            assert v_first is not None, "layers after the first need layer 0's v_first"
            v = torch.lerp(v, v_first, torch.sigmoid(self.v_lora(xv)))  # value residual to layer 0
        a = torch.sigmoid(self.a_lora(xa))  # in-context learning rate   [B, T, D]
        g = self.g_lora(xg)  # output gate                                [B, T, D]
        kk = F.normalize((k * self.k_k).view(B, T, H, Dh), dim=-1, p=2.0)  # removal key  [B, T, H, Dh]
        k = k + k * (a - 1) * self.k_a  # k.addcmul(k * (a - 1), k_a)

        r, w, k, a = (t.view(B, T, H, Dh) for t in (r, w, k, a))
        v = v.view(B, T, H, Dh)
        S = state.get("wkv")
        step_kernel, ours = self._torch_kernel(x)
        chunk_rwkv7 = fla_kernel("RWKV-7", x, self.backend, "rwkv7", "chunk_rwkv7", ours)
        if chunk_rwkv7 is not None:  # GPU: fla's Triton kernel, same semantics
            o, S = chunk_rwkv7(r=r, w=w, k=k, v=v, a=-kk, b=kk * a, scale=1.0, initial_state=S, output_final_state=True)
        elif step_kernel:  # small heads on CPU: the compiled per-step recurrence
            o, S = dplr_step.dplr_recurrent(r, k, v, -kk, kk * a, w, scale=1.0, initial_state=S)
        elif T < 8:  # a few tokens (online acting): per-step recurrence, O(1) per token
            o, S = dplr_naive(r, k, v, -kk, kk * a, w, scale=1.0, initial_state=S)
        else:
            o, S = dplr_chunked(r, k, v, -kk, kk * a, w, scale=1.0, initial_state=S, chunk_size=self.chunk_size,
                                min_log_decay=-W_SCALE)
        o = o.to(x.dtype)  # [B, T, H, Dh]

        o = self.head_norm(o)  # [B, T, D]
        o = (o + ((r * k * self.r_k).sum(-1, keepdim=True) * v).view(B, T, D)) * g  # bonus term, output gate
        return self.o_proj(o), {"attn_shift": x[:, -1], "wkv": S}, v_first

    def head_norm(self, o: torch.Tensor) -> torch.Tensor:
        """``g_norm`` (a GroupNorm whose groups are the heads) of the recurrence's output o [B, T, H, Dh] -> [B, T, D]:
        each head normalised over its channels, then the per-channel affine. The values of
        ``g_norm(o.reshape(B * T, D))``, computed as a layer norm over the last dim (half the time on CPU)."""
        B, T, H, Dh = o.shape
        normed = F.layer_norm(o, (Dh,), eps=self.g_norm.eps).view(B, T, H * Dh)
        return torch.addcmul(self.g_norm.bias, normed, self.g_norm.weight)

    def _torch_kernel(self, x: torch.Tensor) -> tuple[bool, str]:
        """(run the per-step kernel, what the kernel report adds about our path) for ``x``: per step on CPU at
        head dims up to ``dplr_step.STEP_MAX_HEAD_DIM`` when numba imports, else the chunked form (saying why when
        numba's absence is the reason)."""
        if not dplr_step.use_step_kernel(x, self.head_dim):
            return False, ""
        if not dplr_step.HAVE_NUMBA:
            return False, (f"chunked form: numba cannot be imported ({dplr_step.NUMBA_ERROR}), and the faster "
                           f"per-step kernel for head dim {self.head_dim} needs it")
        return True, (f"per-step numba kernel dplr_step.dplr_recurrent (head dim {self.head_dim} <= "
                      f"{dplr_step.STEP_MAX_HEAD_DIM} on {x.device.type})")


class RWKV7FeedForward(nn.Module):
    """RWKV-7 channel mix: token shift, ``value(relu(key(x'))^2)``."""

    def __init__(self, hidden_size: int, intermediate_size: int, layer_idx: int = 0, num_hidden_layers: int = 1):
        super().__init__()
        self.x_k = nn.Parameter(torch.zeros(hidden_size))
        self.key = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.value = nn.Linear(intermediate_size, hidden_size, bias=False)
        if not self.x_k.is_meta:
            with torch.no_grad():
                r10 = 1.0 - layer_idx / num_hidden_layers
                self.x_k.copy_(1.0 - (torch.arange(hidden_size) / hidden_size) ** (r10**4))
                nn.init.orthogonal_(self.key.weight)
                self.value.weight.zero_()

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None):
        delta = token_shift(x, last) - x
        return self.value(torch.relu(self.key(x + delta * self.x_k)).square()), x[:, -1]


class RWKV7Block(nn.Module):
    """Pre-norm residual block: ``x + attn(LN(x))`` then ``+ ffn(LN(.))`` (layer 0 first applies ``pre_norm``).

    ``forward(x, state=None, v_first=None) -> (y, new_state, v_first)``; ``step(x_t [B, D], state, v_first)``.
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        head_dim: int,
        layer_idx: int,
        num_hidden_layers: int,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        self.layer_idx = layer_idx
        if layer_idx == 0:
            self.pre_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        self.attn = RWKV7Attention(
            hidden_size,
            head_dim,
            layer_idx,
            num_hidden_layers,
            norm_eps=norm_eps,
            chunk_size=chunk_size,
            backend=backend,
        )
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=norm_eps)
        self.ffn = RWKV7FeedForward(hidden_size, intermediate_size, layer_idx, num_hidden_layers)

    def forward(self, x: torch.Tensor, state: dict | None = None, v_first: torch.Tensor | None = None):
        state = state or {}
        if self.layer_idx == 0:
            x = self.pre_norm(x)
        o, attn_state, v_first = self.attn(self.attn_norm(x), state, v_first)
        x = x + o
        f, ffn_shift = self.ffn(self.ffn_norm(x), state.get("ffn_shift"))
        return x + f, {**attn_state, "ffn_shift": ffn_shift}, v_first

    def step(self, x_t: torch.Tensor, state: dict | None = None, v_first: torch.Tensor | None = None):
        """One token: x_t [B, D] -> (y [B, D], new_state, v_first [B, D])."""
        y, state, v_first = self.forward(x_t.unsqueeze(1), state, None if v_first is None else v_first.unsqueeze(1))
        return y.squeeze(1), state, v_first.squeeze(1)
