"""TaskExplorer without a kernel: observers fire synchronously, figures are PNG bytes in Image widgets."""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import pytest

from omnirl_core.views import explorer as widgets
from omnirl_core.views.explorer import POLICIES, TaskExplorer
from omnirl_core.world import Task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def n_drawn(fig, gids=("edges", "self_loops")) -> int:
    return sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if c.get_gid() in gids)


@pytest.fixture()
def explorer() -> TaskExplorer:
    return TaskExplorer(ns=16, na=5, seed=3, play_steps=50, dpi=40)


def all_controls(ex: TaskExplorer):
    return [ex.ns, ex.na, ex.seed, ex.resample_button, ex.state, ex.action, ex.threshold, ex.layout, ex.color_by,
            ex.overlay, ex.policy, ex.steps, ex.play_button]


def test_construction_builds_the_ui(explorer):
    ex = explorer
    assert ex.task is not None and ex.task.ns == 16 and ex.task.na == 5
    assert ex.task.meta.get("seed") == 3
    assert ex.graph_image.value[:8] == PNG_MAGIC
    assert isinstance(ex.widget, W.VBox)
    assert "omnirl-explorer" in ex.widget._dom_classes
    for control in all_controls(ex):
        assert control.description, f"{type(control).__name__} has no description"
    assert 1 in ex.ns.options and 8 in ex.ns.options and 128 in ex.ns.options
    assert len(ex.state.options) == 17  # "none" + 16 states
    assert len(ex.action.options) == 6  # "all" + 5 actions
    assert ex.oracle_return > ex.random_return


def test_seed_change_resamples_and_redraws(explorer):
    ex = explorer
    before_task, before_png, samples = ex.task, ex.graph_image.value, ex.n_samples
    ex.seed.value = 4
    assert ex.n_samples == samples + 1
    assert ex.task is not before_task and ex.task.meta.get("seed") == 4
    assert not ex.task.equals(before_task)
    assert ex.graph_image.value != before_png
    ex.resample_button.click()
    assert ex.seed.value == 5 and ex.task.meta.get("seed") == 5


def test_ns_and_na_changes_resample(explorer):
    ex = explorer
    ex.ns.value = 8
    assert ex.task.ns == 8
    assert len(ex.state.options) == 9 and ex.state.value == -1
    ex.na.value = 3
    assert ex.task.na == 3 and len(ex.action.options) == 4
    ex.ns.value = 1
    assert ex.task.is_bandit
    assert len(ex.graph_figure.axes) == 1 and len(ex.graph_figure.axes[0].patches) == 3  # one bar per arm


def test_view_controls_redraw_without_resampling(explorer):
    ex = explorer
    task, samples = ex.task, ex.n_samples
    renders, png = ex.n_renders, ex.graph_image.value

    ex.threshold.value = 0.3
    assert ex.n_renders == renders + 1 and ex.graph_image.value != png
    assert ex.task is task and ex.n_samples == samples
    assert n_drawn(ex.graph_figure) == int((task.transition.max(axis=1) > 0.3).sum())

    ex.action.value = 2
    assert ex.view_options()["action"] == 2
    assert n_drawn(ex.graph_figure) == int((task.transition[:, 2, :] > 0.3).sum())

    ex.overlay.value = True
    gids = {c.get_gid() for c in ex.graph_figure.axes[0].collections}
    assert "policy_edges" in gids

    ex.state.value = 4
    gids = {c.get_gid() for c in ex.graph_figure.axes[0].collections}
    assert "selected" in gids and "selected_edges" in gids

    ex.layout.value = "observed"
    assert ex.view_options()["layout"] == "observed"
    ex.color_by.value = "reward"
    assert len(ex.graph_figure.axes) == 3  # graph + value and reward colorbars
    assert ex.n_renders == renders + 6
    assert ex.n_samples == samples


def test_resample_resets_view_selection(explorer):
    ex = explorer
    ex.state.value = 7
    ex.action.value = 1
    ex.seed.value = 10
    assert ex.state.value == -1 and ex.action.value == -1
    assert ex.view_options()["selected_state"] is None and ex.view_options()["action"] is None


