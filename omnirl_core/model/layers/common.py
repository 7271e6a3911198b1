"""Small building blocks shared by the backbone layers (parameter names follow flash-linear-attention)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import sys
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FLA_CORE_VERSION", "GatedMLP", "LoRA", "RMSNorm", "RMSNormGated", "ShortConvolution", "fla_kernel",
           "kernel_record", "token_shift"]


def token_shift(x: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
    """Previous token of every position. x: [B, T, D]; last: [B, D] (token before x[:, 0]) or None (zeros)."""
    first = x.new_zeros(x.shape[0], 1, x.shape[2]) if last is None else last.unsqueeze(1).to(x.dtype)
    return torch.cat([first, x[:, :-1]], dim=1)  # [B, T, D]


FLA_CORE_VERSION = "0.6.0"  # the fla-core release whose op signatures the layers call (pinned in the gpu extra)
_REPORTED: set[tuple[str, str]] = set()  # (layer, message) already said in this process
_CHOICES: dict[tuple, tuple] = {}  # (layer, backend, module, name, on GPU, device, ours) -> (op or None, said)
_RECORDS: list[set[tuple[str, str]]] = []  # the open kernel_record() blocks


@functools.cache
def _load_fla_op(module: str, name: str) -> tuple[Callable | None, str]:
    """(``fla.ops.<module>.<name>``, "") when importable, else (None, why not)."""
    try:
        return getattr(importlib.import_module(f"fla.ops.{module}"), name), ""
    except Exception as err:  # ImportError without triton or fla; anything else means the GPU path is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return None, f"{type(err).__name__}: {first}"  # one line: the error names the layer and this reason


def fla_kernel(layer: str, x: torch.Tensor, backend: str, module: str, name: str, ours: str = "") -> Callable | None:
    """The fla op a layer should call for ``x``, or None for our pure-PyTorch path; says once per process which
    path each layer uses, and why fla's was not taken when it was not. ``ours``: which of our kernels the layer
    runs when fla's is not taken, and why (a layer that picks among its own kernels by shape), appended to the
    report after a semicolon.

    ``backend``: ``"torch"`` always our kernels; ``"fla"`` always fla's (a one-line error naming the layer when
    they cannot be imported, or when ``x`` is not a CUDA tensor and Triton's interpreter is off);
    ``"auto"`` fla's Triton kernels on a CUDA tensor when ``fla.ops.<module>.<name>`` imports, else ours. Every
    forward pass asks, so the answer is kept per (layer, backend, op, device): one dict lookup after the first.
    """
    key = (layer, backend, module, name, _on_gpu(x), x.device.type, ours)
    if key not in _CHOICES:
        op, why = _choose(layer, x, backend, module, name)
        path = f"fla.ops.{module}.{name}" if op is not None else "the PyTorch kernels of omnirl_core.model.ops"
        said = f"{path} ({why})" + (f"; {ours}" if op is None and ours else "")
        _report(layer, f"{layer}: {said}")
        _CHOICES[key] = op, (layer, said)
    op, said = _CHOICES[key]
    for record in _RECORDS:
        record.add(said)
    return op


@contextlib.contextmanager
def kernel_record():
    """``with kernel_record() as used:`` fills ``used`` with ``{layer: [kernels it ran (reason)]}`` for the forward
    passes inside the block, e.g. ``{"RWKV-7": ["fla.ops.rwkv7.chunk_rwkv7 (backend: fla)"]}`` (several entries
    when a layer ran on several devices); training writes it into its run folder."""
    seen: set[tuple[str, str]] = set()
    used: dict[str, list[str]] = {}
    _RECORDS.append(seen)
    try:
        yield used
    finally:
        _RECORDS.remove(seen)
        for layer, message in sorted(seen):
            used.setdefault(layer, []).append(message)


def _choose(layer: str, x: torch.Tensor, backend: str, module: str, name: str) -> tuple[Callable | None, str]:
    if backend == "torch":
        return None, "backend: torch"
    if backend == "auto" and not _on_gpu(x):  # decided without importing fla (or triton) at all
        return None, f"backend: auto, tensor on {x.device.type} (fla's kernels are Triton, GPU only)"
    op, err = _load_fla_op(module, name)
    if backend == "fla":
        if op is None:
            raise RuntimeError(f"{layer}: backend 'fla' needs flash-linear-attention with triton "
                               f"(fla.ops.{module}.{name}): {err}")
        if not _on_gpu(x) and not _interpreted():
            raise RuntimeError(f"{layer}: backend 'fla' runs fla's Triton kernels (fla.ops.{module}.{name}) on CUDA "
                               f"tensors, this one is on {x.device.type}; use backend 'auto' or 'torch' here")
        return op, "backend: fla" + ("" if _on_gpu(x) else ", Triton interpreter (TRITON_INTERPRET=1)")
    if op is None:
        return None, f"backend: auto, fla.ops.{module}.{name} cannot be imported ({err})"
    return op, "backend: auto, CUDA tensor"


def _interpreted() -> bool:
    """Triton's interpreter runs the kernels on CPU tensors (used to test fla's kernels without a GPU)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _on_gpu(x: torch.Tensor) -> bool:
    return x.is_cuda


