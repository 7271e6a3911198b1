"""Interactive exploration of AnyMDP tasks in Jupyter: :class:`TaskExplorer`.

The explorer keeps its model logic in plain methods that work without a kernel (``resample()``,
``render_graph()``, ``play()``); the ipywidgets controls only call them. Figures come from the pure
functions of :mod:`omnirl_core.views` and are shown as PNG bytes in ``ipywidgets.Image`` widgets, so a
figure update is a change of ``explorer.graph_image.value`` that tests can observe without a browser.
"""

from __future__ import annotations

import html
import time
import traceback
from collections.abc import Callable

import ipywidgets as W
import numpy as np

from ..workbook.errors import InputError
from ..world import oracle
from ..world.task import Task
from .explorer_play import (  # noqa: F401  (re-exported: the explorer's public names live here too)
    LEARNERS,
    NS_CHOICES,
    POLICIES,
    SHIPPED_DEFAULT_MIN_SCORE,
    PlayResult,
    _not_covered,
    _recorded_evaluation,
    _shipped_for,
    _standing_text,
    default_policy,
    make_policy,
    offered_policies,
    play_policy,
    play_shipped_model,
    policy_note,
    shipped_model_covering,
    shipped_standing,
)
from .task_figures import plot_task_summary, plot_trajectory
from .task_graph import figure_to_png, plot_transition_graph, terminal_kinds

CSS_CLASS = "omnirl-explorer"

__all__ = ["TaskExplorer", "PlayResult", "POLICIES", "NS_CHOICES", "play_policy", "play_shipped_model", "make_policy",
           "offered_policies", "default_policy", "shipped_model_covering", "shipped_standing"]


def _default_sampler(ns: int, na: int, seed: int) -> Task:
    from ..world import sample_anymdp

    return sample_anymdp(ns, na, seed=seed)


