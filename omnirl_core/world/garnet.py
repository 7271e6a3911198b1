"""Garnet tasks (the paper's Garnet ablation): b random successors per (state, action), Gaussian mean rewards.
"""

from __future__ import annotations

import numpy as np

from .anymdp import _check_sizes, episode_limit
from .task import Task, as_generator


def sample_garnet(
    ns: int, na: int = 5, b: int = 2, seed: int | np.random.Generator | None = None, *, sigma: float = 0.1
) -> Task:
    """Garnet(ns, na, b): b distinct random successors per (s, a) with a uniform random partition of 1 as
    probabilities, mean rewards N(0, sigma^2) per (s, a, s'), no noise, start in state 0, no terminals."""
    _check_sizes(ns, na, allow_bandit=False)
    if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) or not 1 <= b <= ns:
        raise ValueError(f"branching b must be an int in [1, ns={ns}], got {b!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = as_generator(seed)
    max_steps = episode_limit(ns, rng)
    mapping = rng.permutation(ns)
    successors = np.argsort(rng.random((ns, na, ns)), axis=2)[:, :, :b]  # b distinct states, uniformly
    cuts = np.sort(rng.random((ns, na, b - 1)), axis=2)
    probs = np.diff(np.concatenate([np.zeros((ns, na, 1)), cuts, np.ones((ns, na, 1))], axis=2), axis=2)
    P = np.zeros((ns, na, ns))
    np.put_along_axis(P, successors, probs, axis=2)
    reward = rng.standard_normal((ns, na, ns)) * sigma
    meta = {"sampler": "garnet", "ns": int(ns), "na": int(na), "b": int(b), "sigma": float(sigma)}
    if isinstance(seed, (int, np.integer)):
        meta["seed"] = int(seed)
    return Task(
        transition=P,
        reward=reward,
        reward_noise=np.zeros_like(reward),
        start_prob=np.eye(ns)[0],
        terminal=np.zeros(ns, bool),
        max_steps=max_steps,
        state_mapping=mapping,
        kind="garnet",
        meta=meta,
    )
