"""The label loss of every variant along the context: the paper compares backbones and data strategies by their
loss against log(context length) ("falls roughly linearly in log(context) up to ~20K steps").

Every variant of a study is read on the same ``loss_sequences`` DPD sequences (oracle labels, unseen tasks of the
study's test-suite size, :func:`~omnirl_core.evaluation.long_context.dpd_sequences`) of the study's test length,
in the log-spaced bins of the in-context measure (:func:`~omnirl_core.evaluation.incontext.log_edges`), so the
curves of one study are comparable whatever data each variant was trained on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cross_suite import eval_settings


@functools.cache
def _sequences(steps: int, n: int, ns: int, na: int) -> list[dict]:
    from ..evaluation.long_context import dpd_sequences

    return dpd_sequences(steps, n, ns, na)


def context_loss(cfg: Any, study: str, model, chunk_len: int) -> dict[str, Any] | None:
    """``{"edges", "position", "loss", "sequences"}``: mean label cross entropy of ``model`` per log-spaced bin of
    the study's test length on ``cfg.loss_sequences`` sequences; None when ``cfg.loss_sequences`` is 0."""
    import torch

    from ..evaluation.incontext import DEFAULT_BINS, log_edges
    from ..evaluation.long_context import loss_along_context

    if not cfg.loss_sequences:
        return None
    suite, steps = eval_settings(cfg, study)
    ns = int(suite.split("_")[1])
    edges = log_edges(steps, DEFAULT_BINS)
    with torch.no_grad():
        out = loss_along_context(model, _sequences(steps, cfg.loss_sequences, ns, model.cfg.na), chunk_len, edges)
    return {**out, "sequences": int(cfg.loss_sequences)}


def pool_context_loss(losses: Sequence[dict | None]) -> dict[str, Any] | None:
    """The mean curve over a variant's seeds (those that measured it on the same bins); None when none did."""
    kept = [x for x in losses if x]
    kept = [x for x in kept if x["edges"] == kept[0]["edges"]] if kept else []
    if not kept:
        return None
    table = np.array([x["loss"] for x in kept], dtype=float)
    counts = np.isfinite(table).sum(axis=0)  # a bin without a labelled step in every seed stays NaN, quietly
    loss = np.where(counts > 0, np.nansum(table, axis=0) / np.maximum(counts, 1), np.nan)
    return {**kept[0], "loss": loss.tolist(), "seeds": len(kept)}


def plot_context_loss(study: str, variants: Sequence[Any], ax=None):
    """One line per variant: its label loss against the position in the context (log axis)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    drawn = 0
    for r in variants:
        curve = r.context_loss
        if curve:
            ax.plot(curve["position"], curve["loss"], marker="o", ms=3, label=r.variant)
            drawn += 1
    ax.set_xscale("log")
    ax.set_xlabel("position in the context (steps, log scale)")
    ax.set_ylabel("label cross entropy (nats)")
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not measured (loss_sequences: 0, or results of older code)", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_title(study)
    return ax
