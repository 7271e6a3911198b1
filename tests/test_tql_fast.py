"""The compiled baselines (:mod:`omnirl_core.evaluation.tql_fast`) against the numpy path they replace: the same
runs, draw for draw, for TQL-UCB (test and training scoring), random and the oracle, on suites with noisy
rewards, terminal goals and step limits; and a compiled run with one hyperparameter off is told apart."""

from __future__ import annotations

import numpy as np
import pytest

from omnirl_core.evaluation.baselines import run_fixed, run_tql
from omnirl_core.evaluation.suites import build_suite
from omnirl_core.evaluation.tql_fast import fast_path_available

SUITES = ["anymdp_16", "darkroom_6", "frozenlake_slippery", "anymdp_1"]


@pytest.fixture(scope="module", params=SUITES)
def suite(request):
    s = build_suite(request.param, 2)
    assert fast_path_available(s)[0]
    return s


def _same(a, b) -> None:
    # noisy rewards may differ in the last bit (vectorised numpy log/cos against the C library's)
    np.testing.assert_allclose(a.returns, b.returns, rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(a.steps, b.steps)


@pytest.mark.parametrize("scoring", ["test", "training"])
def test_compiled_tql_ucb_is_the_numpy_run(suite, scoring):
    kw = dict(c=0.5, H=50.0, scoring=scoring, eval_every=10, eval_episodes=3, seed=4)
    _same(run_tql(suite, 40, fast=True, **kw), run_tql(suite, 40, fast=False, **kw))


@pytest.mark.parametrize("agent", ["random", "oracle"])
def test_compiled_calibration_rows_are_the_numpy_runs(suite, agent):
    kw = dict(eval_every=10, eval_episodes=3, seed=2)
    _same(run_fixed(suite, agent, 20, fast=True, **kw), run_fixed(suite, agent, 20, fast=False, **kw))


@pytest.mark.parametrize("broken", [dict(H=51.0), dict(c=0.6), dict(seed=5)])
def test_a_compiled_run_with_another_setting_is_told_apart(broken):
    """The comparison above has power: one hyperparameter or the seed off gives other returns."""
    s = build_suite("anymdp_16", 2)
    kw = dict(c=0.5, H=50.0, eval_every=10, eval_episodes=3, seed=4)
    ref = run_tql(s, 40, fast=False, **kw)
    off = run_tql(s, 40, fast=True, **{**kw, **broken})
    with pytest.raises(AssertionError):
        _same(off, ref)
