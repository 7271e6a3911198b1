"""Metrics files of a training run: one row per logged iteration in ``metrics.csv`` and ``metrics.jsonl``, one per
evaluation in ``eval.jsonl``; read back by :func:`read_metrics` and :func:`read_eval`. And the policy loss along the
context per sequence (:func:`position_loss_per_sequence`), for intervals over sequences.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

METRIC_COLUMNS = ["step", "loss", "policy", "state", "reward", "lr", "grad_norm", "skipped", "bad_steps_total",
                  "steps_per_s", "elapsed_s"]


class MetricsWriter:
    """Rows to ``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard events, see ``tensorboard``): loss terms
    averaged over the iterations since the previous row, lr and gradient norm of the row's iteration. On resume,
    rows from iterations after the checkpoint are dropped so the files read like one run."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool, tensorboard: str = "off"):
        self.enabled = enabled
        self.csv, self.jsonl, self.eval = out_dir / "metrics.csv", out_dir / "metrics.jsonl", out_dir / "eval.jsonl"
        self.tb = None
        if not enabled:
            return
        for p in (self.jsonl, self.eval):
            rows = [r for r in _read_jsonl(p) if r.get("step", 0) <= start_step]
            p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        keep = [r for r in _read_csv(self.csv) if float(r["step"]) <= start_step]
        with open(self.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(keep)
        self.tb = _tensorboard_writer(out_dir / "tensorboard", start_step, tensorboard)

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as fh:
            csv.DictWriter(fh, METRIC_COLUMNS, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def log_eval(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.eval, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"eval/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard_writer(folder: Path, start_step: int, mode: str):
    """A SummaryWriter (``mode`` on, or auto when the ``tensorboard`` package is installed), else None."""
    if mode == "off":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        if mode == "on":
            raise RuntimeError("tensorboard: on, but the tensorboard package is not installed "
                               "(pip install -e .[tensorboard]), or set tensorboard: off") from exc
        print("tensorboard is not installed: metrics go to metrics.csv and metrics.jsonl only "
              "(pip install -e .[tensorboard] adds TensorBoard events)", file=sys.stderr)
        return None
    return SummaryWriter(str(folder), purge_step=start_step)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut by a kill
            pass
    return out


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("step") not in (None, "") and None not in r.values()]


def read_metrics(out_dir: str | os.PathLike) -> list[dict]:
    """The metric rows of a run folder."""
    return _read_jsonl(Path(out_dir) / "metrics.jsonl")


def read_eval(out_dir: str | os.PathLike) -> list[dict]:
    """The evaluation rows of a run folder."""
    return _read_jsonl(Path(out_dir) / "eval.jsonl")


def position_loss_per_sequence(model, batches, chunk_len: int, edges) -> np.ndarray:
    """Policy cross entropy of each sequence of ``batches`` in the position bins of ``edges``, as
    :func:`~omnirl_core.training.losses.position_loss` computes it for one sequence: [n_sequences, len(edges) - 1],
    NaN for a bin without a labelled step. One row per sequence, so an interval can be taken over sequences."""
    import torch

    from .losses import position_loss

    rows = []
    for b in batches:
        for i in range(b["label"].shape[0]):
            one = {k: v[i:i + 1] for k, v in b.items() if isinstance(v, torch.Tensor) and v.dim() >= 2}
            rows.append(position_loss(model, [one], chunk_len, edges=edges)["loss"])
    return np.asarray(rows, dtype=float)
