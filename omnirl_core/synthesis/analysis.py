"""A look at synthesised data: tag shares, reward curves along the sequence, a dataset loaded as arrays.
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


def load_dataset_arrays(root: str | os.PathLike, max_shards: int | None = None) -> dict[str, np.ndarray]:
    """All arrays of (the first ``max_shards`` shards of) a dataset folder, concatenated, checksums verified."""
    from .format import load_manifest, load_shard

    man = load_manifest(root)
    recs = man["shards"][:max_shards]
    parts = [load_shard(root, r, verify=True, mmap=False) for r in recs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------- CLI
