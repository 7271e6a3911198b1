"""Long-context evaluation: log-spaced bins, the loss per bin equal to the per-step losses averaged by hand, the
score per bin from episode ends, and a shipped model whose score rises along a long run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnirl_core import views
from omnirl_core.evaluation import build_suite, load_shipped
from omnirl_core.evaluation.long_context import (
    LongContextConfig,
    log_edges,
    long_context_report,
    loss_along_context,
    loss_sequences,
    score_along_context,
)
from omnirl_core.evaluation.runs import RunResult
from omnirl_core.workbook import load_config

torch.set_num_threads(1)


@pytest.mark.parametrize("T,bins", [(16, 4), (1000, 10), (1 << 20, 20), (5, 12)])
def test_log_edges_cover_the_context_in_increasing_log_spaced_bins(T, bins):
    e = log_edges(T, bins)
    assert e[0] == 0 and e[-1] == T and (np.diff(e) > 0).all() and len(e) - 1 <= bins
    if T > 100 * bins:  # equal ratios between successive edges, where rounding to whole steps does not matter
        big = e[1:-1] >= 50
        ratios = (e[2:] / e[1:-1])[big]
        assert ratios.size >= bins // 2 and np.allclose(ratios, ratios.mean(), rtol=0.01)


def test_score_per_bin_assigns_each_episode_to_the_bin_where_it_ended():
    # two tasks; oracle 1, random 0, so the score is the return
    steps = np.array([[1.0, 3.0, 10.0, 60.0], [2.0, 50.0, 70.0, np.nan]])
    returns = np.array([[0.0, 0.2, 0.4, 1.0], [0.3, 0.6, 0.8, np.nan]])
    res = RunResult("s", "a", returns, steps, np.ones(2), np.zeros(2), np.ones(2, bool))
    out = score_along_context(res, np.array([0, 4, 16, 100]))
    # bin (0, 4]: task 0 -> mean(0, 0.2), task 1 -> 0.3; bin (4, 16]: task 0 only; bin (16, 100]: 1.0 and 0.7
    np.testing.assert_allclose(out["score"], [(0.1 + 0.3) / 2, 0.4, (1.0 + 0.7) / 2])
    assert out["n_tasks"] == [2, 1, 2]
    assert out["low"][0] < out["score"][0] < out["high"][0] and np.isnan(out["low"][1])


def test_loss_per_log_bin_equals_per_step_losses_averaged_by_hand():
    model, _ = load_shipped("models/omnirl-tiny-bandit")
    cfg = load_config(LongContextConfig, {"steps": 600, "loss_sequences": 2, "bins": 5, "chunk_len": 128})
    batches = loss_sequences(cfg, ns=1, na=5)
    edges = log_edges(cfg.steps, cfg.bins)
    got = loss_along_context(model, batches, cfg.chunk_len, edges)["loss"]
    with torch.no_grad():  # one pass over the whole sequence, no chunks
        ce, mask = [], []
        for b in batches:
            logits, _, _ = model(b["obs"], b["tag"], b["action"], b["reward"])
            ce.append(F.cross_entropy(logits[0], b["label"][0].clamp(0, 4), reduction="none"))
            mask.append(b["label_mask"][0])
    ce, mask = torch.stack(ce), torch.stack(mask)
    want = [float((ce[:, a:z] * mask[:, a:z]).sum() / mask[:, a:z].sum()) if mask[:, a:z].any() else np.nan
            for a, z in zip(edges[:-1], edges[1:])]
    np.testing.assert_allclose(got, want, rtol=1e-4)  # NaN where a bin holds only boundary steps
    # bandits: position 1 is always an episode's boundary step, so a bin of position 1 alone has no label
    alone = loss_along_context(model, batches, cfg.chunk_len, np.array([0, 1, 2, cfg.steps]))["loss"]
    assert np.isfinite(alone[0]) and np.isnan(alone[1]) and np.isfinite(alone[2])


def test_the_shipped_bandit_model_scores_higher_late_in_a_long_run_than_early():
    model, info = load_shipped("models/omnirl-tiny-bandit")
    cfg = load_config(LongContextConfig, {"enabled": True, "steps": 1024, "suite": "anymdp_1", "n_tasks": 16,
                                          "loss_sequences": 1, "bins": 11, "chunk_len": 256})
    suite = build_suite("anymdp_1", cfg.n_tasks)
    rep = long_context_report(cfg, {"bandit": model}, suite, temperature=info.temperature)
    score, loss, ent = (rep["models"]["bandit"][k] for k in ("score", "loss", "entropy"))
    assert len(score["score"]) == len(loss["loss"]) == len(ent["entropy"]) == len(log_edges(1024, 11)) - 1
    assert score["score"][-1] > score["score"][0] + 0.2, score  # it learns the arms within the run
    assert loss["loss"][-1] < loss["loss"][0], loss
    # explore, then exploit: near-uniform at first (log 5 = 1.61 nats), far more decided late in the run
    assert ent["entropy"][0] > 1.2 and ent["entropy"][-1] < ent["entropy"][0] - 0.4, ent
    fig = views.plot_long_context(rep)
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3


@pytest.mark.slow
def test_models_measured_in_processes_of_their_own_give_the_report_of_one_process(tmp_path):
    from omnirl_core.evaluation import load_model
    from omnirl_core.evaluation.long_context import long_context_spread

    cfg = load_config(LongContextConfig, {"enabled": True, "steps": 96, "suite": "anymdp_1", "n_tasks": 3,
                                          "loss_sequences": 1, "bins": 4, "chunk_len": 32})
    # two different models, so that a mix-up of names and results shows
    paths = {"bandit": "models/omnirl-tiny-bandit/model.safetensors",
             "anymdp16": "models/omnirl-tiny-anymdp16/model.safetensors"}
    logs: list[str] = []
    spread = long_context_spread(cfg, paths, tmp_path, temperature=0.7, seed=3, slots=[None, None],
                                 log=logs.append)
    here = long_context_report(cfg, {k: load_model(p) for k, p in paths.items()}, build_suite("anymdp_1", 3),
                               temperature=0.7, seed=3)
    assert sorted(line for line in logs if "started" in line) == ["long context anymdp16: started on a CPU process",
                                                                  "long context bandit: started on a CPU process"]
    assert list(spread["models"]) == list(paths)
    def plain(report):  # JSON as the notebook writes it, NaN (a bin without labels) as None
        return json.loads(json.dumps(report).replace("NaN", "null"))

    assert plain(spread) == plain(here)  # the same numbers, model for model
    assert spread["models"]["bandit"] != spread["models"]["anymdp16"]
