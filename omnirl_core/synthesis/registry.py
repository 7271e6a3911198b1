"""The registry of behaviours: what a behaviour is (:class:`Behaviour`), what a plug-in's act rule sees
(:class:`ActContext`), and the fourteen built-ins. It imports nothing else of the synthesis package, so the
configuration checks a mixture's behaviour names against it (:mod:`.behaviours` has the rest: weights, streams).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..workbook.plugins import Registry

TAG_RANDOM, TAG_MODEL_BASED, TAG_Q, TAG_UNKNOWN = 6, 4, 5, 7
"""The tags a built-in's own actions carry (oracle i: tag i), and "unknown" (the names: ``format.TAG_NAMES``)."""

SOURCES = ("drift", "mb", "q", "oracle", "uniform", "plugin")
"""What produces a behaviour's base action; ``plugin``: its own ``act`` rule."""
PLUGIN_SOURCE = SOURCES.index("plugin")
NOISES = ("none", "learner", "mb_oracle", "eps")
"""How its schedules mix in random and oracle actions: not at all, its learner's decaying noise, the model-based +
oracle mixture's two schedules, an epsilon decaying from 1."""
MAX_BEHAVIOURS = 255  # ids are uint8 and 255 marks boundary steps


@dataclass
class ActContext:
    """What a plug-in's ``act`` rule sees for the ``k`` sequences of a batch where it acts this step."""

    rows: np.ndarray
    "[k] the sequences' rows in the batch (index per-sequence state of your own with them)."
    states: np.ndarray
    "[k] the inner states they are in (0 .. ns - 1)."
    clock: np.ndarray
    "[k] environment steps since the start of each sequence."
    prev_action: np.ndarray
    "[k] the action executed at each sequence's previous step (-1 at the start of the sequence)."
    oracle: np.ndarray
    "[k] the label oracle's actions in these states (a behaviour may imitate or avoid it)."
    na: int
    "Number of actions."
    ns: int
    "Number of inner states of the batch's tasks."
    batch: int
    "Sequences in the batch (rows are below it)."
    rng: np.random.Generator
    "This behaviour's own random stream (keyed by its name): draw every random number from it."


@dataclass(frozen=True)
class Behaviour:
    """One behaviour of the mixture (see the module docstring)."""

    name: str
    tag: int
    source: str = "plugin"
    oracle: int = 0
    "Index into ``world.oracle.BEHAVIOUR_GAMMAS`` of the oracle it is, or that its schedules mix in."
    noise: str = "none"
    act: Callable[[ActContext], np.ndarray] | None = field(default=None, compare=False)
    doc: str = ""


_tables: dict = {}  # names -> BehaviourTable (behaviour_table)
BEHAVIOUR_REGISTRY: Registry[Behaviour] = Registry(
    "behaviour", hint="register one with omnirl_core.synthesis.register_behaviour, or list its module in "
                      "OMNIRL_PLUGINS")
BEHAVIOURS = BEHAVIOUR_REGISTRY.view()
"""Behaviour id -> name (the ``behaviour`` array; 255 marks boundary steps): the built-ins, then plug-ins in the
order they were registered. A dataset's manifest records the list it was written with."""


def register_behaviour(name: str, act: Callable[[ActContext], np.ndarray], *, tag: int, doc: str = "",
                       replace: bool = False) -> Behaviour:
    """Add a behaviour with its own act rule (``act(ctx: ActContext) -> actions [k]``) whose actions carry
    ``tag`` (0-6; 7 is "unknown", which masking sets). It joins a mixture by name (``mixture.weights``)."""
    if not callable(act):
        raise TypeError(f"behaviour {name!r}: act must be callable, got {act!r}")
    if not (isinstance(tag, int) and 0 <= tag < TAG_UNKNOWN):
        raise ValueError(f"behaviour {name!r}: tag must be an int in 0 .. {TAG_UNKNOWN - 1}, got {tag!r}")
    return _register(Behaviour(name, tag, "plugin", 0, "none", act, doc), replace)


def unregister_behaviour(name: str) -> Behaviour:
    """Remove a registered plug-in (a test that adds one removes it afterwards); built-ins stay."""
    if BEHAVIOUR_REGISTRY.get(name).source != "plugin":
        raise ValueError(f"behaviour {name!r} is built in and cannot be removed")
    _tables.clear()
    return BEHAVIOUR_REGISTRY.unregister(name)


def _register(b: Behaviour, replace: bool = False) -> Behaviour:
    known = b.name in BEHAVIOUR_REGISTRY._entries
    if known and replace and BEHAVIOUR_REGISTRY._entries[b.name].source != "plugin":
        raise ValueError(f"behaviour {b.name!r} is built in and cannot be replaced")
    if not known and len(BEHAVIOUR_REGISTRY._entries) >= MAX_BEHAVIOURS:
        raise ValueError(f"at most {MAX_BEHAVIOURS} behaviours (ids are uint8, 255 marks boundary steps)")
    _tables.clear()
    return BEHAVIOUR_REGISTRY.register(b.name, b, replace=replace)


# Built-ins: name, source, tag, oracle index of the base or mixed oracle, noise, description.
for _b in (
    ("drift_random", "drift", TAG_RANDOM, 0, "none", "drifting random softmax policy (drifting.py)"),
    ("model_based", "mb", TAG_MODEL_BASED, 0, "learner", "model-based learner with its drawn noise"),
    ("q_learning", "q", TAG_Q, 0, "learner", "Q-learner with its drawn noise"),
    ("mb_oracle_0", "mb", TAG_MODEL_BASED, 0, "mb_oracle", "model-based learner mixed with oracle gamma 0"),
    ("mb_oracle_1", "mb", TAG_MODEL_BASED, 1, "mb_oracle", "model-based learner mixed with oracle gamma 0.5"),
    ("mb_oracle_2", "mb", TAG_MODEL_BASED, 2, "mb_oracle", "model-based learner mixed with oracle gamma 0.93"),
    ("mb_oracle_3", "mb", TAG_MODEL_BASED, 3, "mb_oracle", "model-based learner mixed with oracle gamma 0.994"),
    ("noisy_oracle_0.93", "oracle", 2, 2, "eps", "oracle gamma 0.93, epsilon decaying from 1"),
    ("noisy_oracle_0.994", "oracle", 3, 3, "eps", "oracle gamma 0.994, epsilon decaying from 1"),
    ("oracle_0.5", "oracle", 1, 1, "none", "oracle gamma 0.5"),
    ("oracle_0.93", "oracle", 2, 2, "none", "oracle gamma 0.93"),
    ("oracle_0.994", "oracle", 3, 3, "none", "oracle gamma 0.994 (the label's)"),
    ("uniform_random", "uniform", TAG_RANDOM, 0, "none", "uniform random actions (preset dpt)"),
    ("q_learning_pure", "q", TAG_Q, 0, "none", "Q-learner without noise (preset ad)"),
):
    _register(Behaviour(_b[0], _b[2], _b[1], _b[3], _b[4], doc=_b[5]))


__all__ = ["ActContext", "BEHAVIOURS", "BEHAVIOUR_REGISTRY", "Behaviour", "MAX_BEHAVIOURS", "NOISES", "PLUGIN_SOURCE",
           "SOURCES", "register_behaviour", "unregister_behaviour"]
