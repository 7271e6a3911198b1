"""TaskExplorer without a kernel: observers fire synchronously, figures are PNG bytes in Image widgets."""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import pytest

from omnirl_core.views import explorer as widgets
from omnirl_core.views.explorer import POLICIES, PlayResult, TaskExplorer
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
    if policy not in explorer.offered_policies():
        explorer.ns.value = 1  # the shipped models cover bandits at least
    assert policy in explorer.offered_policies()
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
    if beyond:  # the control was left at its default: the new task's default plays, the shipped model is not offered
        ex.ns.value = beyond[0]
        assert ex.policy.value == "oracle" and "omnirl" not in ex.offered_policies()
        assert "no shipped model covers" in ex.policy_note.value
        with pytest.raises(LookupError, match="no shipped model covers"):
            ex.play("omnirl")


# ---------------------------------------------------------------------------------------------- every offered policy
def play_problems(ex: TaskExplorer) -> list[str]:
    """Press Play with each policy the control offers for the current task, as a user does; what went wrong.

    A policy must play the requested number of steps without an error in the status line, with a finite return,
    and report its finished episodes as a finite mean or, when none finished, say so in words (never 'nan')."""
    problems = []
    ns = ex.task.ns
    for policy in ex.offered_policies():
        ex.policy.value = policy
        ex.last_play = None
        ex.play_button.click()  # ipywidgets logs a callback's exception and carries on, as in a browser
        res, where = ex.last_play, f"ns={ns}, {policy}"
        if "error" in ex.status.value or res is None or res.policy != policy:
            problems.append(f"{where}: Play failed: {ex.status.value[:300]}")
            continue
        if res.steps != int(ex.steps.value) or not np.isfinite(res.total_return):
            problems.append(f"{where}: {res.steps} steps, return {res.total_return}")
        text = ex.play_info.value
        if "nan" in text.lower():
            problems.append(f"{where}: reports nan: {text}")
        if res.n_episodes == 0 and f"no episode finished in {res.steps} steps" not in text:
            problems.append(f"{where}: no finished episode, and the report does not say so: {text}")
        if res.n_episodes and not np.isfinite(res.mean_episode_return):
            problems.append(f"{where}: mean episode return {res.mean_episode_return}")
    return problems


def walk_through_ns(ex: TaskExplorer, sequence=(16, 32, 1)) -> tuple[list[str], dict[int, list[str]]]:
    """Change the ns control through ``sequence`` (the explorer starts at the first) and Play every offered policy
    at each; (problems, policies offered per ns)."""
    problems, offered = [], {}
    for ns in sequence:
        ex.ns.value = ns
        assert ex.task.ns == ns
        offered[ns] = ex.offered_policies()
        problems += play_problems(ex)
    return problems, offered


@pytest.fixture()
def walker() -> TaskExplorer:
    return TaskExplorer(ns=16, na=5, seed=0, play_steps=200, dpi=30)


def test_every_offered_policy_plays_at_ns_1_16_and_32(walker):
    problems, offered = walk_through_ns(walker)
    assert problems == []
    assert offered[1] == offered[16] == list(POLICIES)  # the shipped models cover 1 and 16 states with 5 actions
    assert offered[32] == list(widgets.LEARNERS)  # none covers 32: it is not offered there
    assert walker.last_play.n_episodes >= 0


def test_the_policy_follows_the_task_and_a_picked_one_stays_while_it_can_play():
    ex = TaskExplorer(ns=16, na=5, seed=0, play_steps=50, dpi=30)
    # at 16 states the shipped model is offered with its measured standing; the oracle is the default
    assert ex.policy.value == "oracle" and "omnirl" in ex.offered_policies()
    note = ex.policy_note.value
    assert "of the way from the random policy (0) to the oracle (1)" in note and "oracle is the default" in note
    ex.ns.value = 1  # the bandit model's recorded standing makes it the default there
    assert ex.policy.value == "omnirl"
    assert widgets.shipped_standing(widgets.shipped_model_covering(1, 5))["mean"] >= widgets.SHIPPED_DEFAULT_MIN_SCORE
    ex.ns.value = 16  # left at its default: the default follows the task
    assert ex.policy.value == "oracle"
    ex.policy.value = "q_ucb"
    ex.ns.value = 32
    assert ex.policy.value == "q_ucb"  # picked, and it can play any task
    ex.ns.value = 16
    ex.policy.value = "omnirl"
    ex.ns.value = 32  # picked, but no shipped model covers 32 states: the default plays, and the note says why
    assert ex.policy.value == "oracle" and "omnirl" not in ex.offered_policies()
    assert "cannot play this task" in ex.policy_note.value and "no shipped model covers" in ex.policy_note.value
    ex.play_button.click()
    assert ex.last_play.policy == "oracle" and "error" not in ex.status.value
    ex.ns.value, ex.na.value = 16, 4  # trained with 5 actions: not offered for 4
    assert "omnirl" not in ex.offered_policies() and "4 actions" in ex.policy_note.value


def test_a_run_without_a_finished_episode_says_so():
    res = PlayResult(policy="oracle", states=np.zeros(5, int), actions=np.zeros(5, int), rewards=np.ones(5),
                     dones=np.zeros(5, bool), oracle_return=1.0, random_return=0.0, horizon=210)
    assert res.n_episodes == 0 and np.isnan(res.mean_episode_return)
    assert res.episodes_text() == "no episode finished in 5 steps (an episode of this task lasts up to 210 steps)"
    res = PlayResult(policy="oracle", states=np.zeros(4, int), actions=np.zeros(4, int), rewards=np.ones(4),
                     dones=np.array([False, True, False, True]), oracle_return=1.0, random_return=0.0)
    assert res.episodes_text() == "2 finished episodes, mean episode return 2.000"


class KeepsTheFirstPolicies(TaskExplorer):
    """Broken on purpose: the policies and the default are chosen once, for the task the explorer opens with."""

    def _update_policies(self, task):
        if self.n_samples <= 1:
            super()._update_policies(task)


def test_the_walk_fails_an_explorer_that_keeps_the_shipped_model_after_ns_changes():
    ex = KeepsTheFirstPolicies(ns=16, na=5, seed=0, play_steps=50, dpi=30)
    problems, offered = walk_through_ns(ex, sequence=(16, 32))
    assert offered[32] == list(POLICIES)
    assert any(p.startswith("ns=32, omnirl: Play failed") and "no shipped model covers" in p for p in problems), \
        problems


def test_the_walk_fails_an_explorer_that_reports_nan(monkeypatch):
    def old_text(self):
        return f"{self.n_episodes} finished episodes, mean episode return {self.mean_episode_return:.3f}"

    monkeypatch.setattr(PlayResult, "episodes_text", old_text)
    ex = TaskExplorer(ns=32, na=5, seed=0, play_steps=200, dpi=30)
    ex.policy.value = "oracle"
    ex.play_button.click()
    assert ex.last_play.n_episodes == 0  # this task's oracle finishes no episode in 200 steps
    problems = play_problems(ex)
    assert any("ns=32, oracle: reports nan" in p for p in problems), problems
