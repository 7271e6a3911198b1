"""Figures of a training run (loss curves, the label loss along the context) and of the data it trains on
(sequences of a synthesised dataset, reward along the sequence per tag and per behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plot_loss_curves(rows: Sequence[dict], title: str | None = None):
    """Training loss terms and learning rate against iteration, from :func:`read_metrics` rows."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    terms = {k: [r.get(k, 0.0) for r in rows] for k in ("policy", "state", "reward")}
    terms = {k: v for k, v in terms.items() if any(v)}
    only = next(iter(terms)) if len(terms) == 1 and np.allclose(terms[next(iter(terms))], loss) else None
    ax.plot(steps, loss, label=f"loss (= the {only} term, the only one)" if only else "loss", lw=1.2)
    for key, vals in terms.items():
        if key != only:
            ax.plot(steps, vals, label=key, lw=0.9)
    skipped = [r["step"] for r in rows if r.get("skipped")]
    if skipped:
        ax.scatter(skipped, [rows[0]["loss"]] * len(skipped), marker="x", color="red", label="skipped (non-finite)")
    ax.set(xlabel="iteration", ylabel="weighted loss (nats)", title=title or "training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:gray")
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title="schedule: warmup, then 1/sqrt")
    fig.tight_layout()
    return fig


def plot_position_loss(eval_rows: Sequence[dict], title: str | None = None):
    """Policy loss against position in the context, one curve per evaluation (later = darker)."""
    import matplotlib.pyplot as plt

    rows = [r for r in eval_rows if r.get("hook") == "position_loss"]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        ax.plot(r["position"], r["loss"], marker=".", color=cmap(0.15 + 0.7 * i / max(len(rows) - 1, 1)),
                label=f"iteration {r['step']}")
    ax.set(xlabel="step in the sequence (context length)", ylabel="policy cross entropy (nats)",
           title=title or "loss against position in the context")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- training data
TAG_COLOURS = ("#bcbd22", "#17becf", "#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e", "#d62728", "#7f7f7f")
"""One colour per tag id 0-7 (oracles g=0, 0.5, 0.93, 0.994, model-based, Q-learning, random, unknown), in
every figure of the data."""


def _tag_handles(names):
    from matplotlib.patches import Patch

    return [Patch(color=TAG_COLOURS[i], label=f"tag {i}: {n}") for i, n in enumerate(names)]


