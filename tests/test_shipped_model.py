"""The shipped OmniRL-tiny bandit model (models/omnirl-tiny-bandit) learns in context on fresh bandits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from omnirl_core.evaluation import OmniRLAgent, load_model, run_agent
from omnirl_core.model import ModelConfig
from omnirl_core.suites import task_suite, test_seed
from omnirl_core.tasks import sample_anymdp

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "omnirl-tiny-bandit"
WEIGHTS = MODEL_DIR / "model.safetensors"
N_TASKS, PULLS = 16, 200


def fresh_bandit_suite():
    # Test seeds live at TEST_SEED_OFFSET = 2**32 and above, outside every training seed; index 100_000+
    # also keeps them apart from the 64 tasks of the anymdp_1 evaluation suite (indices 0..63).
    tasks = [sample_anymdp(1, 5, seed=test_seed(0, 1, 100_000 + i)) for i in range(N_TASKS)]
    return task_suite("fresh_bandits", tasks)


def test_shipped_files_are_consistent():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 20 * 2**20
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    model = load_model(WEIGHTS, model_config=ModelConfig(**cfg["model"]))
    assert model.cfg.ns_max >= 1 and model.cfg.na == 5


def test_shipped_model_improves_within_a_run():
    torch.manual_seed(0)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(WEIGHTS)
        temperature = json.loads((MODEL_DIR / "config.json").read_text())["temperature"]
        suite = fresh_bandit_suite()
        with torch.no_grad():
            res = run_agent(suite, OmniRLAgent(model, temperature=temperature), PULLS, seed=12345)
    finally:
        torch.set_num_threads(old)
    s = res.scores[res.valid]
    assert s.shape == (N_TASKS, PULLS) and np.isfinite(s).all()
    q = PULLS // 4
    diff = s[:, -q:].mean(axis=1) - s[:, :q].mean(axis=1)  # per task: last quarter - first quarter
    se = diff.std(ddof=1) / np.sqrt(N_TASKS)
    # One-sided test at about the 5% level (t with 15 degrees of freedom: 1.75): the improvement must be
    # larger than sampling noise across the 16 tasks, not merely positive. Measured when shipped (seed 12345):
    # first quarter 0.49, last quarter 0.70, difference 0.21 with standard error 0.068 (t = 3.1); seeds 1 and 2
    # give t = 2.8 and 3.6, so the margin holds for other action streams too.
    assert diff.mean() - 1.75 * se > 0, (diff.mean(), se)
    assert s[:, -q:].mean() > 0.5
