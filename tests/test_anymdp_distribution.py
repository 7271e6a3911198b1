"""Statistical agreement of our AnyMDP sampler with the reference sampler (Xenoverse 0.1.14.0).

Reference numbers: tests/data/reference_task_stats.json (tasks AnyMDPTaskSampler(ns, 5, seed=1000+i),
statistics by omnirl_core.world.stats.task_statistics and reward_scale_statistics, summarised at
DISTRIBUTION_LEVELS, written by bench/reference_task_stats.py; task counts, command and versions under
"generated") and omnirl_core/data/reference_anymdp_stats.json (the ten statistics as first measured).

For every statistic we draw n_ours tasks and compare, against the reference's n_ref tasks:

- the mean: Welch z = (mean_o - mean_r) / sqrt(sd_o^2 / n_o + sd_r^2 / n_r);
- the spread: z = log(sd_o / sd_r) / sqrt((kurt - 1) / 4 * (1 / n_o + 1 / n_r)), the delta-method
  standard error of a log standard deviation, kurt the two samples' pooled kurtosis;
- each reference quantile q_p (p in DISTRIBUTION_LEVELS): the fraction F of our tasks below q_p must be p
  up to sampling error in both samples, compared on the variance-stabilised scale 2 asin(sqrt(F)),
  whose standard error is sqrt(1 / n_o + 1 / n_r) (no density estimate needed). Where q_p is an atom of
  our sample (counts, flags), any p between the fractions strictly below and at or below q_p agrees.

A check fails when |z| > Z = 5. False alarms: under agreement each check exceeds 5 with probability
about 5.7e-7 (normal tails); this file runs about 1,000 checks under agreement (62 per bandit comparison,
144 per MDP comparison, 7 comparisons, plus the calibration test), so by Bonferroni all of them pass
together with probability > 0.999 for any choice of seeds (designed false-alarm rate < 1e-3). The normal
approximation was checked on 400 random splits of 10,000 of our own ns=16 tasks into 600 and 2,000
(162 checks each): the fractions of |z| beyond 2, 3, 3.5 and 4 matched the normal tail (4.8e-2, 2.9e-3,
5.3e-4, 5.5e-5) and none went beyond 4.5. Seeds are fixed, so the outcome is deterministic.

Power: the ``broken`` tests run the same comparison on deliberately wrong samplers and require it to
reject them: four structural breakages, MDP reward noise x1.5 and all rewards x1.3 at ns = 16, and
bandit noise x1.4. As measured with the sizes below: noise x1.5 lands at z = +8.8 (noise_ratio q90),
rewards x1.3 at +8.6 (top_margin q10), bandit noise x1.4 at +22.7 (noise_ratio std), the structural
breakages at 12-24; the real sampler's worst |z| is 4.1 (ns = 64, self_loop q10; 2.5 with 300 tasks).
Without the reward-scale statistics the best checks would reach 6.3 (noise x1.5, noise_mean q75), 9.8
(bandit noise, noise_mean std) and only 4.95 (rewards x1.3, r_sa_std q90): top_margin pins the reward
scale. A means-only comparison at 4.5 standard errors with 200 reference tasks rejected none of the three.
"""

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from omnirl_core.world import anymdp as tasks_module
from omnirl_core.world import sample_anymdp, task_statistics
from omnirl_core.world.stats import (
    DISTRIBUTION_LEVELS,
    EXTRA_STATISTICS,
    REFERENCE_STATISTICS,
    SCALE_STATISTICS,
    reward_scale_statistics,
    summarise,
)

Z = 5.0
DATA = Path(__file__).parent / "data" / "reference_task_stats.json"
REFERENCE = json.loads(DATA.read_text())
OUR_SEED0 = 500_000  # far from the reference's seeds (1000 + i); the generators differ anyway
SAMPLE_SIZES = {1: 2000, 16: 400, 32: 120, 64: 60, 128: 16}
STATISTICS = REFERENCE_STATISTICS + EXTRA_STATISTICS + SCALE_STATISTICS


def measure(tasks) -> dict[str, np.ndarray]:
    """Per-task statistics of ``tasks``: statistic -> values (NaNs dropped)."""
    rows = [{**task_statistics(t), **reward_scale_statistics(t)} for t in tasks]
    out = {}
    for key in rows[0]:
        x = np.array([r[key] for r in rows], dtype=float)
        out[key] = x[np.isfinite(x)]
    return out


