"""Figures of a training run: loss curves and the label loss along the context.
"""

from __future__ import annotations

from collections.abc import Sequence


def plot_loss_curves(rows: Sequence[dict], title: str | None = None):
    """Training loss terms and learning rate against iteration, from :func:`read_metrics` rows."""
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = [r["step"] for r in rows]
    for key in ("loss", "policy", "state", "reward"):
        vals = [r.get(key, 0.0) for r in rows]
        if key == "loss" or any(vals):
            ax.plot(steps, vals, label=key, lw=1.2 if key == "loss" else 0.9)
    skipped = [r["step"] for r in rows if r.get("skipped")]
    if skipped:
        ax.scatter(skipped, [rows[0]["loss"]] * len(skipped), marker="x", color="red", label="skipped (non-finite)")
    ax.set(xlabel="iteration", ylabel="weighted loss", title=title or "training loss")
    ax.legend()
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:gray")
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title="schedule: warmup, then 1/sqrt")
    fig.tight_layout()
    return fig


def plot_position_loss(eval_rows: Sequence[dict], title: str | None = None):
    """Policy loss against position in the context, one curve per evaluation (later = darker)."""
    import matplotlib.pyplot as plt

    rows = [r for r in eval_rows if r.get("hook") == "position_loss"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        ax.plot(r["position"], r["loss"], marker=".", color=cmap(0.15 + 0.7 * i / max(len(rows) - 1, 1)),
                label=f"iteration {r['step']}")
    ax.set(xlabel="step in the sequence (context length)", ylabel="policy cross entropy",
           title=title or "loss against position in the context")
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