def plot_sequences(data: dict, n_show: int, steps: int, *, title: str | None = None):
    """The first ``n_show`` sequences of a dataset (arrays of :func:`omnirl_core.synthesis.load_dataset_arrays`),
    their first ``steps`` steps, one block per sequence, sharing the step axis: the observation id (for tasks
    with more than one state), the executed action with the label (the oracle's action) beside it, the tag of
    every step as a coloured strip (key in the legend; on a bandit a boundary step shows its pull's tag), and the
    reward of every step but the boundary steps. Behaviour switches are black dashed lines; episode ends (boundary
    steps) light grey lines, except on bandits, where every other step is one."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ..synthesis.behaviours import BEHAVIOURS
    from ..synthesis.format import BOUNDARY, TAG_NAMES

    n_show = min(int(n_show), data["obs"].shape[0])
    L = min(int(steps), data["obs"].shape[1])
    na = int(data["na"][0])
    t = np.arange(L)
    fig = Figure(figsize=(12.5, 3.3 * n_show + 0.9), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(n_show, 1))
    tag_cmap, tag_norm = ListedColormap(TAG_COLOURS), BoundaryNorm(np.arange(-0.5, 8.5), 8)
    for i, sf in enumerate(subfigs):
        ns = int(data["ns"][i])
        beh = data["behaviour"][i, :L].astype(int)
        real = beh != BOUNDARY
        ratios = ([1.6] if ns > 1 else []) + [1.3, 0.35, 1.1]
        axs = list(np.atleast_1d(sf.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)))
        if ns > 1:
            ax = axs.pop(0)
            ax.step(t, data["obs"][i, :L], where="post", lw=0.8, color="0.25")
            ax.set_ylabel("observation\nid", fontsize=8)
            ax.set_ylim(-0.5, ns - 0.5)
            rows = [ax]
        else:
            rows = []
        ax_a, ax_t, ax_r = axs
        lab = data["label"][i, :L].astype(int)
        ax_a.plot(t[real], lab[real], "_", ms=7, mew=1.6, color="#2ca02c")
        ax_a.plot(t[real], data["action"][i, :L][real], "o", ms=2.2, color="#1f77b4")
        ax_a.set_yticks(np.arange(na))
        ax_a.set_ylim(-0.6, na - 0.4)
        ax_a.set_ylabel("action", fontsize=8)
        tags = data["tag"][i, :L].astype(int)
        if ns == 1 and real.any():  # a bandit's every other step is a boundary step: paint its pull's tag there
            last_real = np.maximum.accumulate(np.where(real, t, 0))
            tags = np.where(real, tags, tags[last_real])
        ax_t.imshow(tags[None, :], cmap=tag_cmap, norm=tag_norm, aspect="auto", interpolation="nearest",
                    extent=(-0.5, L - 0.5, 0, 1))
        ax_t.set_yticks([])
        ax_t.set_ylabel("tag", fontsize=8, rotation=0, ha="right", va="center")
        ax_r.plot(t[real], data["reward"][i, :L][real], lw=0.7, color="0.35", marker=".", ms=2)
        ax_r.set_ylabel("reward\n(boundary steps\nleft out)", fontsize=7)
        ax_r.set_xlabel("step of the sequence" if i == n_show - 1 else "")
        rows += [ax_a, ax_t, ax_r]
        switches = [j for k, j in enumerate(np.flatnonzero(real)[1:], 1)
                    if beh[j] != beh[np.flatnonzero(real)[k - 1]]]
        for ax in rows:
            ax.tick_params(labelsize=7)
            if ns > 1:
                for b in np.flatnonzero(~real):
                    ax.axvline(b, color="0.85", lw=0.6, zorder=0)
            for j in switches:
                ax.axvline(j - 0.5, color="black", ls="--", lw=0.9)
        names = [BEHAVIOURS[b] for b in dict.fromkeys(beh[real].tolist())]
        kind = f"{ns} states" if ns > 1 else f"{na}-armed bandit"
        sf.suptitle(f"sequence {i} ({kind}); behaviours in order: {', '.join(names)}", fontsize=9)
    handles = _tag_handles(TAG_NAMES) + [
        Line2D([], [], ls="", marker="o", ms=4, color="#1f77b4", label="executed action"),
        Line2D([], [], ls="", marker="_", ms=9, mew=1.6, color="#2ca02c", label="label (oracle's action)"),
        Line2D([], [], color="black", ls="--", lw=0.9, label="behaviour switch"),
        Line2D([], [], color="0.8", lw=0.8, label="episode end (boundary step)"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncol=6, fontsize=7.5, frameon=False, title=title,
               title_fontsize=10)
    return fig


BEHAVIOUR_CURVES = ("model_based", "q_learning", "oracle_0.994", "noisy_oracle_0.994", "drift_random")
"""The behaviours :func:`plot_reward_curves` draws (when present): each in its tag's colour, noisy ones dashed."""


def plot_reward_curves(curves: dict, *, behaviours: tuple[str, ...] = BEHAVIOUR_CURVES):
    """Mean reward per step along the sequence, per tag (left) and per behaviour (right), one row per dataset.

    ``curves`` maps a dataset's name to ``(centres, per_tag, per_behaviour)`` as :func:`omnirl_core.synthesis.
    reward_curves` returns them (by tag, by behaviour). Tags keep :data:`TAG_COLOURS`; a behaviour takes its
    tag's colour, dashed when it is a noisy variant."""
    from matplotlib.figure import Figure

    from ..synthesis.behaviours import BEHAVIOUR_REGISTRY
    from ..synthesis.format import TAG_NAMES

    fig = Figure(figsize=(13, 3.3 * len(curves)), layout="constrained")
    axs = np.atleast_2d(fig.subplots(len(curves), 2, squeeze=False))
    for (name, (centres, per_tag, per_beh)), (ax_t, ax_b) in zip(curves.items(), axs):
        for tag_name, vals in per_tag.items():
            ax_t.plot(centres, vals, marker=".", color=TAG_COLOURS[TAG_NAMES.index(tag_name)], label=tag_name)
        for b in behaviours:
            if b in per_beh:
                ax_b.plot(centres, per_beh[b], marker=".", color=TAG_COLOURS[BEHAVIOUR_REGISTRY.get(b).tag],
                          ls="--" if b.startswith("noisy") else "-", label=b)
        ax_t.set_title(f"{name}: steps of each tag (tag 7 left out)", fontsize=9)
        ax_b.set_title(f"{name}: all steps of a behaviour", fontsize=9)
        for ax in (ax_t, ax_b):
            ax.set_xlabel("position in the sequence (step)")
            ax.set_ylabel("mean reward per step")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig
