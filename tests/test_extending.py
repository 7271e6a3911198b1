"""Extending without editing the package: a suite and a backbone registered by a module of one's own
(tests/extending_example.py), accepted by name everywhere, run through the real command lines."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from omnirl_core.evaluation import (
    SUITE_NAMES,
    EvaluationConfig,
    build_suite,
    incontext,
    register_suite,
    suite_spec,
    task_suite,
    unregister_suite,
)
from omnirl_core.model import BACKBONES, ModelConfig, check_block_contract, unregister_backbone
from omnirl_core.studies import ablations as ab
from omnirl_core.studies import cross_suite as xs
from omnirl_core.workbook import ConfigError, load_config
from omnirl_core.workbook.plugins import PLUGINS_ENV, load_plugins

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PLUGIN = "extending_example"


@pytest.fixture
def example():
    """The plug-in imported in this process (registering its suite and backbone), removed again afterwards."""
    sys.modules.pop(PLUGIN, None)
    yield importlib.import_module(PLUGIN)  # tests/ is on sys.path under pytest
    unregister_suite("toy_chain")
    unregister_backbone("toy_gru")
    sys.modules.pop(PLUGIN, None)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", PLUGINS_ENV: PLUGIN,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}


def test_registered_names_are_accepted_everywhere(example):
    assert "toy_chain" in SUITE_NAMES and "toy_gru" in BACKBONES
    suite = build_suite("toy_chain", 3)
    assert (suite.n_obs, suite.na, suite.num_envs, suite.reference) == (3, 2, 3, "exact")
    assert suite.r_oracle[0] == pytest.approx(1.0) and suite.valid.all()
    load_config(EvaluationConfig, {"suites": ["toy_chain", "anymdp_1"]})
    load_config(ab.AblationConfig, ROOT / "params/quick/05_ablations.yaml", overrides={"also_suites": ["toy_chain"]})
    incontext.check_suite_name("toy_chain")
    assert ModelConfig(backbone="toy_gru").resolved_head_dim == 8
    load_config(ModelConfig, {"backbone": "toy_gru"})
    check_block_contract("toy_gru")
    with pytest.raises(ValueError, match="'toy_chain' is registered already; pass replace=True"):
        register_suite("toy_chain", example.toy_chain, n_obs=3, na=2)
    register_suite("toy_chain", example.toy_chain, n_obs=3, na=2, replace=True)


def test_unregistered_names_are_refused_with_the_registered_ones_listed():
    assert "toy_chain" not in SUITE_NAMES
    with pytest.raises(ConfigError, match="'toy_gru' is not allowed: choose one of 'rwkv7', 'gated_deltanet'"):
        load_config(ModelConfig, {"backbone": "toy_gru"})
    with pytest.raises(ConfigError, match="toy_chain"):
        load_config(EvaluationConfig, {"suites": ["toy_chain"]})
    with pytest.raises(ValueError, match="unknown suite 'toy_chain'; choose one of anymdp_1, "):
        build_suite("toy_chain", 2)


def test_studies_accept_a_registered_suite_and_skip_one_with_more_actions_than_the_model():
    quick = ROOT / "params/quick/05_ablations.yaml"
    assert xs.suite_fit(SimpleNamespace(n_obs=16, na=6), 16, 5) == "the model takes at most 5 actions, the suite has 6"
    assert xs.suite_fit(SimpleNamespace(n_obs=16, na=2), 16, 5) == ""  # fewer actions: a -> a mod 2
    with pytest.raises(ConfigError, match="wide"):  # not registered: refused
        load_config(ab.AblationConfig, quick, overrides={"also_suites": ["wide"]})
    register_suite("wide", lambda n, **_: task_suite("wide", []), n_obs=4, na=6)
    try:
        cfg = load_config(ab.AblationConfig, quick, overrides={"also_suites": ["wide"]})
        assert cfg.also_suites == ["wide"] and suite_spec("wide").na == 6
        # decided from the registered counts, without building the suite (its builder could not build it)
        folder = Path("/nonexistent")
        assert xs.suites_to_measure(cfg, "tags", folder, SimpleNamespace(ns_max=16, na=5)) == []
        assert xs.suites_to_measure(cfg, "tags", folder, SimpleNamespace(ns_max=16, na=6)) == ["wide"]
    finally:
        unregister_suite("wide")


def test_a_builder_must_build_what_it_registered(example):
    register_suite("toy_chain", example.toy_chain, n_obs=4, na=2, replace=True)
    with pytest.raises(ValueError, match="registered as 'toy_chain' with 4 and 2"):
        build_suite("toy_chain", 2)


def test_a_plug_in_that_does_not_import_is_named(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "no_such_plugin_module")
    with pytest.raises(ValueError, match="OMNIRL_PLUGINS: plug-in module 'no_such_plugin_module' cannot be imported"):
        load_plugins()
    monkeypatch.delenv(PLUGINS_ENV)
    assert load_plugins() == []


def test_plug_ins_train_and_evaluate_through_the_command_lines(tmp_path):
    """OMNIRL_PLUGINS: a toy GRU backbone trained for a few iterations by ``python -m omnirl_core.training``, then
    evaluated on the toy suite by ``python -m omnirl_core.evaluation --suite toy_chain`` (both processes import
    the plug-in from the environment variable; the checkpoint names the backbone)."""
    cfg = {"seed": 0, "steps": 3, "chunk_len": 16,
           "model": {"backbone": "toy_gru", "layout": "compact", "ns_max": 8, "na": 5, "hidden_size": 16,
                     "num_layers": 1, "intermediate_size": 16, "backend": "torch"},
           "data": {"batch_size": 2, "seq_len": 32, "ns": 8, "na": 5, "episode_len": 15},
           "optim": {"lr": 3e-3, "warmup_steps": 1}, "loss": {"ramp_steps": 16}, "eval": {"position_bins": 4},
           "log_every": 1, "checkpoint_every": 3}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "omnirl_core.training", str(tmp_path / "train.yaml"), "--out",
                            str(run), "--no-progress"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=120)
    assert train.returncode == 0, train.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["backbone"] == "toy_gru"
    out = tmp_path / "gain.json"
    ev = subprocess.run([sys.executable, "-m", "omnirl_core.evaluation", str(run / "model.safetensors"), "--suite",
                         "toy_chain", "--steps", "24", "--n-tasks", "3", "--bins", "2", "--tql", "--out", str(out)],
                        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    report = json.loads(out.read_text())
    assert report["suite"] == "toy_chain" and report["n_tasks"] == 3
    assert {"omnirl", "tql_ucb_c0.1"} <= set(report), list(report)
    # without the plug-in the same command refuses the name, listing the registered suites
    bare = {k: v for k, v in _env().items() if k != PLUGINS_ENV}
    ev = subprocess.run([sys.executable, "-m", "omnirl_core.evaluation", "--suite", "toy_chain", "--tql"],
                        cwd=tmp_path, env=bare, capture_output=True, text=True, timeout=60)
    assert ev.returncode == 2 and "--suite 'toy_chain': unknown suite; choose one of anymdp_1" in ev.stderr