def our_values(ns: int, n: int) -> dict[str, np.ndarray]:
    return measure(sample_anymdp(ns, 5, seed=OUR_SEED0 + i) for i in range(n))


@functools.cache
def our_sample(ns: int) -> dict[str, np.ndarray]:
    """``our_values`` of the unpatched sampler at the test's sample size, computed once per session (the broken-
    sampler tests patch the sampler and call ``our_values`` themselves)."""
    return our_values(ns, SAMPLE_SIZES[ns])


def _kurtosis(x: np.ndarray) -> float:
    sd = x.std()
    return float(((x - x.mean()) ** 4).mean() / sd**4) if sd > 0 else 3.0


def z_scores(x: np.ndarray, ref: dict) -> dict[str, float]:
    """z of each check of our values ``x`` against one reference summary (see the module docstring);
    +-inf where one side is constant and the other is not, or both are constant but differ."""
    n_o, n_r = x.size, ref["n"]
    m_o, sd_o, sd_r = float(x.mean()), float(x.std()), ref["std"]
    scale = max(1.0, abs(ref["mean"]))
    if sd_o <= 1e-12 * scale or sd_r <= 1e-12 * scale:
        same = max(sd_o, sd_r) <= 1e-12 * scale and abs(m_o - ref["mean"]) <= 1e-9 * scale
        return {"constant": 0.0 if same else np.copysign(np.inf, m_o - ref["mean"] + sd_o - sd_r)}
    z = {"mean": (m_o - ref["mean"]) / np.sqrt(sd_o**2 / n_o + sd_r**2 / n_r)}
    kurt = (n_o * _kurtosis(x) + n_r * ref["kurtosis"]) / (n_o + n_r)
    z["std"] = np.log(sd_o / sd_r) / np.sqrt(max(kurt - 1.0, 1e-6) / 4.0 * (1.0 / n_o + 1.0 / n_r))
    se = np.sqrt(1.0 / n_o + 1.0 / n_r)
    for p in DISTRIBUTION_LEVELS:
        name = f"q{round(100 * p):02d}"
        if name not in ref:
            continue
        below, at_or_below = float((x < ref[name]).mean()), float((x <= ref[name]).mean())
        frac = below if below > p else (at_or_below if at_or_below < p else p)
        # more of ours below the reference quantile means our distribution lies lower: negative z
        z[name] = -2.0 * (np.arcsin(np.sqrt(frac)) - np.arcsin(np.sqrt(p))) / se
    return z


def all_z(ours: dict[str, np.ndarray], ref: dict) -> dict[str, float]:
    """'statistic.check' -> z over the statistics both sides have."""
    return {
        f"{key}.{check}": z
        for key in STATISTICS
        if key in ref and key in ours and ours[key].size
        for check, z in z_scores(ours[key], ref[key]).items()
    }


def disagreements(ours: dict[str, np.ndarray], ref: dict) -> list[str]:
    """The checks beyond Z standard errors, worst first, with their z and both sides' values."""
    bad = sorted(((k, z) for k, z in all_z(ours, ref).items() if abs(z) > Z), key=lambda kz: -abs(kz[1]))
    lines = []
    for name, z in bad:
        key, check = name.split(".")
        mine = {"mean": ours[key].mean(), "std": ours[key].std(), "constant": ours[key].mean()}.get(check)
        if mine is None:
            mine = np.quantile(ours[key], int(check[1:]) / 100)
        theirs = ref[key]["mean" if check == "constant" else check]
        lines.append(f"{name}: ours {mine:.4g} vs reference {theirs:.4g} (z={z:+.1f})")
    return lines


@pytest.mark.parametrize("ns", [1, 16, 32, 64, pytest.param(128, marks=pytest.mark.slow)])
def test_sampler_agrees_with_reference(ns):
    ref = REFERENCE[f"ns{ns}"]
    assert ref["n_terminal"]["n"] >= 16
    bad = disagreements(our_sample(ns), ref)
    assert not bad, f"AnyMDP({ns}, 5) differs from the reference:\n" + "\n".join(bad)