def test_summary_tab_renders_lazily(explorer):
    ex = explorer
    assert ex.summary_figure is None
    ex.tabs.selected_index = 1
    assert ex.summary_figure is not None and ex.summary_image.value[:8] == PNG_MAGIC
    ex.seed.value = 11  # the tab is open: the new task's summary is drawn right away
    assert ex.summary_figure is not None


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_play_returns_a_trajectory_of_the_requested_length(explorer, policy):
    if policy == "omnirl" and widgets._default_policy(explorer.task.ns) != "omnirl":
        explorer.ns.value = 1  # the shipped models cover bandits at least
    res = explorer.play(policy, steps=120, seed=0)
    assert res.steps == 120
    for arr in (res.states, res.actions, res.rewards, res.dones):
        assert len(arr) == 120
    assert np.all((res.states >= 0) & (res.states < explorer.task.ns))
    assert np.all((res.actions >= 0) & (res.actions < explorer.task.na))
    assert not explorer.task.terminal[res.states].any()  # actions are never taken in terminal states
    assert len(res.episode_returns) == int(res.dones.sum())
    assert res.total_return == pytest.approx(res.rewards.sum())
    assert res.oracle_return == pytest.approx(explorer.oracle_return)


def test_play_is_reproducible(explorer):
    a = explorer.play("q_ucb", steps=80, seed=5)
    b = explorer.play("q_ucb", steps=80, seed=5)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.rewards, b.rewards)


def test_oracle_beats_random_on_average():
    ex = TaskExplorer(ns=16, seed=0, dpi=30)
    gaps = []
    for task_seed in (0, 1, 2):
        ex.seed.value = task_seed
        for run_seed in (0, 1):
            orc = ex.play("oracle", steps=300, seed=run_seed)
            rnd = ex.play("random", steps=300, seed=run_seed)
            gaps.append(orc.total_return - rnd.total_return)
    assert np.mean(gaps) > 0


def test_play_button_shows_trajectory_and_returns(explorer):
    ex = explorer
    ex.policy.value = "oracle"
    ex.steps.value = 60
    ex.play_button.click()
    assert ex.last_play is not None and ex.last_play.steps == 60
    assert ex.trajectory_image.value[:8] == PNG_MAGIC
    assert len(ex.trajectory_figure.axes) == 3
    assert "return over 60 steps" in ex.play_info.value and "oracle" in ex.play_info.value
    assert ex.tabs.selected_index == 2
    ex.seed.value = 20  # a new task clears the old play
    assert ex.last_play is None and ex.trajectory_image.value == b""


def test_custom_sampler_and_errors():
    rng = np.random.default_rng(0)

    def sampler(ns, na, seed):
        P = rng.random((ns, na, ns))
        P /= P.sum(axis=2, keepdims=True)
        return Task.from_arrays(P, rng.normal(size=(ns, na)), max_steps=20, meta={"seed": seed})

    ex = TaskExplorer(ns=8, na=2, seed=0, sampler=sampler, dpi=30)
    assert ex.task.ns == 8 and ex.task.na == 2
    ex.seed.value = 9
    assert ex.task.meta["seed"] == 9
    with pytest.raises(ValueError):
        ex.play("sarsa", steps=10)
    with pytest.raises(ValueError):
        widgets.play_policy(ex.task, "oracle", steps=0)
    direct = widgets.play_policy(ex.task, "random", steps=5, seed=1)  # computes the exact returns itself
    assert direct.oracle_return == pytest.approx(ex.oracle_return)
    assert direct.random_return == pytest.approx(ex.random_return)


def test_errors_are_shown_in_the_status_line():
    def broken(ns, na, seed):
        if seed == 1:
            raise RuntimeError("cannot draw this one")
        P = np.full((ns, na, ns), 1.0 / ns)
        return Task.from_arrays(P, np.zeros((ns, na)))

    ex = TaskExplorer(ns=8, na=2, seed=0, sampler=broken, dpi=30)
    with pytest.raises(RuntimeError):
        ex.seed.value = 1
    assert "cannot draw this one" in ex.status.value


def test_shipped_model_plays_by_default_where_it_covers_the_task():
    from omnirl_core.evaluation import shipped_models

    ex = TaskExplorer(ns=1, seed=4, play_steps=300, dpi=30)
    assert ex.policy.value == "omnirl"  # a shipped model covers bandits
    res = ex.play()
    assert res.policy == "omnirl" and res.steps == 300
    assert (res.states == 0).all() and res.dones.all()  # a bandit: every pull is an episode from state 0
    assert set(np.unique(res.actions)) <= set(range(5))
    np.testing.assert_allclose(res.episode_returns, res.rewards)
    again = ex.play()
    np.testing.assert_array_equal(again.actions, res.actions)  # the run seed fixes the model's sampling
    # in context: the model picks the oracle's arm more often late in the run than early
    best = ex.oracle_actions[0]
    assert (res.actions[-100:] == best).mean() > (res.actions[:100] == best).mean()
    beyond = [n for n in widgets.NS_CHOICES if n > max(m.ns_max for m in shipped_models())]
    if beyond:
        ex.ns.value = beyond[0]
        assert ex.policy.value == "omnirl"
        with pytest.raises(LookupError, match="no shipped model covers"):
            ex.play()
