"""How notebooks 01-03 read: the figures and measures they were given so that a reader can read them (the bandit
run, the two entropies of a task, the data's sequences and reward curves, the comparison with the reference,
per-sequence changes and losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnirl_core import views as viz
from omnirl_core.synthesis.analysis import sequence_changes, sequence_differences
from omnirl_core.synthesis.format import BOUNDARY, TAG_NAMES
from omnirl_core.views.task_figures import (
    acceptance_entropy,
    least_agreeing_statistic,
    reference_difference,
)
from omnirl_core.views.training import TAG_COLOURS, plot_reward_curves, plot_sequences
from omnirl_core.world import Task, anymdp

torch.set_num_threads(1)


def bandit_task(means=(0.3, 0.6, 0.45, 0.2)) -> Task:
    na = len(means)
    return Task.from_arrays(np.ones((1, na, 1)), np.array([means]), reward_noise=np.full((1, na, 1), 0.05),
                            max_steps=1, kind="bandit")


# ---------------------------------------------------------------------------------------------- 01: tasks
def test_bandit_run_shows_arms_running_mean_and_best_share_without_boundary_lines():
    task = bandit_task()
    rng = np.random.default_rng(0)
    actions = np.where(np.arange(60) < 20, rng.integers(0, 4, 60), 1)
    rewards = task.expected_reward[0][actions] + rng.normal(0, 0.05, 60)
    fig = viz.plot_trajectory(np.zeros(60, int), rewards, task, dones=np.ones(60, bool), actions=actions, window=10)
    assert len(fig.axes) == 3
    # no episode-boundary lines: every pull ends an episode
    assert not [ln for ax in fig.axes for ln in ax.lines if np.ptp(np.asarray(ln.get_xdata(), float)) == 0]
    mean = next(ln for ln in fig.axes[1].lines if ln.get_gid() == "running_mean").get_ydata()
    assert mean[9] == pytest.approx(rewards[:10].mean()) and mean[-1] == pytest.approx(rewards[-10:].mean())
    share = next(ln for ln in fig.axes[2].lines if ln.get_gid() == "best_share").get_ydata()
    assert share[-1] == 1.0 and 0.0 <= share.min() <= share.max() <= 1.0
    assert fig.axes[-1].get_xlabel().startswith("pull")
    only_rewards = viz.plot_trajectory(np.zeros(60, int), rewards, task)  # the explorer's call, without actions
    assert len(only_rewards.axes) == 1
    with pytest.raises(ValueError):
        viz.plot_trajectory(np.zeros(60, int), rewards, task, actions=actions[:-1])


def test_task_summary_names_both_entropies_and_the_acceptance_one_matches_the_check():
    task = anymdp.sample_anymdp(16, 5, seed=0)
    acc = anymdp.acceptance_statistics(task.transition, task.reward, task.start_prob, task.terminal,
                                       task.max_steps)["entropy"]
    assert acceptance_entropy(task) == pytest.approx(acc)
    title = viz.plot_task_summary(task).axes[2].get_title()
    assert f"{acc:.2f}" in title and "γ=0.994" in title and "acceptance check" in title


def test_reference_difference_and_the_least_agreeing_statistic():
    ours = {"a": {"mean": 1.0, "std": 1.0, "n": 20}, "b": {"mean": 5.0, "std": 1.0, "n": 20},
            "c": {"mean": 0, "std": 0}}
    ref = {"n_tasks": 100, "a": {"mean": 1.2, "std": 1.0}, "b": {"mean": 1.0, "std": 1.0}, "c": {"mean": 0, "std": 0}}
    r = reference_difference(ours["a"], ref["a"], n_reference=100)
    se = math.sqrt(1 / 20 + 1 / 100)
    assert r["z"] == pytest.approx(-0.2 / se) and r["d"] == pytest.approx(-0.2)
    assert r["d_low"] < r["d"] < r["d_high"] and r["d_high"] - r["d_low"] > 2 * 1.96 * se * 0.99
    name, d = least_agreeing_statistic(ours, ref, ["a", "b", "c"])
    assert name == "b" and d["d_low"] > 1.0  # wholly outside one reference std
    name, _ = least_agreeing_statistic(ours, ref, ["a", "c"])
    assert name == "a"  # c has no spread: no interval, skipped
    assert least_agreeing_statistic(ours, ref, ["c"]) is None
    table = viz.markdown_stat_table(ours, ref, stats=["a"])
    assert f"{-0.2 / se:+.1f}" in table


# ---------------------------------------------------------------------------------------------- 02: the data
def _data(n=6, T=40, ns=8, na=3):
    rng = np.random.default_rng(1)
    tag = np.full((n, T), 4, np.uint8)
    tag[:, ::5] = 6
    beh = np.full((n, T), 1, np.uint8)
    beh[:, 9::10] = BOUNDARY
    tag[beh == BOUNDARY] = 7
    reward = np.where(np.arange(T) < T // 2, 0.0, 1.0)[None, :].repeat(n, 0)  # learners gain 1 per step late
    reward = reward + np.where(tag == 6, -2.0, 0.0)
    reward[beh == BOUNDARY] = 0.0
    return {"obs": rng.integers(0, ns, (n, T)), "tag": tag, "action": rng.integers(0, na, (n, T)),
            "label": rng.integers(0, na, (n, T)), "reward": reward.astype(np.float32), "behaviour": beh,
            "ns": np.full(n, ns), "na": np.full(n, na)}


def test_sequence_changes_and_differences_compare_steps_of_one_sequence():
    data = _data()
    ch = sequence_changes(data, "model-based")
    assert ch.shape == (6,) and np.allclose(ch, 1.0)
    assert sequence_changes(data, "oracle g=0.994").size == 0  # no such steps: nothing to compare
    assert sequence_changes(data, "model_based", by="behaviour").size == 6
    diff = sequence_differences(data, "random", "model-based")
    assert diff.shape == (6,) and np.all(diff < -1.5)
    with pytest.raises(ValueError):
        sequence_changes(data, "model-based", by="episode")


def test_sequence_figure_has_a_tag_key_and_labelled_bands():
    data = _data()
    fig = plot_sequences(data, 2, 30, title="demo")
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert all(f"tag {i}: {TAG_NAMES[i]}" in texts for i in range(8))
    assert legend.get_title().get_text() == "demo"
    labels = {ax.get_ylabel().split("\n")[0] for ax in fig.axes}
    assert {"observation", "action", "tag", "reward"} <= labels
    bandit = {k: v for k, v in data.items()}
    bandit["ns"] = np.ones(6, int)
    fig_b = plot_sequences(bandit, 1, 30)
    assert "observation" not in {ax.get_ylabel().split("\n")[0] for ax in fig_b.axes}
    grey = [ln for ax in fig_b.axes for ln in ax.lines if ln.get_color() == "0.85"]
    assert not grey  # no episode-end lines on a bandit


def test_reward_curves_keep_one_colour_per_tag():
    data = _data()
    from omnirl_core.synthesis import reward_curves

    centres, per_tag = reward_curves(data, 4, by="tag")
    _, per_beh = reward_curves(data, 4, by="behaviour")
    fig = plot_reward_curves({"demo": (centres, per_tag, per_beh)})
    ax_t, ax_b = fig.axes[:2]
    for ln in ax_t.lines:
        assert ln.get_color() == TAG_COLOURS[TAG_NAMES.index(ln.get_label())]
    assert [ln.get_label() for ln in ax_b.lines] == ["model_based"]
    assert ax_b.lines[0].get_color() == TAG_COLOURS[4]
    assert all(ax.get_legend() is not None for ax in (ax_t, ax_b))


# ---------------------------------------------------------------------------------------------- 03: training
def test_position_loss_per_sequence_matches_the_pooled_loss_sequence_by_sequence():
    from omnirl_core.model import OmniRL
    from omnirl_core.training import TrainConfig, make_data, position_loss
    from omnirl_core.training.metrics import position_loss_per_sequence
    from omnirl_core.workbook import load_config

    cfg = load_config(TrainConfig, {
        "model": {"backbone": "rwkv7", "layout": "compact", "ns_max": 8, "na": 5, "hidden_size": 32,
                  "num_layers": 1, "intermediate_size": 48, "head_dim": 8, "chunk_size": 8, "backend": "torch"},
        "data": {"batch_size": 3, "seq_len": 32, "ns": 8, "na": 5, "episode_len": 10}, "chunk_len": 16})
    torch.manual_seed(0)
    model = OmniRL(cfg.model)
    batch = make_data(cfg).next_batch()
    edges = [0, 8, 24, 32]
    per_seq = position_loss_per_sequence(model, [batch], cfg.chunk_len, edges)
    assert per_seq.shape == (3, 3)
    for i in range(3):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        np.testing.assert_allclose(per_seq[i], position_loss(model, [one], cfg.chunk_len, edges=edges)["loss"],
                                   rtol=1e-6)


def test_loss_curves_draw_the_policy_term_once_when_it_is_the_whole_loss():
    from omnirl_core.views.training import plot_loss_curves, plot_position_loss

    rows = [{"step": s, "loss": 2.0 - 0.1 * s, "policy": 2.0 - 0.1 * s, "state": 0.0, "reward": 0.0, "lr": 1e-3}
            for s in range(1, 6)]
    ax = plot_loss_curves(rows).axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["loss (= the policy term, the only one)"]
    rows[0]["state"] = 0.5
    assert len(plot_loss_curves(rows).axes[0].lines) == 3  # loss, policy, state
    evals = [{"hook": "position_loss", "step": 10, "position": [1, 2], "loss": [1.6, 1.2]}]
    ax = plot_position_loss(evals, title="demo").axes[0]
    assert ax.get_title() == "demo" and "nats" in ax.get_ylabel() and ax.get_legend() is not None
    import matplotlib.pyplot as plt

    plt.close("all")  # these two draw through pyplot
