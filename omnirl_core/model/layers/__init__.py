"""Backbone blocks: RWKV-7 and Gated DeltaNet (PyTorch path on CPU, fla's kernels on a GPU), GSA, Mamba2.

Every block has ``forward(x [B, T, D], state=None, v_first=None) -> (y, new_state, v_first)`` (``v_first`` is
used by RWKV-7 only, other blocks pass it through) and ``step(x_t [B, D], state, v_first)`` for one token.
``state`` is a dict of tensors (see each module); ``None`` means an empty memory.
"""

from omnirl_core.model.layers.gated_deltanet import GatedDeltaNet, GatedDeltaNetBlock
from omnirl_core.model.layers.gsa import GatedSlotAttention, GSABlock
from omnirl_core.model.layers.mamba2 import Mamba2, Mamba2Block
from omnirl_core.model.layers.rwkv7 import RWKV7Attention, RWKV7Block, RWKV7FeedForward

__all__ = [
    "GatedDeltaNet",
    "GatedDeltaNetBlock",
    "GatedSlotAttention",
    "GSABlock",
    "Mamba2",
    "Mamba2Block",
    "RWKV7Attention",
    "RWKV7Block",
    "RWKV7FeedForward",
]
