"""The transition graph of a tabular task (the figure the explorer shows), and its helpers; and a run on a bandit
(:func:`plot_bandit_run`, which the explorer's trajectory figure draws for ``ns = 1``).

Every function is pure: it builds a :class:`matplotlib.figure.Figure` with the object API (no pyplot
state, safe under the Agg backend and inside widgets) and returns it. Artists that tests and callers may
want to inspect carry a ``gid``:

- ``"nodes"``: the state markers (one offset per state);
- ``"edges"``: one curved polyline per drawn transition s -> s' (s' != s), ``"self_loops"`` one loop per
  drawn s -> s; ``"arrowheads"`` one triangle per drawn non-loop edge;
- ``"policy_edges"`` / ``"policy_loops"``: the overlay of the given policy's transitions;
- ``"selected_edges"``: the outgoing transitions of the selected state; ``"selected"`` its ring;
- ``"goal"`` / ``"pitfalls"``: the terminal markers; ``"arms"``: a bandit's bars.

Which transitions are drawn is :func:`graph_edges`, so the figure and a count of P above the threshold
always agree.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..world import oracle
from ..world.task import Task

LABEL_MAX_STATES = 32  # node labels are drawn up to this many states
_ARC_START_DEG = 240.0  # lowest-ranked state sits at the lower left ...
_ARC_SPAN_DEG = 300.0  # ... and the arc runs clockwise over the top to the lower right
_EDGE_GREY = np.array([0.15, 0.15, 0.2])
_POLICY_COLOUR = "#ff7f0e"
_SELECTED_COLOUR = "#d62728"
_START_COLOUR = "#2ca02c"
_GOAL_COLOUR = "#ffbf00"
_PIT_COLOUR = "#8b0000"


# ---------------------------------------------------------------------------------------------- helpers
def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (what widgets display)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def terminal_kinds(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(goal, pitfall) boolean masks: the top state is a goal when terminal, other terminals are pitfalls."""
    goal = np.zeros(task.ns, dtype=bool)
    if task.ns > 1 and task.terminal[-1]:
        goal[-1] = True
    return goal, task.terminal & ~goal


def graph_edges(task: Task, action: int | None = None, threshold: float = 0.05) -> tuple[np.ndarray, ...]:
    """Transitions drawn by :func:`plot_transition_graph`: (src, dst, prob, act) arrays.

    With ``action`` given, the edges are P(s'|s, action) > threshold; with ``action=None`` the edge weight
    is max_a P(s'|s, a) and ``act`` holds the maximising action. Terminal rows are zero, so terminals
    have no outgoing edges.
    """
    P = task.transition
    if action is None:
        act_full = P.argmax(axis=1)  # [ns, ns'] the action most likely to reach s'
        weight = P.max(axis=1)
    else:
        if not 0 <= int(action) < task.na:
            raise ValueError(f"action must lie in [0, {task.na}), got {action}")
        weight = P[:, int(action), :]
        act_full = np.full(weight.shape, int(action))
    src, dst = np.nonzero(weight > threshold)
    return src, dst, weight[src, dst], act_full[src, dst]


def node_positions(task: Task, layout: str = "ranking") -> np.ndarray:
    """[ns, 2] positions on an arc: by hidden ranking (inner index) or by observation id."""
    ns = task.ns
    if layout == "ranking":
        slot = np.arange(ns)
    elif layout == "observed":
        slot = np.argsort(np.argsort(task.state_mapping))  # rank of each state's observation id
    else:
        raise ValueError(f"layout must be 'ranking' or 'observed', got {layout!r}")
    frac = slot / max(ns - 1, 1)
    ang = np.deg2rad(_ARC_START_DEG - _ARC_SPAN_DEG * frac)
    return np.stack([np.cos(ang), np.sin(ang)], axis=1)


def _oracle_values(task: Task, gamma: float = oracle.ORACLE_GAMMA) -> tuple[np.ndarray, np.ndarray]:
    Q, V = oracle.policy_iteration(task, gamma)
    return V, oracle.greedy_policy(Q)


