"""The behaviours of decoupled policy distillation: a name-keyed registry, the mixture's weights by name, and the
random stream each behaviour draws from.

A behaviour (:class:`Behaviour`) has a name, the tag its own actions carry (0-7, :data:`~.format.TAG_NAMES`), and
either a built-in source (the drifting random policy, the model-based learner, the Q-learner, an oracle, uniform
random; optionally mixed with random actions and an oracle by its schedules, :mod:`.schedules`) or an ``act``
rule of its own (a plug-in). Built-ins run in both engines; a plug-in runs in the numpy engine (a dataset whose
mixture draws one runs there whatever its ``engine``, and says so once).

Outside code adds one as Gymnasium adds environments::

    from omnirl_core.synthesis import ActContext, register_behaviour

    def sticky_random(ctx: ActContext) -> np.ndarray:   # ctx.states [k] -> actions [k] in 0 .. na - 1
        keep = (ctx.prev_action >= 0) & (ctx.rng.random(ctx.states.size) < 0.9)
        return np.where(keep, ctx.prev_action, ctx.rng.integers(0, ctx.na, ctx.states.size))

    register_behaviour("sticky_random", sticky_random, tag=6)

and gives it a weight by name in a dataset's mixture (``mixture.weights: {sticky_random: 0.2}``); a module listed
in ``OMNIRL_PLUGINS`` is imported by every command line and worker (:mod:`omnirl_core.workbook.plugins`).

Random streams: a behaviour's schedule parameters and a plug-in's actions come from a stream of its own, keyed by
its name (:func:`named_stream`), and the learners' hyperparameters from the stream named ``learners``; a behaviour
with weight 0 draws nothing. So adding a behaviour never shifts another's draws: with weight 0 every byte of a
dataset stays the same (``tests/test_extending.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..workbook.errors import InputError
from ..workbook.plugins import Registry
from .config import DatasetConfig
from .format import TAG_MODEL_BASED, TAG_Q, TAG_RANDOM, TAG_UNKNOWN

SOURCES = ("drift", "mb", "q", "oracle", "uniform", "plugin")
"""What produces a behaviour's base action; ``plugin``: its own ``act`` rule."""
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


@dataclass(frozen=True)
class BehaviourTable:
    """The registry as arrays over behaviour ids, for the engines."""

    names: tuple[str, ...]
    src: np.ndarray  # [nb] index into SOURCES
    tag: np.ndarray  # [nb] uint8
    orc: np.ndarray  # [nb] oracle index
    noise: np.ndarray  # [nb] index into NOISES
    entries: tuple[Behaviour, ...]



def behaviour_table() -> BehaviourTable:
    """The registered behaviours in id order (built once per set of names)."""
    names = BEHAVIOUR_REGISTRY.names()
    if names not in _tables:
        entries = tuple(BEHAVIOUR_REGISTRY.get(n) for n in names)
        _tables[names] = BehaviourTable(
            names, np.array([SOURCES.index(b.source) for b in entries]),
            np.array([b.tag for b in entries], dtype=np.uint8), np.array([b.oracle for b in entries]),
            np.array([NOISES.index(b.noise) for b in entries]), entries)
    return _tables[names]


# ---------------------------------------------------------------------------------------------- weights
PRESET_WEIGHTS = {
    "dpt": {"oracle_0.994": 1.0, "q_learning": 1.0, "uniform_random": 1.0},
    "ad": {"q_learning_pure": 1.0},
    "ad_eps": {"noisy_oracle_0.994": 1.0},
}
"""The presets with fixed behaviours (the paper's baselines); ``dpd`` and ``no_tags`` take the mixture's."""


def mixture_weights(cfg: DatasetConfig) -> dict[str, float]:
    """Unnormalised weights by behaviour name: the preset's, or for ``dpd`` / ``no_tags`` the mixture's ``w_*``
    fields, with ``mixture.weights`` (any registered name) added or overriding."""
    if cfg.preset in PRESET_WEIGHTS:
        return dict(PRESET_WEIGHTS[cfg.preset])
    m = cfg.mixture
    w = {"drift_random": m.w_drift_random, "model_based": m.w_model_based, "q_learning": m.w_q_learning}
    w |= {f"mb_oracle_{i}": v for i, v in enumerate(m.w_mb_oracle)}
    w |= dict(zip(("noisy_oracle_0.93", "noisy_oracle_0.994"), m.w_noisy_oracle))
    w |= dict(zip(("oracle_0.5", "oracle_0.93", "oracle_0.994"), m.w_oracle))
    for name, v in m.weights.items():
        if name not in BEHAVIOUR_REGISTRY:
            raise InputError(f"mixture.weights: unknown behaviour {name!r}; registered: "
                             f"{', '.join(BEHAVIOUR_REGISTRY.names())} ({BEHAVIOUR_REGISTRY.hint})")
        w[name] = float(v)
    return w


def behaviour_weights(cfg: DatasetConfig) -> np.ndarray:
    """Normalised weights over :data:`BEHAVIOURS` (ids) for the config's preset and mixture."""
    names = behaviour_table().names
    w = np.zeros(len(names))
    for name, v in mixture_weights(cfg).items():
        w[names.index(name)] = v
    if w.sum() <= 0:
        raise ValueError("the behaviour weights of the mixture are all zero")
    return w / w.sum()


def _scan_table(weights: np.ndarray) -> np.ndarray:
    """Cumulative weights for drawing by scan: behaviour = first i with u < table[i], u ~ U[0, 1).

    Zero-weight behaviours get -1 (never drawn), the last behaviour with weight gets exactly 1.0 (so rounding
    never lets the draw run past it); entries after it get 2.0 (never reached).
    """
    table = np.cumsum(weights)
    last = int(np.flatnonzero(weights > 0)[-1])
    table[last] = 1.0
    table[last + 1 :] = 2.0
    table[weights <= 0] = np.where(np.arange(len(weights))[weights <= 0] > last, 2.0, -1.0)
    return table


# ---------------------------------------------------------------------------------------------- streams
_STREAMS = 0x62656876  # a spawn-key word of its own: named streams never meet SeedSequence.spawn's children


def named_stream(seq: np.random.SeedSequence, name: str) -> np.random.Generator:
    """The random stream called ``name`` of a batch whose seed sequence is ``seq``: a child of ``seq`` keyed by
    the name's CRC-32, independent of every other name's and of ``seq.spawn``'s children."""
    key = (*seq.spawn_key, _STREAMS, zlib.crc32(name.encode()))
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=key, pool_size=seq.pool_size))


__all__ = ["ActContext", "BEHAVIOURS", "BEHAVIOUR_REGISTRY", "Behaviour", "BehaviourTable", "NOISES",
           "PRESET_WEIGHTS", "SOURCES", "behaviour_table", "behaviour_weights", "mixture_weights", "named_stream",
           "register_behaviour", "unregister_behaviour"]
