"""A rehearsal of the 8-GPU node on this CPU: the paper profile itself, shrunk only by ``--set`` overrides (sizes,
steps), run by papermill through all five notebooks, with 2 gloo processes standing in for 8 NCCL GPUs.

02 writes paper-shaped datasets (D_Large's ns in [16, 128]); 03 trains on 02's D_Large under torchrun in the paper
token layout, then post-trains on D_Long; 04 evaluates 03's checkpoint
online, offline and by imitation; 05 runs two variants and measures 03's model beside them. No path is edited:
every notebook finds what the one before it wrote in the run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SHRINK = {
    "01": ["stats_ns=[1, 16]", "stats_tasks_per_ns=2", "timing_ns=[16]", "timing_repeats=1", "play_steps=20"],
    "02": [f"datasets.{name}.{key}" for name in ("d_small", "d_large")
           for key in ("n_sequences=8", "seq_len=256", "sequences_per_shard=4", "batch_size=4")]
          + [f"datasets.d_long.{key}" for key in ("n_sequences=4", "seq_len=1024", "sequences_per_shard=2",
                                                   "batch_size=2")]
          + ["workers=2", "show_steps=100", "loader_batch=2", "loader_chunk=128", "curve_bins=4"],
    "03": ["steps=40", "chunk_len=128", "model.hidden_size=32", "model.num_layers=2", "model.intermediate_size=64",
           "model.head_dim=16", "model.chunk_size=16", "data.batch_size=2", "data.seq_len=256", "eval.every=20",
           "eval.batches=1", "eval.position_bins=4", "checkpoint_every=2", "log_every=1", "bf16=false",
           "device=cpu", "torch_threads=1", "launch.nproc_per_node=2", "launch.poll_seconds=0.5",
           "post_training.steps=2", "post_training.seq_len=512", "post_training.warmup_steps=1",
           "model.backend=torch"],  # the profile asks for fla's Triton kernels, which need a GPU
    "04": ["suites=[anymdp_16]", "n_tasks=2", "n_episodes=8", "tql_eval_every=4", "agents=[random, oracle, omnirl]",
           "demo_episodes=2", "device=cpu", "pendulum_samples=10", "pendulum_reference_episodes=2",
           "incontext.suites=[anymdp_16]", "incontext.n_tasks=2", "incontext.steps=64", "incontext.bins=3",
           "long_context.steps=256", "long_context.n_tasks=2", "long_context.loss_sequences=1",
           "long_context.bins=4", "long_context.chunk_len=128"],
    "05": ["run=[tags]", "seeds=2", "eval_tasks=2", "eval_steps=400", "loss_sequences=2", "tql=false", "workers=1",
           "torch_threads=1",
           "dataset.n_sequences=8", "dataset.seq_len=256", "dataset.sequences_per_shard=4", "dataset.batch_size=4",
           "training.steps=2", "training.chunk_len=128", "training.model.hidden_size=32",
           "training.model.num_layers=2", "training.model.intermediate_size=64", "training.model.head_dim=16",
           "training.data.batch_size=2", "training.data.seq_len=256", "training.bf16=false",
           "training.model.backend=torch", "training.device=cpu", "training.checkpoint_every=2",
           "also_suites=[frozenlake, pendulum_g9.8]", "pendulum_samples=10", "pendulum_reference_episodes=2"],
}
SHRINK_STEMS = ("01_tasks", "02_synthesis", "03_training", "04_evaluation", "05_ablations")


def workbook(out: Path, *only: str):
    sets = [f"{nb}:{entry}" for nb in (only or SHRINK) for entry in SHRINK[nb]]
    cmd = [sys.executable, "-m", "omnirl_core.workbook", "run", "params/paper", "--run-name", "rehearsal",
           "--output-root", str(out), *[a for nb in only for a in ("--only", nb)],
           *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res


def test_paper_profile_runs_end_to_end_on_cpu_with_two_gloo_processes(tmp_path):
    run = tmp_path / "rehearsal"
    workbook(tmp_path, "01", "02", "03")
    for name, ns in (("d_small", {16}), ("d_large", None), ("d_long", None)):
        man = json.loads((run / "data" / name / "manifest.json").read_text())
        assert man["complete"] and man["seq_len"] == (1024 if name == "d_long" else 256)
        shard_ns = {s["ns"] for s in man["shards"]}
        assert shard_ns == ns if ns else all(16 <= n <= 128 for n in shard_ns)

    # 03 under torchrun (a kill and resume of the same launcher is tests/test_launch.py's, to the same weights)
    train_dir = run / "03_training" / "run"
    steps = [json.loads(line)["step"] for line in (train_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))  # one row per iteration
    logs = sorted(p.parent.name for p in (train_dir / "launch_logs").rglob("stderr.log"))
    assert set(logs) == {"0", "1"}  # two processes
    used = (train_dir / "launch.yaml").read_text()
    assert "layout: paper" in used and str(run / "data" / "d_large") in used
    # the post-training stage: D_Long, from the run's weights, under torchrun too
    post_dir = run / "03_training" / "post"
    post_used = (post_dir / "launch.yaml").read_text()
    assert str(run / "data" / "d_long") in post_used and str(train_dir / "model.safetensors") in post_used
    assert [json.loads(line)["step"] for line in (post_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    # 04 evaluates 03's checkpoint in the three modes; 05 two variants and 03's model beside them
    workbook(tmp_path, "04", "05")
    table = (run / "04_evaluation" / "table1.md").read_text()
    for suite in ("anymdp_16",):
        for agent in ("OmniRL", "OmniRL (offline)", "OmniRL (imitation)", "OmniRL (post-trained)",
                      "OmniRL (post-trained) (imitation)"):
            assert f"| {suite} | {agent} |" in table, (suite, agent, table)
    long = json.loads((run / "04_evaluation" / "long_context.json").read_text())
    assert set(long["models"]) == {"03_training/run/model.safetensors", "03_training/post/model.safetensors"}
    assert long["steps"] == 256 and all(len(m["loss"]["loss"]) == 4 for m in long["models"].values())
    summary = (run / "05_ablations" / "summary.md").read_text()
    assert "| tags | dpd |" in summary and "| tags | no_tags |" in summary and "| steps to 99% |" in summary
    assert (run / "05_ablations" / "context_loss.png").is_file()
    assert "OmniRL (notebook 03's model), reference" in summary
    variants = (run / "05_ablations" / "table1_variants.md").read_text()
    assert "| model | anymdp_16 | frozenlake | pendulum_g9.8 |" in variants and "| OmniRL without tags |" in variants
    assert "- pendulum_g9.8, DPD (OmniRL), OmniRL without tags: the model takes at most 16 observation ids" in variants

    # how the five executed notebooks read: every figure shown once, nothing stray, claims decided by the run
    from omnirl_core.workbook.audit import audit_run

    audits = audit_run(run)
    assert sorted(audits) == [f"{stem}.ipynb" for stem in SHRINK_STEMS]
    assert not any(audits.values()), audits
    assert json.loads((run / "04_evaluation" / "claims.json").read_text())