def _bezier(p0: np.ndarray, p1: np.ndarray, bend: float, trim: float, n: int = 16) -> np.ndarray:
    """[E, n, 2] quadratic Bezier curves from p0 to p1 bent to the left of travel, ends trimmed by ``trim``."""
    d = p1 - p0
    length = np.linalg.norm(d, axis=1, keepdims=True)
    length = np.maximum(length, 1e-9)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / length
    ctrl = 0.5 * (p0 + p1) + bend * length * normal
    t0 = np.clip(trim / length, 0.0, 0.45)  # [E, 1]
    t = t0 + (1 - 2 * t0) * np.linspace(0.0, 1.0, n)[None, :]  # [E, n]
    t = t[..., None]
    return (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * ctrl[:, None] + t**2 * p1[:, None]


def _arrowheads(curves: np.ndarray, size: float) -> np.ndarray:
    """[E, 3, 2] triangles at the end of each curve pointing along its last segment."""
    tip = curves[:, -1]
    direction = tip - curves[:, -2]
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    base = tip - size * direction
    return np.stack([tip, base + 0.45 * size * normal, base - 0.45 * size * normal], axis=1)


def _loops(pos: np.ndarray, radius: float, n: int = 24) -> np.ndarray:
    """[E, n, 2] small circles just outside the arc, touching each node."""
    outward = pos / np.maximum(np.linalg.norm(pos, axis=1, keepdims=True), 1e-12)
    centre = pos + outward * radius * 1.6
    ang = np.linspace(0.0, 2 * np.pi, n)
    return centre[:, None, :] + radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)[None]


def _edge_rgba(prob: np.ndarray, base_rgb) -> np.ndarray:
    rgba = np.zeros((len(prob), 4))
    rgba[:, :3] = base_rgb
    rgba[:, 3] = 0.12 + 0.8 * np.clip(prob, 0.0, 1.0)
    return rgba


def _reward_norm(values: np.ndarray) -> Normalize:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    if lo < 0 < hi:
        return TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
    if lo == hi:
        lo, hi = lo - 1e-6, hi + 1e-6
    return Normalize(vmin=lo, vmax=hi)


