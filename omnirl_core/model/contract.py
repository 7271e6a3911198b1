"""The block contract's check (:mod:`.backbones` writes the contract): run on every registered backbone by
``tests/test_model.py``, and by anyone registering their own."""

from __future__ import annotations

import torch
import torch.nn as nn

from .backbones import build_block
from .omnirl import ModelConfig


def _leaves(memory, where: str):
    """(path, tensor) of every tensor of a block's memory; AssertionError for anything else."""
    if isinstance(memory, torch.Tensor):
        yield where, memory
    elif isinstance(memory, dict):
        for key, value in memory.items():
            yield from _leaves(value, f"{where}[{key!r}]")
    else:
        raise AssertionError(f"{where}: a block's memory holds tensors in a dict, got {type(memory).__name__}")


def _merge_rows(new, old, rows: torch.Tensor):
    """Memory with ``new``'s rows where ``rows`` [B] is True and ``old``'s elsewhere (as evaluation merges)."""
    if isinstance(new, torch.Tensor):
        return torch.where(rows.view((-1,) + (1,) * (new.dim() - 1)), new, old)
    return {k: _merge_rows(v, old[k], rows) for k, v in new.items()}


def _run(blocks, x: torch.Tensor, memories: list | None):
    """x through the stack of blocks as OmniRL runs it: (output, new memories)."""
    memories = memories or [None] * len(blocks)
    new, v_first = [], None
    for i, (block, mem) in enumerate(zip(blocks, memories)):
        y, mem, v_first = block(x, mem, v_first)
        assert tuple(y.shape) == tuple(x.shape), f"block {i}: output {tuple(y.shape)} for input {tuple(x.shape)}"
        assert isinstance(mem, dict), f"block {i}: the memory returned is a dict, got {type(mem).__name__}"
        x = y
        new.append(mem)
    return x, new


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert a.shape == b.shape and err <= tol * (1.0 + b.abs().max().item()), f"{what}: max difference {err:.3g}"


def check_block_contract(backbone: str, cfg=None, *, batch: int = 3, steps: int = 13, cut: tuple[int, ...] = (5, 6),
                         tol: float = 1e-4, seed: int = 0) -> None:
    """Check that the blocks of ``backbone`` keep the contract of this module's docstring (AssertionError naming
    the broken part otherwise), on a stack of two blocks as the model runs them: outputs ``[B, T, D]``; memory a
    dict of batch-first tensors of the same shapes after any number of tokens; ``x`` in chunks (cut at ``cut``,
    a one-token chunk included) equal to one pass, outputs and final memory; a row of the memory replaced by
    another sequence's changes that row's outputs only, to what that sequence gives.

    ``cfg``: the :class:`~omnirl_core.model.ModelConfig` to build the blocks with (default: width 32, two
    layers, head size 8, chunk size 8 of the PyTorch kernels, so the whole pass spans several kernel chunks)."""
    if cfg is None:
        cfg = ModelConfig(backbone=backbone, ns_max=8, na=5, hidden_size=32, num_layers=2, intermediate_size=48,
                          head_dim=8, gdn_num_heads=2, chunk_size=8, backend="torch")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    blocks = nn.ModuleList(build_block(cfg, i) for i in range(cfg.num_layers)).eval()
    with torch.no_grad():  # some blocks initialise output matrices to zero: perturb so every path matters
        for p in blocks.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        B, T, D = batch, steps, cfg.hidden_size
        x = torch.randn(B, T, D, generator=g)
        whole, mem_whole = _run(blocks, x, None)
        edges = [0, *cut, T]
        outs, mem, shapes = [], None, None
        for lo, hi in zip(edges[:-1], edges[1:]):
            y, mem = _run(blocks, x[:, lo:hi], mem)
            outs.append(y)
            now = {f"blocks[{i}]{p}": tuple(t.shape) for i, m in enumerate(mem) for p, t in _leaves(m, "")}
            for path, shape in now.items():
                assert shape[:1] == (B,), f"memory {path}: shape {shape}, expected batch-first [{B}, ...]"
            assert shapes is None or now == shapes, (f"memory shapes change with the tokens fed: {shapes} after "
                                                     f"{edges[1]} tokens, {now} after {hi}")
            shapes = now
        _close(torch.cat(outs, dim=1), whole, tol, f"{backbone}: outputs in chunks {edges} against one pass")
        for i, (a, b) in enumerate(zip(mem, mem_whole)):
            for (path, ta), (_, tb) in zip(_leaves(a, ""), _leaves(b, "")):
                _close(ta, tb, tol, f"{backbone}: final memory blocks[{i}]{path} in chunks against one pass")
        # row independence: row 0's memory replaced by another sequence's memory
        t0 = cut[0]
        other = torch.randn(B, T, D, generator=g)
        _, mem_x = _run(blocks, x[:, :t0], None)
        _, mem_o = _run(blocks, other[:, :t0], None)
        rows = torch.zeros(B, dtype=torch.bool)
        rows[0] = True
        merged = [_merge_rows(o, m, rows) for o, m in zip(mem_o, mem_x)]
        y_x, _ = _run(blocks, x[:, t0:], mem_x)
        y_o, _ = _run(blocks, x[:, t0:], mem_o)
        y_m, _ = _run(blocks, x[:, t0:], merged)
        _close(y_m[1:], y_x[1:], tol, f"{backbone}: rows 1.. after replacing row 0's memory")
        _close(y_m[:1], y_o[:1], tol, f"{backbone}: row 0 after replacing its memory")
