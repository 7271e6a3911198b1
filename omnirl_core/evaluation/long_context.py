"""Very long contexts (paper section 4): the label loss and the online score against log(context length).

The paper found the loss on a 1M-step context rising beyond about 80K steps, and post-trained on D_Long (12K
sequences x 512K steps) for it. This module measures that, for any number of models side by side (notebook 04
compares the model of notebook 03 before and after its post-training stage):

- :func:`loss_along_context`: the unweighted label cross entropy of DPD sequences of ``steps`` steps (synthesised
  for the purpose on tasks never trained on), averaged in log-spaced bins of the position;
- :func:`score_along_context`: online runs of ``steps`` steps from an empty memory, each finished episode's
  normalised score assigned to the log bin in which it ended, mean and 95% interval over tasks per bin (on
  bandits scored by the expected reward of the pulled arm, :mod:`.expected`: the reward noise of a single pull
  is as wide as the gap between the arms, and with a handful of tasks it left intervals of about +-2);
- :func:`entropy_along_context`: the entropy of the model's action distribution at every step of those runs, per
  bin (the paper's "explore, then exploit": high early in a new task, falling as the model settles).

Bins: :func:`~omnirl_core.evaluation.incontext.log_edges`, the in-context measure's octaves of 1..T.
:func:`long_context_spread` measures each model in a process of its own (a GPU each, or a CPU core each): the
report is the one :func:`long_context_report` gives in one process, model for model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..synthesis import BOUNDARY, LABEL_MASKED, DatasetConfig, synthesize_shard
from ..training.losses import position_loss
from ..workbook.config import load_config
from .agents import OmniRLAgent
from .config import LongContextConfig
from .expected import expected_reward_suite, is_bandit
from .incontext import binned_scores, log_edges, mean_ci
from .runs import RunResult, run_agent
from .suites import Suite

LOSS_SEED = 9_000_001
"""Seed of the synthesised loss sequences: apart from every training dataset's seed in params/."""
READABLE_HALF_WIDTH = 0.25
"""Widest mean half-interval (normalised score) at which the score curve still tells models apart."""


def loss_sequences(cfg: LongContextConfig, ns: int, na: int) -> list[dict]:
    """Batches (one per sequence, [1, T] tensors) of DPD sequences of ``cfg.steps`` steps on unseen tasks."""
    return dpd_sequences(cfg.steps, cfg.loss_sequences, ns, na)


def dpd_sequences(steps: int, n: int, ns: int, na: int) -> list[dict]:
    """``n`` DPD sequences of ``steps`` steps on unseen ``ns`` x ``na`` AnyMDP tasks (seed :data:`LOSS_SEED`), each
    a batch of [1, T] tensors with the label and its mask: the sequences every loss along the context is read on."""
    dcfg = load_config(DatasetConfig, {"seed": LOSS_SEED, "ns": ns, "na": na, "seq_len": steps,
                                       "n_sequences": n, "sequences_per_shard": n, "batch_size": n})
    d = synthesize_shard(dcfg, 0)
    out = []
    for b in range(n):
        row = {k: torch.from_numpy(np.asarray(d[k][b : b + 1], dtype=np.int64)) for k in ("obs", "tag", "action")}
        row["reward"] = torch.from_numpy(d["reward"][b : b + 1].astype(np.float32))
        label = d["label"][b : b + 1].astype(np.int64)
        row["label"] = torch.from_numpy(label)
        row["label_mask"] = torch.from_numpy((label != LABEL_MASKED) & (d["behaviour"][b : b + 1] != BOUNDARY))
        out.append(row)
    return out


def loss_along_context(model, batches: list[dict], chunk_len: int, edges: np.ndarray) -> dict[str, list]:
    """Mean label cross entropy per bin of ``edges`` (labelled steps only), with each bin's geometric centre."""
    res = position_loss(model, batches, chunk_len, edges=edges)
    return {"position": _centres(edges), "loss": res["loss"], "edges": edges.tolist()}


def score_along_context(result: RunResult, edges: np.ndarray) -> dict[str, Any]:
    """Per log bin of the run's steps: mean normalised score of the episodes that ended in it, averaged per task
    then over tasks, with a 95% interval (tasks without an episode ending in a bin are left out of that bin), and
    the in-context gain, last bin - first, over the tasks scored in both (:mod:`.incontext`'s measure)."""
    per_task = binned_scores(result, edges)  # [tasks, bins]
    rows = []
    for column in per_task.T:
        kept = column[np.isfinite(column)]
        rows.append(mean_ci(kept) + [int(kept.size)] if kept.size else [np.nan, np.nan, np.nan, 0])
    arr = np.array(rows, dtype=float)
    both = np.isfinite(per_task[:, 0]) & np.isfinite(per_task[:, -1])
    return {"position": _centres(edges), "score": arr[:, 0].tolist(), "low": arr[:, 1].tolist(),
            "high": arr[:, 2].tolist(), "n_tasks": arr[:, 3].astype(int).tolist(), "edges": edges.tolist(),
            "gain": mean_ci(per_task[both, -1] - per_task[both, 0]), "last_per_task": per_task[:, -1].tolist()}


class _EntropyRecorder(OmniRLAgent):
    """OmniRL acting as usual, keeping the entropy (nats) of the distribution each step's action was drawn from."""

    def reset(self, suite, seeds):
        super().reset(suite, seeds)
        self.entropy: list[np.ndarray] = []

    def act(self, obs):
        actions = super().act(obs)
        p = self.last_probs
        self.entropy.append(-(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1))
        return actions