def test_reference_file_records_how_it_was_made():
    generated = REFERENCE["generated"]
    assert generated["xenoverse"] == "0.1.14.0"
    assert tuple(generated["levels"]) == DISTRIBUTION_LEVELS
    for ns in SAMPLE_SIZES:
        made = generated["sizes"][str(ns)]
        assert made["n"] == REFERENCE[f"ns{ns}"]["n_terminal"]["n"]
        assert "reference_task_stats.py" in made["command"]
        assert set(SCALE_STATISTICS[: 1 if ns == 1 else None]) <= set(REFERENCE[f"ns{ns}"])


def test_reference_files_agree_with_each_other():
    """The two reference measurements share seeds and definitions of the first ten statistics."""
    from omnirl_core.world.stats import load_reference_statistics

    first = load_reference_statistics()
    for ns in (16, 32):
        for key in ("n_terminal", "goal", "succ_per_sa", "n_start"):
            a, b = first[f"ns{ns}"][key]["mean"], REFERENCE[f"ns{ns}"][key]["mean"]
            assert abs(a - b) < 4 * first[f"ns{ns}"][key]["std"] / np.sqrt(first[f"ns{ns}"]["n_tasks"]) + 1e-9


def test_z_scores_are_calibrated_on_two_samples_of_one_sampler():
    """Our bandits against a summary of 4,000 other bandits of ours: every |z| stays below 4 (54
    non-constant checks, each beyond 4 with probability 6e-5), and the same sample with its oracle
    returns scaled by 1.5 fails."""
    ours = our_sample(1)
    other = [{**task_statistics(t), **reward_scale_statistics(t)} for t in
             (sample_anymdp(1, 5, seed=900_000 + i) for i in range(4000))]
    ref = summarise(other, levels=DISTRIBUTION_LEVELS)
    z = all_z(ours, ref)
    assert len(z) > 40 and max(abs(v) for v in z.values()) < 4.0, z
    scaled = {**ours, "ret_oracle": 1.5 * ours["ret_oracle"]}
    assert [line for line in disagreements(scaled, ref) if line.startswith("ret_oracle.")]


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


def _broken_noise_x1_5(monkeypatch):
    """MDP reward noise std 1.5 times too large."""
    original = tasks_module._sample_rewards

    def louder(*args):
        reward, noise = original(*args)
        return reward, 1.5 * noise

    monkeypatch.setattr(tasks_module, "_sample_rewards", louder)


def _broken_rewards_x1_3(monkeypatch):
    """Every mean reward of the finished task (raw, adjustment bonuses included) 1.3 times too large."""
    original = tasks_module._draw_anymdp_candidates

    def scaled(*args):
        arrays, ok = original(*args)
        arrays["reward"] = 1.3 * arrays["reward"]
        return arrays, ok

    monkeypatch.setattr(tasks_module, "_draw_anymdp_candidates", scaled)


def _broken_bandit_noise_x1_4(monkeypatch):
    """Bandit arm noise std 1.4 times too large."""
    original = tasks_module._sample_bandit

    def louder(na, rng):
        arrays = original(na, rng)
        arrays["reward_noise"] = 1.4 * arrays["reward_noise"]
        return arrays

    monkeypatch.setattr(tasks_module, "_sample_bandit", louder)


@pytest.mark.parametrize(
    "breakage, ns",
    [
        (_broken_no_self_loop_halving, 16),
        (_broken_no_terminal_adjustment, 16),
        (_broken_wide_band, 16),
        (_broken_no_acceptance_check, 16),
        (_broken_noise_x1_5, 16),
        (_broken_rewards_x1_3, 16),
        (_broken_bandit_noise_x1_4, 1),
    ],
)
def test_broken_samplers_are_rejected(monkeypatch, breakage, ns):
    breakage(monkeypatch)
    bad = disagreements(our_values(ns, SAMPLE_SIZES[ns]), REFERENCE[f"ns{ns}"])
    assert bad, f"{breakage.__name__} was not detected"


@pytest.mark.parametrize("ns", [16, 64])
def test_batch_sampler_agrees_with_reference(ns):
    from omnirl_core.world import sample_anymdp_batch

    tasks = sample_anymdp_batch(SAMPLE_SIZES[ns], ns, 5, seed=OUR_SEED0)
    assert len(tasks) == SAMPLE_SIZES[ns] and all(t.ns == ns for t in tasks)
    bad = disagreements(measure(tasks), REFERENCE[f"ns{ns}"])
    assert not bad, f"batched AnyMDP({ns}, 5) differs from the reference:\n" + "\n".join(bad)
