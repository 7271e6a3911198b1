"""The behaviours of decoupled policy distillation: the registry (kept in :mod:`.registry`, re-exported here), the
mixture's weights by name, and the random stream each behaviour draws from.

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

and gives it a weight by name in a dataset's mixture (``mixture.weights: {sticky_random: 0.2}``, whose names the
configuration checks against the registry when it is loaded); a module listed
in ``OMNIRL_PLUGINS`` is imported by every command line and worker (:mod:`omnirl_core.workbook.plugins`).

Random streams: a behaviour's schedule parameters and a plug-in's actions come from a stream of its own, keyed by
its name (:func:`named_stream`), and the learners' hyperparameters from the stream named ``learners``; a behaviour
with weight 0 draws nothing. So adding a behaviour never shifts another's draws: with weight 0 every byte of a
dataset stays the same (``tests/test_extending.py``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .config import DatasetConfig
from .registry import (
    BEHAVIOUR_REGISTRY,
    BEHAVIOURS,
    NOISES,
    SOURCES,
    ActContext,
    Behaviour,
    _tables,
    register_behaviour,
    unregister_behaviour,
)


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
    return w | {name: float(v) for name, v in m.weights.items()}  # names checked by MixtureConfig.validate


def behaviour_weights(cfg: DatasetConfig) -> np.ndarray:
    """Normalised weights over :data:`BEHAVIOURS` (ids) for the config's preset and mixture."""
    names = behaviour_table().names
    w = np.zeros(len(names))
    for name, v in mixture_weights(cfg).items():
        w[names.index(BEHAVIOUR_REGISTRY.get(name).name)] = v  # get: an unregistered name lists the registered
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