# ---------------------------------------------------------------------------------------------- graph
def plot_transition_graph(
    task: Task,
    *,
    action: int | None = None,
    threshold: float = 0.05,
    layout: str = "ranking",
    values: np.ndarray | None = None,
    policy: np.ndarray | None = None,
    color_edges_by: str = "prob",
    selected_state: int | None = None,
    ax=None,
    title: str | None = None,
    values_label: str | None = None,
) -> Figure:
    """The task as a directed graph on an arc.

    States sit on an arc in hidden-ranking order (``layout="ranking"``, lowest value at the lower left,
    highest at the lower right) or in observation-id order (``layout="observed"``, what an agent sees).
    Nodes are coloured by ``values`` (default: the oracle V at gamma 0.994). Start states have a green
    ring, a terminal top state is a gold star (goal), other terminals are dark-red crosses (pitfalls).
    Edges are P(s'|s, action) > ``threshold`` (max over actions when ``action`` is None), bent to the left
    of their direction with an arrowhead at the target; self-loops are small outer circles. Edge width and
    opacity follow the probability; ``color_edges_by="reward"`` colours them by the mean reward r(s,a,s').
    ``policy`` ([ns] actions) overlays that policy's transitions in orange; ``selected_state`` rings one
    state and draws its outgoing transitions in red. Bandits (ns = 1) get a bar chart of the arms instead.
    """
    if color_edges_by not in ("prob", "reward"):
        raise ValueError(f"color_edges_by must be 'prob' or 'reward', got {color_edges_by!r}")
    if task.is_bandit:
        return _plot_bandit(task, ax=ax, title=title)
    ns = task.ns
    own_figure = ax is None
    fig, ax = _new_axes(ax, (7.5, 6.6))
    pos = node_positions(task, layout)
    if values is None:
        values, _ = _oracle_values(task)
        values_label = values_label or f"oracle V (γ={oracle.ORACLE_GAMMA:g})"
    values = np.asarray(values, dtype=float)
    if values.shape != (ns,):
        raise ValueError(f"values must have shape ({ns},), got {values.shape}")

    # Sizes in data units; the axes span about 2.7 data units.
    spacing = np.deg2rad(_ARC_SPAN_DEG) / max(ns - 1, 1)
    node_r = float(min(0.075, 0.38 * spacing))
    points_per_unit = 0.9 * min(fig.get_size_inches()) * 72 / 2.7
    marker_size = (2 * node_r * points_per_unit) ** 2
    loop_r = 0.55 * node_r
    edge_w = 0.3 + (2.2 if ns <= 32 else 1.2)
    pol_w, pol_alpha = (2.0, 0.9) if ns <= 32 else (0.9, 0.6)

    # ----- edges
    src, dst, prob, act = graph_edges(task, action, threshold)
    loop = src == dst
    cross_src, cross_dst, cross_p, cross_a = src[~loop], dst[~loop], prob[~loop], act[~loop]
    curves = _bezier(pos[cross_src], pos[cross_dst], bend=0.12, trim=1.15 * node_r)
    loops = _loops(pos[src[loop]], loop_r)
    reward_norm = None
    if color_edges_by == "reward":
        r_cross = task.reward[cross_src, cross_a, cross_dst]
        r_loop = task.reward[src[loop], act[loop], dst[loop]]
        reward_norm = _reward_norm(np.concatenate([r_cross, r_loop]))
        cmap = _cmap("coolwarm")
        cross_rgba = cmap(reward_norm(r_cross))
        cross_rgba[:, 3] = 0.25 + 0.75 * cross_p
        loop_rgba = cmap(reward_norm(r_loop))
        loop_rgba[:, 3] = 0.25 + 0.75 * prob[loop]
    else:
        cross_rgba = _edge_rgba(cross_p, _EDGE_GREY)
        loop_rgba = _edge_rgba(prob[loop], _EDGE_GREY)
    ax.add_collection(
        LineCollection(list(curves), colors=cross_rgba, linewidths=0.3 + edge_w * cross_p, gid="edges", zorder=1)
    )
    ax.add_collection(
        PolyCollection(list(_arrowheads(curves, 0.7 * node_r)), facecolors=cross_rgba, edgecolors="none",
                       gid="arrowheads", zorder=1)
    )
    ax.add_collection(
        LineCollection(list(loops), colors=loop_rgba, linewidths=0.3 + edge_w * prob[loop], gid="self_loops",
                       zorder=1)
    )

    # ----- policy overlay
    n_policy_edges = 0
    if policy is not None:
        policy = np.asarray(policy, dtype=np.int64)
        if policy.shape != (ns,):
            raise ValueError(f"policy must have shape ({ns},), got {policy.shape}")
        Ppol = task.transition[np.arange(ns), policy]  # [ns, ns']
        ps, pd = np.nonzero(Ppol > threshold)
        pp = Ppol[ps, pd]
        pl = ps == pd
        pc = _bezier(pos[ps[~pl]], pos[pd[~pl]], bend=0.12, trim=1.15 * node_r)
        ax.add_collection(
            LineCollection(list(pc), colors=_POLICY_COLOUR, linewidths=0.4 + pol_w * pp[~pl], alpha=pol_alpha,
                           gid="policy_edges", zorder=2)
        )
        ax.add_collection(
            PolyCollection(list(_arrowheads(pc, 0.8 * node_r)), facecolors=_POLICY_COLOUR, edgecolors="none",
                           alpha=pol_alpha, zorder=2)
        )
        ax.add_collection(
            LineCollection(list(_loops(pos[ps[pl]], loop_r)), colors=_POLICY_COLOUR, linewidths=0.4 + pol_w * pp[pl],
                           alpha=pol_alpha, gid="policy_loops", zorder=2)
        )
        n_policy_edges = len(ps)

    # ----- selected state
    if selected_state is not None:
        s = int(selected_state)
        if not 0 <= s < ns:
            raise ValueError(f"selected_state must lie in [0, {ns}), got {s}")
        mine = (cross_src == s)
        sc = curves[mine]
        ax.add_collection(
            LineCollection(list(sc), colors=_SELECTED_COLOUR, linewidths=1.0 + 2.5 * cross_p[mine],
                           gid="selected_edges", zorder=3)
        )
        ax.add_collection(
            PolyCollection(list(_arrowheads(sc, 0.9 * node_r)), facecolors=_SELECTED_COLOUR, edgecolors="none",
                           zorder=3)
        )

    # ----- nodes
    # Colour scale over non-terminal states (terminals have value 0 and their own markers).
    live_v = values[~task.terminal] if (~task.terminal).any() else values
    vlo, vhi = float(live_v.min()), float(live_v.max())
    vnorm = Normalize(vmin=vlo, vmax=vhi if vhi > vlo else vlo + 1e-9)
    goal, pit = terminal_kinds(task)
    start = task.start_prob > 0
    edgecolors = np.where(start[:, None], np.array([[0.17, 0.63, 0.17, 1.0]]), np.array([[0.2, 0.2, 0.2, 1.0]]))
    linewidths = np.where(start, 2.8, 0.6)
    nodes = ax.scatter(
        pos[:, 0], pos[:, 1], s=marker_size, c=values, cmap="viridis", norm=vnorm, edgecolors=edgecolors,
        linewidths=linewidths, zorder=4, gid="nodes",
    )
    if goal.any():
        ax.scatter(pos[goal, 0], pos[goal, 1], s=max(marker_size * 2.2, 160), marker="*", c=_GOAL_COLOUR,
                   edgecolors="black", linewidths=0.8, zorder=5, gid="goal")
    if pit.any():
        ax.scatter(pos[pit, 0], pos[pit, 1], s=max(marker_size * 0.9, 45), marker="X", c=_PIT_COLOUR,
                   edgecolors="white", linewidths=0.5, zorder=5, gid="pitfalls")
    if selected_state is not None:
        ax.scatter(pos[[s], 0], pos[[s], 1], s=marker_size * 2.4, facecolors="none", edgecolors=_SELECTED_COLOUR,
                   linewidths=2.2, zorder=6, gid="selected")
    if ns <= LABEL_MAX_STATES:
        label_of = np.arange(ns) if layout == "ranking" else task.state_mapping
        fs = 8 if ns <= 16 else 6
        for i in range(ns):
            ax.text(*(pos[i] * (1 - 2.4 * node_r)), str(int(label_of[i])), ha="center", va="center", fontsize=fs,
                    color="0.25", zorder=6)
    fig.colorbar(nodes, ax=ax, shrink=0.7, pad=0.01, label=values_label or "state value")
    if reward_norm is not None:
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm=reward_norm, cmap="coolwarm"), ax=ax, shrink=0.7, pad=0.01,
                     label="edge mean reward r(s,a,s')")

    # ----- legend, text, limits
    handles = [
        Line2D([], [], marker="o", ls="", mfc="0.8", mec=_START_COLOUR, mew=2.5, ms=9, label="start state"),
        Line2D([], [], marker="*", ls="", mfc=_GOAL_COLOUR, mec="black", ms=13, label="goal (terminal top state)"),
        Line2D([], [], marker="X", ls="", mfc=_PIT_COLOUR, mec="white", ms=10, label="pitfall (terminal)"),
        Line2D([], [], color=_EDGE_GREY, lw=2, label=f"P(s'|s,a) > {threshold:g}"),
    ]
    if policy is not None:
        handles.append(Line2D([], [], color=_POLICY_COLOUR, lw=2.5, label=f"policy transitions ({n_policy_edges})"))
    if selected_state is not None:
        handles.append(Line2D([], [], color=_SELECTED_COLOUR, lw=2.5, label=f"from selected state {s}"))
    ax.legend(handles=handles, loc="upper center", fontsize=7.5, ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
    order = "hidden ranking (low → high value)" if layout == "ranking" else "observation id"
    act_txt = "max over actions" if action is None else f"action {int(action)}"
    note = f"states placed by {order}"
    if ns <= LABEL_MAX_STATES:
        note += "; labels: " + ("inner rank" if layout == "ranking" else "observation id")
    heading = (title or f"{task.kind} task: ns={ns}, na={task.na}; {act_txt}; {len(src)} edges") + "\n" + note
    if own_figure:  # a figure title is laid out reliably next to an equal-aspect axes
        fig.suptitle(heading, fontsize=10)
    else:
        ax.set_title(heading, fontsize=10)
    if layout == "ranking":
        ax.annotate("low", pos[0] * 1.16 + np.array([-0.08, 0.0]), ha="center", va="center", fontsize=8, color="0.35")
        ax.annotate("high", pos[-1] * 1.16 + np.array([0.1, 0.0]), ha="center", va="center", fontsize=8, color="0.35")
    if selected_state is not None:
        ax.text(0.0, 0.0, _state_card(task, s, values), ha="center", va="center", ma="left", fontsize=7.5,
                family="monospace", bbox=dict(boxstyle="round", fc="white", ec=_SELECTED_COLOUR, alpha=0.85), zorder=7)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.05, 1.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return fig


def _state_card(task: Task, s: int, values: np.ndarray) -> str:
    lines = [f"state {s} (obs {int(task.state_mapping[s])})", f"V = {values[s]:.4g}"]
    if task.terminal[s]:
        lines.append("terminal")
        return "\n".join(lines)
    if task.start_prob[s] > 0:
        lines.append(f"start p = {task.start_prob[s]:.2f}")
    er = task.expected_reward[s]
    for a in range(task.na):
        row = task.transition[s, a]
        top = np.argsort(row)[::-1][:3]
        succ = " ".join(f"{int(j)}:{row[j]:.2f}" for j in top if row[j] > 1e-3)
        lines.append(f"a{a} r={er[a]:+.3f} → {succ}")
    return "\n".join(lines)


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _plot_bandit(task: Task, ax=None, title: str | None = None) -> Figure:
    fig, ax = _new_axes(ax, (6.0, 4.0))
    means = task.expected_reward[0]
    noise = task.reward_noise[0, :, 0]
    best = int(np.argmax(means))
    colours = ["#1f77b4"] * task.na
    colours[best] = _POLICY_COLOUR
    ax.bar(np.arange(task.na), means, yerr=noise, color=colours, capsize=4, gid="arms", edgecolor="black", lw=0.5)
    ax.set_xticks(np.arange(task.na), [f"arm {a}" for a in range(task.na)])
    ax.set_ylabel("mean reward ± noise std")
    ax.set_title(title or f"bandit: {task.na} arms (best: arm {best}, orange)", fontsize=10)
    ax.axhline(means.mean(), color="0.4", ls="--", lw=1, label=f"random pull: {means.mean():.3f}")
    ax.legend(fontsize=8, loc="upper left")
    return fig


# ---------------------------------------------------------------------------------------------- a run on a bandit
def _trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x over the last ``window`` entries up to and including each one (fewer at the start)."""
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=float))])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def plot_bandit_run(rewards: Sequence[float], task: Task, *, actions: Sequence[int] | None = None,
                    title: str | None = None, window: int = 20) -> Figure:
    """A run on a bandit, one pull per episode: the arm pulled at each pull (with ``actions``; the best arm in
    orange), the reward of each pull with its running mean over ``window`` pulls against the best arm's and the
    average arm's expected reward, and the share of the last ``window`` pulls that went to the best arm."""
    rewards = np.asarray(rewards, dtype=float)
    means = task.expected_reward[0]
    best = int(np.argmax(means))
    n = len(rewards)
    pull = np.arange(1, n + 1)
    panels = 3 if actions is not None else 1
    fig = Figure(figsize=(10, 1.2 + 1.9 * panels), layout="constrained")
    axs = list(np.atleast_1d(fig.subplots(panels, 1, sharex=True)))
    legend = {"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0}
    if actions is not None:
        actions = np.asarray(actions, dtype=int)
        if actions.shape != rewards.shape:
            raise ValueError(f"actions and rewards must have the same length, got {actions.shape} and "
                             f"{rewards.shape}")
        ax = axs.pop(0)
        on = actions == best
        ax.scatter(pull[~on], actions[~on], s=7, color="#1f77b4", label="another arm", gid="pulls")
        ax.scatter(pull[on], actions[on], s=7, color=_POLICY_COLOUR, label=f"best arm ({best})", gid="best_pulls")
        ax.set_yticks(np.arange(task.na))
        ax.set_ylim(-0.6, task.na - 0.4)
        ax.set_ylabel("arm pulled")
        ax.legend(**legend)
        share_ax = axs.pop()
        share_ax.plot(pull, _trailing_mean(on, window), color=_POLICY_COLOUR, gid="best_share")
        share_ax.axhline(1.0 / task.na, color="0.4", ls=":", label=f"uniform random (1/{task.na})")
        share_ax.set_ylim(0, 1.05)
        share_ax.set_ylabel(f"share of best arm\n(last {window} pulls)")
        share_ax.legend(**legend)
    ax = axs[0]
    ax.scatter(pull, rewards, s=5, color="0.7", label="reward of a pull")
    ax.plot(pull, _trailing_mean(rewards, window), color="#1f77b4", label=f"running mean ({window} pulls)",
            gid="running_mean")
    ax.axhline(float(means[best]), color=_POLICY_COLOUR, ls="--", label=f"best arm (expected) {means[best]:.3g}")
    ax.axhline(float(means.mean()), color="0.4", ls=":", label=f"random (expected) {means.mean():.3g}")
    ax.set_ylabel("reward per pull")
    ax.legend(**legend)
    fig.axes[-1].set_xlabel("pull (each pull is one episode)")
    fig.suptitle(title or f"bandit run: {n} pulls", fontsize=10)
    return fig
