"""The project's one tuning rule, shared by TQL-UCB and PPO in Table 1 (:mod:`.baselines`, :mod:`.ppo`) and by
TQL-UCB beside the ablations (:func:`omnirl_core.studies.ablations.tql_reference`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

import numpy as np

from ..workbook.errors import InputError

R = TypeVar("R")


def pick_best(settings: Iterable[Hashable], run: Callable[[Hashable], R],
              score: Callable[[R], float]) -> tuple[Hashable, R, dict]:
    """The project's one tuning rule (TQL-UCB and PPO in Table 1, TQL-UCB beside the ablations): ``run`` every
    setting, score each result, keep the highest (a NaN score ranks lowest; the first of equal scores wins).
    Returns (setting, its result, {setting: score}). Selection is on the runs themselves, tuned per task family
    as in the paper, which favours the tuned baseline slightly."""
    chosen, scores = None, {}
    for setting in settings:
        result = run(setting)
        scores[setting] = value = float(score(result))
        if chosen is None or np.nan_to_num(value, nan=-np.inf) > np.nan_to_num(chosen[2], nan=-np.inf):
            chosen = (setting, result, value)
    if chosen is None:
        raise InputError("nothing to tune: the grid of settings is empty")
    return chosen[0], chosen[1], scores
