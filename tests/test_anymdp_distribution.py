"""Statistical agreement of our AnyMDP sampler with the reference sampler (Xenoverse 0.1.14.0).

Reference numbers: tests/data/reference_task_stats.json (tasks AnyMDPTaskSampler(ns, 5, seed=1000+i),
statistics by omnirl_core.world.stats.task_statistics, written by bench/reference_task_stats.py; provenance
inside) and omnirl_core/data/reference_anymdp_stats.json (the ten statistics as first measured).

Test: for each statistic, the difference of the two sample means must lie within
    Z * sqrt(sd_ours^2 / n_ours + sd_ref^2 / n_ref)       (Welch standard error of the difference)
with Z = 4.5: under agreement each check fails with probability about 7e-6, so the ~80 checks below
fail together with probability < 1e-3; seeds are fixed, so the outcome is deterministic. The
``broken`` tests run the same comparison on deliberately wrong samplers and require it to reject them,
which shows the checks have power.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from omnirl_core.world import anymdp as tasks_module
from omnirl_core.world import sample_anymdp, task_statistics
from omnirl_core.world.stats import REFERENCE_STATISTICS, summarise

Z = 4.5
DATA = Path(__file__).parent / "data" / "reference_task_stats.json"
REFERENCE = json.loads(DATA.read_text())
OUR_SEED0 = 500_000  # far from the reference's seeds (1000 + i); the generators differ anyway
SAMPLE_SIZES = {1: 400, 16: 200, 32: 120, 64: 60, 128: 16}
STATISTICS = REFERENCE_STATISTICS + ("self_loop", "forward_mass", "span", "value_rank_corr")


def our_summary(ns: int, n: int) -> dict:
    return summarise(task_statistics(sample_anymdp(ns, 5, seed=OUR_SEED0 + i)) for i in range(n))


def disagreements(ours: dict, ref: dict) -> list[str]:
    """Names (with z-scores) of the statistics whose means differ beyond Z standard errors."""
    bad = []
    for key in STATISTICS:
        if key not in ref or key not in ours:
            continue
        o, r = ours[key], ref[key]
        se = np.sqrt(o["std"] ** 2 / o["n"] + r["std"] ** 2 / r["n"])
        diff = o["mean"] - r["mean"]
        if abs(diff) > Z * se + 1e-9:
            bad.append(f"{key}: ours {o['mean']:.4g} vs reference {r['mean']:.4g} (z={diff / max(se, 1e-12):.1f})")
    return bad


@pytest.mark.parametrize("ns", [1, 16, 32, 64, pytest.param(128, marks=pytest.mark.slow)])
def test_sampler_agrees_with_reference(ns):
    ours = our_summary(ns, SAMPLE_SIZES[ns])
    ref = REFERENCE[f"ns{ns}"]
    assert ref["n_terminal"]["n"] >= 16
    bad = disagreements(ours, ref)
    assert not bad, f"AnyMDP({ns}, 5) differs from the reference:\n" + "\n".join(bad)


def test_reference_files_agree_with_each_other():
    """The two reference measurements share seeds and definitions of the first ten statistics."""
    from omnirl_core.world.stats import load_reference_statistics

    first = load_reference_statistics()
    for ns in (16, 32):
        for key in ("n_terminal", "goal", "succ_per_sa", "n_start"):
            a, b = first[f"ns{ns}"][key]["mean"], REFERENCE[f"ns{ns}"][key]["mean"]
            assert abs(a - b) < 4 * first[f"ns{ns}"][key]["std"] / np.sqrt(first[f"ns{ns}"]["n_tasks"]) + 1e-9


# ------------------------------------------------------------------ the checks have power
def _broken_no_self_loop_halving(monkeypatch):
    monkeypatch.setattr(tasks_module, "SELF_LOOP_FACTOR", 1.0)


def _broken_no_terminal_adjustment(monkeypatch):
    def no_adjustment(P, raw_reward, start_prob, terminal, has_goal, rng):
        bonus = np.zeros(terminal.shape)
        bonus[:, -1] = 1.0
        return bonus, np.ones(terminal.shape[0], bool)

    monkeypatch.setattr(tasks_module, "_terminal_adjustment", no_adjustment)


def _broken_wide_band(monkeypatch):
    monkeypatch.setattr(tasks_module, "band_limits", lambda ns: (max(2, ns // 2 + 1), max(2, ns // 2 + 1)))


def _broken_no_acceptance_check(monkeypatch):
    monkeypatch.setattr(tasks_module, "_accepted", lambda stats: np.ones_like(stats["gap"], bool))


@pytest.mark.parametrize(
    "breakage",
    [_broken_no_self_loop_halving, _broken_no_terminal_adjustment, _broken_wide_band, _broken_no_acceptance_check],
)
def test_broken_samplers_are_rejected(monkeypatch, breakage):
    breakage(monkeypatch)
    bad = disagreements(our_summary(16, SAMPLE_SIZES[16]), REFERENCE["ns16"])
    assert bad, f"{breakage.__name__} was not detected"


@pytest.mark.parametrize("ns", [16, 64])
def test_batch_sampler_agrees_with_reference(ns):
    from omnirl_core.world import sample_anymdp_batch

    tasks = sample_anymdp_batch(SAMPLE_SIZES[ns], ns, 5, seed=OUR_SEED0)
    assert len(tasks) == SAMPLE_SIZES[ns] and all(t.ns == ns for t in tasks)
    bad = disagreements(summarise(task_statistics(t) for t in tasks), REFERENCE[f"ns{ns}"])
    assert not bad, f"batched AnyMDP({ns}, 5) differs from the reference:\n" + "\n".join(bad)
