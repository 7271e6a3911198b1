"""A plug-in module from outside the package: a toy suite, a toy backbone and a behaviour, registered on import.

``OMNIRL_PLUGINS=extending_example`` (with this folder on ``PYTHONPATH``) makes every command line accept them by
name: ``--suite toy_chain`` for the evaluation, ``model.backbone: toy_gru`` for training, ``mixture.weights:
{sticky_random: 0.2}`` for synthesis (tests/test_extending.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from omnirl_core.evaluation import register_suite, task_suite
from omnirl_core.model import register_backbone
from omnirl_core.synthesis import ActContext, register_behaviour
from omnirl_core.world import Task


def chain_task() -> Task:
    """3 states, 2 actions: action 1 moves right, action 0 stays; reaching state 2 pays 1 and ends the episode."""
    transition = np.zeros((3, 2, 3))
    for s in range(2):  # state 2 is terminal: its rows stay zero
        transition[s, 0, s] = 1.0
        transition[s, 1, s + 1] = 1.0
    reward = np.zeros((3, 2))
    reward[1, 1] = 1.0
    return Task.from_arrays(transition, reward, terminal=[0, 0, 1], max_steps=6)


def toy_chain(n_tasks: int, **options):
    """``n_tasks`` runs of the chain (the options of build_suite are not used)."""
    return task_suite("toy_chain", [chain_task()] * n_tasks)


class GRUBlock(nn.Module):
    """A pre-norm GRU with a residual connection. Memory: ``{"h": [B, D]}``, the GRU's last hidden state."""

    def __init__(self, cfg, layer_index: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.gru = nn.GRU(cfg.hidden_size, cfg.hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, state: dict | None = None, v_first=None):
        h0 = None if state is None else state["h"].unsqueeze(0).contiguous()  # nn.GRU wants [layers, B, D]
        y, h = self.gru(self.norm(x), h0)
        return x + y, {"h": h[0]}, v_first


STICKINESS = 0.9


def sticky_random(ctx: ActContext) -> np.ndarray:
    """Repeat the previous action with probability STICKINESS, else a uniform random one (its own stream)."""
    n = ctx.states.size
    keep = (ctx.prev_action >= 0) & (ctx.rng.random(n) < STICKINESS)
    return np.where(keep, ctx.prev_action, ctx.rng.integers(0, ctx.na, n))


register_suite("toy_chain", toy_chain, n_obs=3, na=2, family="toy", description="3-state chain, 2 actions")
register_backbone("toy_gru", GRUBlock, default_head_dim=8, description="a GRU")
register_behaviour("sticky_random", sticky_random, tag=6, doc="repeats its last action 9 times in 10")
