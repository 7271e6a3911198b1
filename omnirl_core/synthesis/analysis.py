"""A look at synthesised data: tag shares, reward curves along the sequence, per-sequence changes of the reward
along the sequence, a dataset loaded as arrays.

Curves pooled over all sequences (:func:`reward_curves`) mix two things: how a kind of policy does as the sequence
goes on, and which sequences hold its steps at each position (a behaviour switched in late, a tag masked in part
of the sequences). The per-sequence measures (:func:`sequence_changes`, :func:`sequence_differences`) compare
steps of the same sequence, hence of the same task, and give one number per sequence, over which an interval can
be taken.
"""

from __future__ import annotations

import os

import numpy as np

from .behaviours import BEHAVIOURS
from .format import BOUNDARY, LABEL_MASKED, TAG_NAMES, TAG_UNKNOWN


def tag_statistics(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Fractions over all steps: each tag, boundary steps, masked labels, fully masked sequences."""
    tag, beh = data["tag"], data["behaviour"]
    real = beh != BOUNDARY
    out = {f"tag {i} ({TAG_NAMES[i]})": float((tag == i).mean()) for i in range(8)}
    out["boundary steps"] = float((~real).mean())
    out["masked labels"] = float((data["label"] == LABEL_MASKED).mean())
    out["tag 7 among non-boundary steps"] = float((tag[real] == TAG_UNKNOWN).mean())
    out["sequences with every tag 7"] = float(np.mean([(t[r] == TAG_UNKNOWN).all() for t, r in zip(tag, real)]))
    return out


def reward_curves(data: dict[str, np.ndarray], bins: int, by: str = "tag") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean reward per step in ``bins`` position bins along the sequence, per tag (or per behaviour).

    Returns (bin centres, {name: [bins] mean reward, NaN where the bin holds no such step}); tag 7 and
    boundary steps are left out.
    """
    T = data["reward"].shape[1]
    edges = np.linspace(0, T, bins + 1).astype(int)
    centres = (edges[:-1] + edges[1:]) / 2
    key = data["tag"] if by == "tag" else data["behaviour"]
    names = TAG_NAMES[:7] if by == "tag" else BEHAVIOURS
    keep = data["behaviour"] != BOUNDARY
    if by == "tag":
        keep &= data["tag"] != TAG_UNKNOWN
    out = {}
    for i, name in enumerate(names):
        m = keep & (key == i)
        if not m.any():
            continue
        vals = np.full(bins, np.nan)
        for j in range(bins):
            mj = m[:, edges[j] : edges[j + 1]]
            if mj.any():
                vals[j] = data["reward"][:, edges[j] : edges[j + 1]][mj].mean()
        out[name] = vals
    return centres, out


def _steps_of(data: dict[str, np.ndarray], name: str, by: str) -> np.ndarray:
    """[n, T] mask of the steps of the tag (``by="tag"``, a :data:`TAG_NAMES` entry) or behaviour (a
    :data:`BEHAVIOURS` entry) called ``name``; boundary steps never, tag-7 steps never for a tag."""
    keep = data["behaviour"] != BOUNDARY
    if by == "tag":
        return keep & (data["tag"] == TAG_NAMES.index(name)) & (data["tag"] != TAG_UNKNOWN)
    if by == "behaviour":
        return keep & (data["behaviour"] == BEHAVIOURS.index(name))
    raise ValueError(f"by must be 'tag' or 'behaviour', got {by!r}")


def _mean_reward(reward: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: mean reward over the masked steps (NaN for a row without one)."""
    n = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (reward * mask).sum(axis=1) / np.maximum(n, 1), np.nan)


def sequence_changes(data: dict[str, np.ndarray], name: str, by: str = "tag", frac: float = 0.25) -> np.ndarray:
    """Per sequence: mean reward per step of ``name``'s steps (a tag or a behaviour, see :func:`_steps_of`) in the
    last ``frac`` of the sequence minus that in the first ``frac``; only sequences with such steps in both parts
    (the others have nothing to compare). One value per kept sequence."""
    m = _steps_of(data, name, by)
    q = max(1, int(round(m.shape[1] * frac)))
    first = _mean_reward(data["reward"][:, :q], m[:, :q])
    last = _mean_reward(data["reward"][:, -q:], m[:, -q:])
    d = last - first
    return d[np.isfinite(d)]


def sequence_differences(data: dict[str, np.ndarray], a: str, b: str, by: str = "tag") -> np.ndarray:
    """Per sequence holding steps of both: mean reward per step of ``a``'s steps minus that of ``b``'s (over the
    whole sequence). One value per kept sequence."""
    d = _mean_reward(data["reward"], _steps_of(data, a, by)) - _mean_reward(data["reward"], _steps_of(data, b, by))
    return d[np.isfinite(d)]


def load_dataset_arrays(root: str | os.PathLike, max_shards: int | None = None) -> dict[str, np.ndarray]:
    """All arrays of (the first ``max_shards`` shards of) a dataset folder, concatenated, checksums verified."""
    from .format import load_manifest, load_shard

    man = load_manifest(root)
    recs = man["shards"][:max_shards]
    parts = [load_shard(root, r, verify=True, mmap=False) for r in recs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------- CLI
