"""The backbone registry: which sequence block :class:`~omnirl_core.model.omnirl.OmniRL` stacks, by name.

``register_backbone(name, block_factory, *, default_head_dim)`` adds one; the built-ins (``rwkv7``,
``gated_deltanet``, ``gsa``, ``mamba2``) are registered through it. :data:`BACKBONES` is a live view of the
registered names: ``ModelConfig.backbone`` accepts exactly these, so a backbone registered from another module
(imported by hand, or listed in ``OMNIRL_PLUGINS``: :mod:`omnirl_core.workbook.plugins`) can be trained,
evaluated and loaded by name like a built-in one.

The block contract (what :class:`~omnirl_core.model.omnirl.OmniRL`, training and evaluation rely on):

- ``block_factory(cfg, layer_index) -> nn.Module``: ``cfg`` is the :class:`~omnirl_core.model.ModelConfig`
  (``hidden_size``, ``intermediate_size``, ``resolved_head_dim``, ``num_layers``, ``chunk_size``, ``backend``,
  ``norm_eps``, ...), ``layer_index`` 0 .. num_layers - 1. It must also build on the meta device (parameter
  counts build the model there).
- ``block(x, memory=None, v_first=None) -> (y, new_memory, v_first)``: ``x`` and ``y`` are ``[B, T, D]`` with
  ``D = cfg.hidden_size``; ``y`` is the block's whole output (the residual stream after the block, not only its
  update). ``v_first`` is RWKV-7's value of the first layer: a block that does not use it returns it unchanged.
- ``memory``: ``None`` is the empty memory; otherwise the dict the block returned for the tokens before ``x``.
  It holds tensors whose first dimension is the batch (``[B, ...]``), with shapes that do not depend on ``T``.
  Training carries it from one chunk of a sequence to the next (:func:`~omnirl_core.model.omnirl.detach_state`
  in between); online acting feeds one to four tokens at a time.
- Chunked processing equals one pass: running ``x[:, :t]`` and then ``x[:, t:]`` with the memory of the first
  part gives the outputs (and final memory) of one pass over ``x``, within float tolerance, for any ``t``.
- Rows are independent: row b of the output and memory depends only on row b of the input and memory. Evaluation
  merges memories row by row (the runs of a batch end their episodes at different steps), which is only right
  when no row reads another.

:func:`.contract.check_block_contract` checks all of this for a registered backbone (tests/test_model.py runs it for
every registered name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..workbook.plugins import Registry
from .layers.gated_deltanet import GatedDeltaNetBlock
from .layers.gsa import GSABlock
from .layers.mamba2 import Mamba2Block
from .layers.rwkv7 import RWKV7Block

__all__ = ["BACKBONES", "BackboneSpec", "backbone_spec", "build_block", "register_backbone",
           "unregister_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its block factory and the head size used when ``ModelConfig.head_dim`` is None."""

    name: str
    block_factory: Callable[..., nn.Module]
    default_head_dim: int
    description: str = ""


_REGISTRY: Registry[BackboneSpec] = Registry(
    "backbone", "register one with omnirl_core.model.register_backbone, or list its module in OMNIRL_PLUGINS")
BACKBONES = _REGISTRY.view()
"""The registered backbone names (a live, tuple-like view: plug-ins included)."""


def register_backbone(name: str, block_factory: Callable[..., nn.Module], *, default_head_dim: int,
                      description: str = "", replace: bool = False) -> BackboneSpec:
    """Register backbone ``name``: ``block_factory(cfg, layer_index)`` builds one block obeying the contract of this
    module's docstring; ``default_head_dim``: the recurrent head size when the config leaves ``head_dim`` None.
    A name registered already is an error unless ``replace=True``."""
    if not callable(block_factory):
        raise TypeError(f"backbone {name!r}: block_factory must be callable, got {block_factory!r}")
    if not (isinstance(default_head_dim, int) and default_head_dim >= 1):
        raise ValueError(f"backbone {name!r}: default_head_dim must be an int >= 1, got {default_head_dim!r}")
    return _REGISTRY.register(name, BackboneSpec(name, block_factory, default_head_dim, description), replace=replace)


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone ``name`` (an :class:`~omnirl_core.workbook.errors.InputError` listing the names
    otherwise)."""
    return _REGISTRY.get(name)


def unregister_backbone(name: str) -> BackboneSpec:
    """Remove a registered backbone (for tests that register a temporary one)."""
    return _REGISTRY.unregister(name)


def build_block(cfg, layer_index: int) -> nn.Module:
    """Block ``layer_index`` of a model with configuration ``cfg``."""
    return backbone_spec(cfg.backbone).block_factory(cfg, layer_index)


# ---------------------------------------------------------------------------------------------- built-ins
def _rwkv7(cfg, i: int) -> nn.Module:
    return RWKV7Block(cfg.hidden_size, cfg.intermediate_size, cfg.resolved_head_dim, layer_idx=i,
                      num_hidden_layers=cfg.num_layers, norm_eps=cfg.norm_eps, chunk_size=cfg.chunk_size or 64,
                      backend=cfg.backend)


def _gated_deltanet(cfg, i: int) -> nn.Module:
    return GatedDeltaNetBlock(cfg.hidden_size, cfg.intermediate_size, cfg.resolved_head_dim, cfg.gdn_num_heads,
                              cfg.gdn_expand_v, norm_eps=cfg.norm_eps, chunk_size=cfg.chunk_size or 64,
                              backend=cfg.backend)


def _gsa(cfg, i: int) -> nn.Module:
    # SwiGLU with 2/3 of intermediate_size: as many weights as a 2-matrix FFN
    return GSABlock(cfg.hidden_size, max(1, round(2 * cfg.intermediate_size / 3)), cfg.resolved_head_dim,
                    norm_eps=cfg.norm_eps, chunk_size=cfg.chunk_size or 32, backend=cfg.backend)


def _mamba2(cfg, i: int) -> nn.Module:
    return Mamba2Block(cfg.hidden_size, cfg.resolved_head_dim, cfg.mamba_state_size, cfg.mamba_expand,
                       norm_eps=cfg.norm_eps, chunk_size=cfg.chunk_size or 64, backend=cfg.backend)


register_backbone("rwkv7", _rwkv7, default_head_dim=64, description="RWKV-7 (the paper's choice)")
register_backbone("gated_deltanet", _gated_deltanet, default_head_dim=48, description="Gated DeltaNet")
register_backbone("gsa", _gsa, default_head_dim=64, description="Gated Slot Attention")
register_backbone("mamba2", _mamba2, default_head_dim=128, description="Mamba2 (no feed-forward part)")