def _report(layer: str, message: str) -> None:
    """Say ``message`` once per process: on stderr, except inside a Jupyter kernel, where stderr renders as a
    warning box and this line is information, so it goes to the cell's ordinary output."""
    if (layer, message) not in _REPORTED:
        _REPORTED.add((layer, message))
        in_kernel = type(sys.stderr).__module__.startswith("ipykernel")
        print(f"[omnirl kernels] {message}", file=sys.stdout if in_kernel else sys.stderr)


class LoRA(nn.Module):
    """Low-rank projection ``d -> r -> out`` with an activation in between (keys ``lora.0.weight``, ``lora.2.*``)."""

    def __init__(self, input_dim: int, output_dim: int, low_rank_dim: int, bias: bool = True, activation=None):
        super().__init__()
        act = {None: nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation]
        self.lora = nn.Sequential(
            nn.Linear(input_dim, low_rank_dim, bias=False), act(), nn.Linear(low_rank_dim, output_dim, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora(x)

    @torch.no_grad()
    def reset_lowrank(self, bias_value: torch.Tensor | float | None = None) -> None:
        """RWKV-7 style init: first matrix zero, second orthogonal with a small gain, bias = ``bias_value``."""
        w1, w2 = self.lora[0].weight, self.lora[2].weight
        if w1.is_meta:
            return
        nn.init.zeros_(w1)
        gain = math.sqrt(w2.shape[0] / w2.shape[1]) if w2.shape[0] > w2.shape[1] else 1.0
        nn.init.orthogonal_(w2, gain=0.1 * gain)
        if self.lora[2].bias is not None:
            self.lora[2].bias.zero_()
            if bias_value is not None:
                self.lora[2].bias.add_(bias_value)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


class RMSNormGated(RMSNorm):
    """``rmsnorm(x) * weight * silu(gate)`` over the last dim (fla's ``FusedRMSNormGated`` with swish)."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) * F.silu(gate)


class GatedMLP(nn.Module):
    """SwiGLU MLP: ``down(silu(gate(x)) * up(x))`` (fla's ``GatedMLP`` keys)."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ShortConvolution(nn.Conv1d):
    """Causal depthwise convolution over time followed by SiLU (weight ``[D, 1, W]``, as fla's).

    ``forward(x [B, T, D], cache [B, D, W-1] | None) -> (y [B, T, D], new cache [B, D, W-1])``: the cache holds
    the last ``W - 1`` inputs, so chunked or step-by-step calls equal one call on the whole sequence.
    """

    def __init__(self, hidden_size: int, kernel_size: int = 4, bias: bool = False):
        super().__init__(hidden_size, hidden_size, kernel_size, groups=hidden_size, padding=0, bias=bias)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None):  # type: ignore[override]
        B, T, D = x.shape
        W = self.kernel_size[0]
        xt = x.transpose(1, 2)  # [B, D, T]
        if cache is None:
            cache = xt.new_zeros(B, D, W - 1)
        xx = torch.cat([cache.to(xt.dtype), xt], dim=-1)  # [B, D, W-1+T]
        y = F.conv1d(xx, self.weight, self.bias, groups=D)  # [B, D, T]
        return F.silu(y).transpose(1, 2), xx[..., xx.shape[-1] - (W - 1) :]


class PreNormBlock(nn.Module):
    """``x + attn(norm(x))`` then ``+ mlp(norm(.))``; subclasses set attn_norm, attn, mlp_norm, mlp.

    ``forward(x [B, T, D], state, v_first) -> (y, state, v_first)``; ``step`` is the one-token case.
    """

    def forward(self, x: torch.Tensor, state: dict | None = None, v_first=None):
        o, state = self.attn(self.attn_norm(x), state)
        x = x + o
        return x + self.mlp(self.mlp_norm(x)), state, v_first

    def step(self, x_t: torch.Tensor, state: dict | None = None, v_first=None):
        y, state, _ = self.forward(x_t.unsqueeze(1), state)
        return y.squeeze(1), state, v_first