def entropy_along_context(entropy: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Mean policy entropy [B, T] per log bin of the run's steps, averaged per run then over runs (95% interval).
    The paper's reading: high while the model explores a new task, falling as it exploits what it found."""
    rows = [mean_ci(entropy[:, a:z].mean(axis=1)) for a, z in zip(edges[:-1], edges[1:])]
    arr = np.array(rows, dtype=float)
    return {"position": _centres(edges), "entropy": arr[:, 0].tolist(), "low": arr[:, 1].tolist(),
            "high": arr[:, 2].tolist(), "edges": edges.tolist()}


def long_context_report(cfg: LongContextConfig, models: dict[str, Any], suite: Suite, *, temperature: float,
                        seed: int = 0, device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Both curves for every model in ``models`` (name -> loaded OmniRL), on the same sequences and tasks."""
    edges = log_edges(cfg.steps, cfg.bins)
    batches = loss_sequences(cfg, suite.n_obs, suite.na)
    scored = expected_reward_suite(suite) if is_bandit(suite) else suite  # the same runs, less noisy scores
    report: dict[str, Any] = {"steps": cfg.steps, "suite": suite.name, "n_tasks": suite.num_envs,
                              "loss_sequences": cfg.loss_sequences, "models": {},
                              "reward": "expected" if scored is not suite else "sampled"}
    for name, model in models.items():
        agent = _EntropyRecorder(model, temperature, "constant", device)
        result = run_agent(scored, agent, n_episodes=cfg.steps, max_steps=cfg.steps, seed=seed, progress=progress)
        entropy = np.stack(agent.entropy, axis=1)[:, : cfg.steps]  # [B, T]: one value per acting step
        score = score_along_context(result, edges)
        report["models"][name] = {"loss": loss_along_context(model, batches, cfg.chunk_len, edges),
                                  "score": score, "gain": score["gain"],
                                  "entropy": entropy_along_context(entropy, edges)}
    return report


def long_context_spread(cfg: LongContextConfig, checkpoints: dict[str, str | Path], out_dir: str | Path, *,
                        temperature: float, seed: int = 0, device: str = "cpu", slots: Sequence[int | None] = (None,),
                        torch_threads: int | None = 1, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """:func:`long_context_report` for the models in ``checkpoints`` (name -> model file), each model in a process
    of its own on one slot of ``slots`` (:func:`~omnirl_core.workbook.devices.slots`: GPUs, or CPU cores), on the
    suite's first ``cfg.n_tasks`` tasks, torch on ``torch_threads`` threads in each (None: torch's default). Job
    files and logs in ``out_dir``; the models keep the order given."""
    from ..workbook.devices import run_on_devices

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    code = "import sys; from omnirl_core.evaluation.long_context import _report_file; _report_file(sys.argv[1])"
    jobs = []
    for i, (name, path) in enumerate(checkpoints.items()):
        job, result = folder / f"model{i}.job.json", folder / f"model{i}.json"
        result.unlink(missing_ok=True)
        job.write_text(json.dumps({"config": asdict(cfg), "name": name, "checkpoint": str(path), "result": str(result),
                                   "temperature": float(temperature), "seed": int(seed), "device": device,
                                   "threads": torch_threads}))
        jobs.append((f"long context {name}", [sys.executable, "-c", code, str(job)], folder / f"model{i}.log"))
    run_on_devices(jobs, slots, log=log)
    parts = [json.loads((folder / f"model{i}.json").read_text()) for i in range(len(jobs))]
    report = {**parts[0], "models": {}}
    for part in parts:
        report["models"].update(part["models"])
    return report


def _report_file(job_path: str) -> None:
    """The work of one process of :func:`long_context_spread`: one model's report, written to the job's result."""
    import torch

    from ..workbook import load_config
    from .models import load_model
    from .suites import build_suite

    job = json.loads(Path(job_path).read_text())
    cfg = load_config(LongContextConfig, job["config"])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    model = load_model(job["checkpoint"], device=job["device"])
    report = long_context_report(cfg, {job["name"]: model}, build_suite(cfg.suite, cfg.n_tasks),
                                 temperature=job["temperature"], seed=job["seed"], device=job["device"])
    tmp = Path(job["result"] + ".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(job["result"])


def score_half_width(score: dict[str, Any]) -> float:
    """Mean half-width of the score's 95% intervals over the bins that have one (NaN if none)."""
    half = (np.asarray(score["high"], dtype=float) - np.asarray(score["low"], dtype=float)) / 2
    half = half[np.isfinite(half)]
    return float(half.mean()) if half.size else float("nan")


def readable(report: dict[str, Any]) -> bool:
    """Whether every model's score intervals are narrow enough to read (:data:`READABLE_HALF_WIDTH`)."""
    widths = [score_half_width(c["score"]) for c in report["models"].values()]
    return bool(widths) and all(np.isfinite(w) and w <= READABLE_HALF_WIDTH for w in widths)


def _centres(edges: np.ndarray) -> list[float]:
    """Geometric centre of each bin, in steps from 1 (a bin starting at position 0 starts at step 1)."""
    lo, hi = np.maximum(edges[:-1], 1), edges[1:]
    return np.sqrt(lo * hi).tolist()
