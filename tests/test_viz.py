"""Figures of omnirl_core.views on small hand-built tasks: artists match the task's arrays."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from omnirl_core import views as viz
from omnirl_core.world import Task, oracle

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def banded_task(ns: int = 10, na: int = 3, seed: int = 0, terminals: bool = True) -> Task:
    """A small random task whose transitions stay within +-2 ranks; states ns//2 (pitfall) and ns-1 (goal)
    are terminal, reward is highest on entering the top state."""
    rng = np.random.default_rng(seed)
    P = np.zeros((ns, na, ns))
    for s in range(ns):
        lo, hi = max(0, s - 2), min(ns, s + 3)
        for a in range(na):
            w = rng.random(hi - lo) + 0.02
            P[s, a, lo:hi] = w / w.sum()
    term = np.zeros(ns, dtype=bool)
    if terminals:
        term[[ns // 2, ns - 1]] = True
        P[term] = 0.0
    R = rng.normal(0.0, 0.1, (ns, na, ns))
    R[:, :, -1] += 1.0
    start = np.zeros(ns)
    start[:2] = [0.7, 0.3]
    return Task.from_arrays(P, R, reward_noise=np.full((ns, na, ns), 0.05), start_prob=start, terminal=term,
                            max_steps=40, state_mapping=rng.permutation(ns))


def bandit_task(means=(0.3, 0.6, 0.45, 0.2)) -> Task:
    na = len(means)
    return Task.from_arrays(np.ones((1, na, 1)), np.array([means]), reward_noise=np.full((1, na, 1), 0.05),
                            max_steps=1, kind="bandit")


def by_gid(fig: Figure, gid: str):
    found = [c for ax in fig.axes for c in ax.collections if c.get_gid() == gid]
    assert len(found) <= 1, f"several artists with gid {gid}"
    return found[0] if found else None


def n_paths(fig: Figure, gid: str) -> int:
    art = by_gid(fig, gid)
    if art is None:
        return 0
    return len(art.get_segments()) if hasattr(art, "get_segments") else len(art.get_paths())


@pytest.fixture(scope="module")
def task() -> Task:
    return banded_task()


def test_graph_axes_nodes_and_edges_match_probabilities(task):
    fig = viz.plot_transition_graph(task, threshold=0.05)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # graph + value colorbar
    assert len(by_gid(fig, "nodes").get_offsets()) == task.ns
    W = task.transition.max(axis=1)
    above = W > 0.05
    n_loops = int(np.trace(above))
    assert n_paths(fig, "edges") == int(above.sum()) - n_loops
    assert n_paths(fig, "self_loops") == n_loops
    assert n_paths(fig, "arrowheads") == int(above.sum()) - n_loops
    # node colours are the oracle values
    _, V = oracle.policy_iteration(task, oracle.ORACLE_GAMMA)
    np.testing.assert_allclose(by_gid(fig, "nodes").get_array(), V)
    # terminal markers: the top state is the goal, the middle one a pitfall
    assert len(by_gid(fig, "goal").get_offsets()) == 1
    assert len(by_gid(fig, "pitfalls").get_offsets()) == 1


@pytest.mark.parametrize("action", [0, 2])
@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3])
def test_threshold_and_action_filter_edges(task, action, threshold):
    fig = viz.plot_transition_graph(task, action=action, threshold=threshold)
    above = task.transition[:, action, :] > threshold
    drawn = n_paths(fig, "edges") + n_paths(fig, "self_loops")
    assert drawn == int(above.sum())
    src, dst, prob, act = viz.graph_edges(task, action, threshold)
    assert len(src) == drawn and np.all(prob > threshold) and np.all(act == action)


def test_higher_threshold_draws_fewer_edges(task):
    counts = [n_paths(viz.plot_transition_graph(task, threshold=t), "edges") for t in (0.0, 0.15, 0.3, 0.6)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    # threshold 0: every positive probability is an edge
    nonzero = task.transition.max(axis=1) > 0
    assert counts[0] == int(nonzero.sum() - np.trace(nonzero))


def test_policy_overlay_and_selected_state(task):
    pol = oracle.oracle_policy(task)
    fig = viz.plot_transition_graph(task, policy=pol, selected_state=3, threshold=0.05)
    Ppol = task.transition[np.arange(task.ns), pol] > 0.05
    assert n_paths(fig, "policy_edges") + n_paths(fig, "policy_loops") == int(Ppol.sum())
    out = task.transition.max(axis=1)[3] > 0.05
    out[3] = False
    assert n_paths(fig, "selected_edges") == int(out.sum())
    assert by_gid(fig, "selected") is not None


def test_reward_colouring_adds_a_colorbar(task):
    fig = viz.plot_transition_graph(task, color_edges_by="reward")
    assert len(fig.axes) == 3
    with pytest.raises(ValueError):
        viz.plot_transition_graph(task, color_edges_by="colour")


def test_observed_layout_places_states_by_observation_id(task):
    fig = viz.plot_transition_graph(task, layout="observed")
    ranking_pos = viz.node_positions(task, "ranking")
    offsets = by_gid(fig, "nodes").get_offsets()
    # the state with observation id k sits where rank k sits in the ranking layout
    np.testing.assert_allclose(offsets, ranking_pos[task.state_mapping])
    with pytest.raises(ValueError):
        viz.node_positions(task, "spiral")


def test_labels_hidden_for_large_tasks():
    small = viz.plot_transition_graph(banded_task(ns=12))
    big_task = banded_task(ns=64)
    big = viz.plot_transition_graph(big_task)
    def digit_texts(fig):
        return sum(t.get_text().isdigit() for t in fig.axes[0].texts)
    assert digit_texts(small) == 12
    assert digit_texts(big) == 0
    assert len(by_gid(big, "nodes").get_offsets()) == 64


def test_custom_values_and_bad_arguments(task):
    vals = np.linspace(0, 1, task.ns)
    fig = viz.plot_transition_graph(task, values=vals)
    np.testing.assert_allclose(by_gid(fig, "nodes").get_array(), vals)
    with pytest.raises(ValueError):
        viz.plot_transition_graph(task, values=vals[:-1])
    with pytest.raises(ValueError):
        viz.plot_transition_graph(task, action=task.na)
    with pytest.raises(ValueError):
        viz.plot_transition_graph(task, selected_state=task.ns)


def test_draw_into_given_axes(task):
    fig = Figure()
    ax = fig.add_subplot()
    out = viz.plot_transition_graph(task, ax=ax)
    assert out is fig
    assert len(fig.axes) == 2


def test_bandit_graph_is_a_bar_chart():
    b = bandit_task()
    fig = viz.plot_transition_graph(b)
    assert len(fig.axes) == 1
    bars = fig.axes[0].patches
    assert len(bars) == b.na
    np.testing.assert_allclose([p.get_height() for p in bars], b.expected_reward[0])
    summary = viz.plot_task_summary(b)
    assert len(summary.axes) >= 4


def test_task_summary_panels(task):
    fig = viz.plot_task_summary(task)
    assert len(fig.axes) == 6  # four panels + two colorbars
    # the transition image is the action-averaged matrix
    img = fig.axes[3].images[0].get_array()
    np.testing.assert_allclose(np.asarray(img), task.transition.mean(axis=1))
    # the stationary-distribution bars sum to one
    heights = [p.get_height() for p in fig.axes[2].patches]
    assert len(heights) == task.ns and abs(sum(heights) - 1.0) < 1e-6


def test_trajectory_figure(task):
    T = 30
    rng = np.random.default_rng(1)
    states = rng.integers(0, task.ns, T)
    rewards = rng.normal(size=T)
    dones = np.zeros(T, dtype=bool)
    dones[[9, 19, 29]] = True
    fig = viz.plot_trajectory(states, rewards, task, dones=dones, oracle_return=1.0, random_return=0.2)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), np.cumsum(rewards))
    boundaries = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]
    assert len(boundaries) == 3
    ep = fig.axes[2].lines[0].get_ydata()
    np.testing.assert_allclose(ep, [rewards[:10].sum(), rewards[10:20].sum(), rewards[20:].sum()])
    with pytest.raises(ValueError):
        viz.plot_trajectory(states, rewards[:-1], task)


def test_stat_comparison_nested_and_flat():
    ref = {"ns16": {"a": {"mean": 1.0, "std": 0.1}, "b": {"mean": 2.0, "std": 0.5}},
           "ns32": {"a": {"mean": 1.5, "std": 0.1}, "b": {"mean": 2.5, "std": 0.5}},
           "provenance": "text is ignored"}
    ours = {"ns16": {"a": [0.9, 1.1], "b": 2.1}, "ns32": {"a": {"mean": 1.4, "std": 0.2}, "b": [2.4, 2.6]}}
    fig = viz.plot_stat_comparison(ours, ref)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 2
    assert len(visible[0].containers) == 2  # ours + reference error bars
    ours_pts = visible[0].containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(ours_pts, [1.0, 1.4])
    flat = viz.plot_stat_comparison({"a": [1, 2, 3]}, {"a": {"mean": 2.0, "std": 1.0}})
    assert len([ax for ax in flat.axes if ax.axison]) == 1
    with pytest.raises(ValueError):
        viz.plot_stat_comparison({"ns8": {"a": 1}}, {"ns16": {"a": {"mean": 1.0}}})


def test_savefig_writes_png(task, tmp_path):
    figs = {
        "graph": viz.plot_transition_graph(task, policy=oracle.oracle_policy(task), selected_state=1),
        "summary": viz.plot_task_summary(task),
        "bandit": viz.plot_transition_graph(bandit_task()),
        "traj": viz.plot_trajectory([0, 1, 2], [0.0, 1.0, 0.5], task, dones=[False, False, True]),
        "stats": viz.plot_stat_comparison({"a": [1.0]}, {"a": {"mean": 1.0, "std": 0.0}}),
    }
    for name, fig in figs.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=60)
        assert path.read_bytes()[:8] == PNG_MAGIC
    assert viz.figure_to_png(figs["graph"], dpi=40)[:8] == PNG_MAGIC


def test_transition_matrices_one_panel_per_action_plus_average(task):
    fig = viz.plot_transition_matrices(task)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == task.na + 1
    np.testing.assert_allclose(np.asarray(images[0]), task.transition.mean(axis=1))
    for a in range(task.na):
        np.testing.assert_allclose(np.asarray(images[a + 1]), task.transition[:, a, :])


def test_action_split_draws_each_action_row(task):
    s = 3
    fig = viz.plot_action_split(task, s)
    ax = fig.axes[0]
    action_lines = [ln for ln in ax.lines if ln.get_label().startswith("action")]
    assert len(action_lines) == task.na
    for a, ln in enumerate(action_lines):
        x = ln.get_xdata().astype(int)
        np.testing.assert_allclose(ln.get_ydata(), task.transition[s, a, x])
        # every successor of the state lies inside the plotted window
        assert task.transition[s, a].sum() == pytest.approx(task.transition[s, a, x].sum())
    terminal_state = int(np.flatnonzero(task.terminal)[0])
    assert not viz.plot_action_split(task, terminal_state).axes[0].axison
    with pytest.raises(ValueError):
        viz.plot_action_split(task, task.ns)


def test_reward_structure_mean_reward_by_next_state(task):
    fig = viz.plot_reward_structure(task)
    assert len(fig.axes) == 2
    line = fig.axes[0].lines[0]
    x = line.get_xdata().astype(int)
    reach = task.transition > 0
    expected = [(task.reward[:, :, j][reach[:, :, j]]).mean() for j in x]
    np.testing.assert_allclose(line.get_ydata(), expected)


def test_oracle_vs_random_and_timings():
    fig = viz.plot_oracle_vs_random({16: ([3.0, 4.0, 5.0], [1.0, 0.0, 6.0]), 32: ([1.0], [0.5])})
    assert len(fig.axes) == 2
    points = [len(c.get_offsets()) for ax in fig.axes for c in ax.collections if c.get_gid() == "tasks"]
    assert points == [3, 1]
    assert "67%" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        viz.plot_oracle_vs_random({16: ([1.0, 2.0], [1.0])})
    fig = viz.plot_timings({16: [0.01, 0.02, 0.03], 32: [0.05, 0.04]}, {"16": 0.08, "32": 0.2})
    ours_line, ref_line = fig.axes[0].lines
    np.testing.assert_allclose(ours_line.get_ydata(), [0.02, 0.045])
    np.testing.assert_allclose(ref_line.get_ydata(), [0.08, 0.2])


def test_markdown_stat_table():
    ours = {"a": {"mean": 1.0, "std": 1.0, "n": 25}, "b": {"mean": 2.0, "std": 0.0, "n": 25}}
    ref = {"a": {"mean": 0.5, "std": 1.0, "q10": 0.0, "q90": 1.0}, "b": {"mean": 2.0, "std": 0.0},
           "n_tasks": 25}
    text = viz.markdown_stat_table(ours, ref)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| statistic")
    # z = (1.0 - 0.5) / sqrt(1/25 + 1/25) = 1.77
    assert "| a |" in lines[2] and "+1.8" in lines[2] and "0 – 1" in lines[2]
    assert "+0.0" in lines[3]