class TaskExplorer:
    """Sample an AnyMDP task, look at its transition graph and play a policy in it.

    Controls (``explorer.widget`` shows them all; each has a ``description``):

    - sampling: ``ns`` (1 = bandit, 8..128), ``na``, ``seed`` and a Resample button (next seed); any change
      draws a new task (:meth:`resample`);
    - view: selected ``state``, ``action`` (all = max over actions, or one), probability ``threshold``,
      ``layout`` (hidden ranking / observation id), ``color by`` (probability / reward) and an oracle-policy
      overlay checkbox; any change redraws the graph (:meth:`render_graph`);
    - play: a ``policy`` (oracle, random, Q-learning UCB, model-based, and the shipped OmniRL-tiny acting in
      context where one covers the task), ``steps`` and a Play button that runs :meth:`play` and shows the
      trajectory and the returns next to the exact oracle/random returns. The policies offered follow the task
      (:func:`offered_policies`, re-evaluated on every new task); a line under the controls states the shipped
      model's measured standing, or that none covers the task. The default is the oracle, or the shipped model
      where its recorded evaluation is at least :data:`SHIPPED_DEFAULT_MIN_SCORE` of the way from random to the
      oracle (:func:`default_policy`: the bandit model). A policy picked in the control stays picked across new
      tasks while it is offered; otherwise the new task's default is played.

    ``sampler(ns, na, seed) -> Task`` defaults to :func:`omnirl_core.world.task.sample_anymdp`.
    """

    def __init__(
        self,
        ns: int = 16,
        na: int = 5,
        seed: int = 0,
        *,
        threshold: float = 0.05,
        play_steps: int = 200,
        sampler: Callable[[int, int, int], Task] | None = None,
        dpi: int = 80,
    ) -> None:
        self.sampler = sampler or _default_sampler
        self.dpi = int(dpi)
        self.task: Task | None = None
        self.values: np.ndarray | None = None
        self.oracle_actions: np.ndarray | None = None
        self.oracle_return = float("nan")
        self.random_return = float("nan")
        self.graph_figure = None
        self.summary_figure = None
        self.trajectory_figure = None
        self.last_play: PlayResult | None = None
        self.n_renders = 0
        self.n_samples = 0
        self._suspend = False
        self._policy_chosen = False  # the policy control was set (by hand or by code), not left at its default

        style = {"description_width": "initial"}
        ns_options = sorted(set(NS_CHOICES) | {int(ns)})
        self.ns = W.Dropdown(options=ns_options, value=int(ns), description="ns (states)", style=style,
                             layout=W.Layout(width="150px"))
        self.na = W.BoundedIntText(value=int(na), min=2, max=16, description="na (actions)", style=style,
                                   layout=W.Layout(width="140px"))
        self.seed = W.BoundedIntText(value=int(seed), min=0, max=2**31 - 1, description="seed", style=style,
                                     layout=W.Layout(width="160px"))
        self.resample_button = W.Button(description="Resample", tooltip="draw a new task (next seed)",
                                        icon="refresh", button_style="info")
        self.state = W.Dropdown(options=[("none", -1)], value=-1, description="state", style=style,
                                layout=W.Layout(width="190px"))
        self.action = W.Dropdown(options=[("all (max)", -1)], value=-1, description="action", style=style,
                                 layout=W.Layout(width="160px"))
        self.threshold = W.FloatSlider(value=float(threshold), min=0.0, max=0.5, step=0.01,
                                       description="P threshold", style=style, continuous_update=False,
                                       readout_format=".2f")
        self.layout = W.ToggleButtons(options=[("ranking", "ranking"), ("observed id", "observed")],
                                      value="ranking", description="layout", style=style)
        self.color_by = W.ToggleButtons(options=[("probability", "prob"), ("reward", "reward")], value="prob",
                                        description="edges by", style=style)
        self.overlay = W.Checkbox(value=False, description="oracle policy overlay", style=style, indent=False)
        self.policy = W.Dropdown(options=[(POLICIES[k], k) for k in LEARNERS], value="oracle",
                                 description="policy", style=style, layout=W.Layout(width="300px"))
        self.policy_note = W.HTML(value="")
        self.policy_note.add_class("omnirl-policy-note")
        self.steps = W.BoundedIntText(value=int(play_steps), min=1, max=20000, description="steps", style=style,
                                      layout=W.Layout(width="150px"))
        self.play_button = W.Button(description="Play", icon="play", button_style="success",
                                    tooltip="run the policy for the given number of steps")
        self.status = W.HTML(value="", description="")
        self.info = W.HTML(value="")
        self.play_info = W.HTML(value="")
        self.graph_image = W.Image(format="png", layout=W.Layout(max_width="760px"))
        self.graph_image.add_class("omnirl-graph")
        self.summary_image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.trajectory_image = W.Image(format="png", layout=W.Layout(max_width="900px"))
        self.trajectory_image.add_class("omnirl-trajectory")
        self.tabs = W.Tab(children=[W.VBox([self.graph_image]), W.VBox([self.summary_image]),
                                    W.VBox([self.play_info, self.trajectory_image])])
        for i, name in enumerate(("graph", "summary", "play")):
            self.tabs.set_title(i, name)

        for w in (self.ns, self.na, self.seed):
            w.observe(self._on_sample_change, names="value")
        for w in (self.state, self.action, self.threshold, self.layout, self.color_by, self.overlay):
            w.observe(self._on_view_change, names="value")
        self.tabs.observe(self._on_tab_change, names="selected_index")
        self.policy.observe(self._on_policy_change, names="value")
        self.resample_button.on_click(lambda _b: self._guard(self.next_seed))
        self.play_button.on_click(lambda _b: self._guard(self.play_and_show))

        self.widget = W.VBox([
            W.HTML("<b>AnyMDP task explorer</b>"),
            W.HBox([self.ns, self.na, self.seed, self.resample_button]),
            W.HBox([self.state, self.action, self.threshold]),
            W.HBox([self.layout, self.color_by, self.overlay]),
            W.HBox([self.policy, self.steps, self.play_button]),
            self.policy_note,
            self.status,
            self.info,
            self.tabs,
        ])
        self.widget.add_class(CSS_CLASS)
        self._guard(self.resample)

    # ------------------------------------------------------------------ display
    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _guard(self, fn) -> None:
        """Run a callback; show a failure in the status line instead of losing it in the kernel log (one line for
        bad input, with the traceback's last frames for anything else)."""
        try:
            fn()
        except Exception as exc:
            line = f"<span style='color:#b00'>error: {html.escape(f'{type(exc).__name__}: {exc}')}</span>"
            if not isinstance(exc, (InputError, LookupError)):
                line += f"<pre style='font-size:10px'>{html.escape(traceback.format_exc(limit=3))}</pre>"
            self.status.value = line
            raise

    def _set_status(self, text: str) -> None:
        self.status.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    # ------------------------------------------------------------------ model
    def resample(self) -> Task:
        """Draw the task for the current (ns, na, seed), solve it and redraw the figures."""
        ns, na, seed = int(self.ns.value), int(self.na.value), int(self.seed.value)
        self._set_status(f"sampling ns={ns}, na={na}, seed={seed} ...")
        t0 = time.perf_counter()
        task = self.sampler(ns, na, seed)
        t_sample = time.perf_counter() - t0
        self.set_task(task)
        self._set_status(f"sampled ns={ns}, na={na}, seed={seed} in {t_sample:.2f} s")
        return task

    def set_task(self, task: Task) -> None:
        """Show a given task (solves it, resets the view controls, redraws)."""
        Q, V = oracle.policy_iteration(task, oracle.ORACLE_GAMMA)
        self.task = task
        self.n_samples += 1
        self.values = V
        self.oracle_actions = oracle.greedy_policy(Q)
        self.oracle_return = float(oracle.oracle_return(task))
        self.random_return = float(oracle.random_return(task))
        self.last_play = None
        self.summary_figure = None
        self._update_policies(task)
        self._suspend = True
        try:
            self.state.options = [("none", -1)] + [
                (f"{s} (obs {int(task.state_mapping[s])})", s) for s in range(task.ns)
            ]
            self.state.value = -1
            self.action.options = [("all (max)", -1)] + [(f"a{a}", a) for a in range(task.na)]
            self.action.value = -1
        finally:
            self._suspend = False
        goal, pit = terminal_kinds(task)
        self.info.value = (
            f"<span style='font-size:12px'>{task.kind}: ns={task.ns}, na={task.na}, "
            f"max_steps={task.max_steps:.1f}, start states {np.flatnonzero(task.start_prob > 0).tolist()}, "
            f"goal={'yes' if goal.any() else 'no'}, pitfalls={int(pit.sum())}; exact episode return: "
            f"oracle {self.oracle_return:.3f}, random {self.random_return:.3f}</span>"
        )
        self.trajectory_image.value = b""
        self.play_info.value = "press Play to run a policy"
        self.render_graph()
        if self.tabs.selected_index == 1:
            self.render_summary()

    def offered_policies(self) -> list[str]:
        """The policies the control offers for the current task (:func:`offered_policies`)."""
        return [value for _label, value in self.policy.options]

    def _update_policies(self, task: Task) -> None:
        """Offer the policies that can play ``task``; keep a picked one that still can, else play the default."""
        offered = offered_policies(task)
        current = self.policy.value
        keep = self._policy_chosen and current in offered
        value = current if keep else default_policy(task)
        note = policy_note(task)
        if self._policy_chosen and not keep:
            note = f"{POLICIES[current]} cannot play this task, so {POLICIES[value]} plays instead. {note}"
            self._policy_chosen = False
        suspended, self._suspend = self._suspend, True
        try:
            if self.offered_policies() != offered:
                self.policy.options = [(POLICIES[k], k) for k in offered]
            self.policy.value = value
        finally:
            self._suspend = suspended
        self.policy_note.value = f"<span style='font-size:12px;color:#555'>{html.escape(note)}</span>"

    def view_options(self) -> dict:
        """Keyword arguments of :func:`plot_transition_graph` from the view controls."""
        return {
            "action": None if self.action.value == -1 else int(self.action.value),
            "threshold": float(self.threshold.value),
            "layout": self.layout.value,
            "values": self.values,
            "policy": self.oracle_actions if self.overlay.value else None,
            "color_edges_by": self.color_by.value,
            "selected_state": None if self.state.value == -1 else int(self.state.value),
            "values_label": f"oracle V (γ={oracle.ORACLE_GAMMA:g})",
        }

    def render_graph(self):
        """Redraw the transition graph from the current task and view controls."""
        if self.task is None:
            return None
        fig = plot_transition_graph(self.task, **self.view_options())
        self.graph_figure = fig
        self.graph_image.value = figure_to_png(fig, dpi=self.dpi)
        self.n_renders += 1
        return fig

    def render_summary(self):
        """Draw the task-summary figure (done lazily: when its tab is shown)."""
        if self.task is None:
            return None
        fig = plot_task_summary(self.task)
        self.summary_figure = fig
        self.summary_image.value = figure_to_png(fig, dpi=self.dpi)
        return fig

    def play(self, policy: str | None = None, steps: int | None = None, seed: int | None = None) -> PlayResult:
        """Run a policy in the current task (defaults: the play controls, the task seed)."""
        if self.task is None:
            raise RuntimeError("no task: call resample() first")
        policy = self.policy.value if policy is None else policy
        if policy == "omnirl" and policy not in self.offered_policies():
            from ..evaluation.models import ShippedModelError

            raise ShippedModelError(_not_covered(self.task.n_obs, self.task.na))
        steps = int(self.steps.value) if steps is None else int(steps)
        seed = int(self.seed.value) if seed is None else int(seed)
        result = play_policy(self.task, policy, steps, seed, exact_returns=(self.oracle_return, self.random_return))
        self.last_play = result
        return result

    def play_and_show(self) -> PlayResult:
        """:meth:`play` with the controls, then show the trajectory figure and the returns."""
        self._set_status(f"playing {POLICIES[self.policy.value]} for {int(self.steps.value)} steps ...")
        res = self.play()
        fig = plot_trajectory(res.states, res.rewards, self.task, dones=res.dones,
                                  oracle_return=res.oracle_return, random_return=res.random_return,
                                  title=f"{POLICIES[res.policy]}: {res.steps} steps")
        self.trajectory_figure = fig
        self.trajectory_image.value = figure_to_png(fig, dpi=self.dpi)
        self.play_info.value = (
            f"<b>{html.escape(POLICIES[res.policy])}</b>: return over {res.steps} steps "
            f"<b>{res.total_return:.3f}</b>; {html.escape(res.episodes_text())}. Exact expected episode return: "
            f"oracle {res.oracle_return:.3f}, random {res.random_return:.3f}"
        )
        self.tabs.selected_index = 2
        self._set_status(f"played {res.steps} steps in {res.seconds:.2f} s")
        return res

    def next_seed(self) -> None:
        """The Resample button: move to the next seed (which draws a new task)."""
        self.seed.value = int(self.seed.value) + 1

    # ------------------------------------------------------------------ observers
    def _on_sample_change(self, change) -> None:
        if not self._suspend:
            self._guard(self.resample)

    def _on_policy_change(self, change) -> None:
        if not self._suspend:
            self._policy_chosen = True

    def _on_view_change(self, change) -> None:
        if not self._suspend:
            self._guard(self.render_graph)

    def _on_tab_change(self, change) -> None:
        if change["new"] == 1 and self.summary_figure is None:
            self._guard(self.render_summary)
