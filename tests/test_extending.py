"""Extending without editing the package: a suite, a backbone and a behaviour registered by a module of one's own
(tests/extending_example.py), accepted by name everywhere, run through the real command lines."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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
from omnirl_core.synthesis import (
    BEHAVIOURS,
    BOUNDARY,
    TAG_UNKNOWN,
    DatasetConfig,
    behaviour_weights,
    load_dataset_arrays,
    register_behaviour,
    synthesize_shard,
    unregister_behaviour,
)
from omnirl_core.synthesis.behaviours import behaviour_table
from omnirl_core.synthesis.schedules import draw_schedules
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
    unregister_behaviour("sticky_random")
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


def _dataset(mixture: dict | None = None, **kw) -> DatasetConfig:
    base = {"seed": 5, "ns": 8, "na": 4, "seq_len": 400, "n_sequences": 12, "sequences_per_shard": 12,
            "batch_size": 12, "mixture": {"seq_mask_prob": 0.0, "episode_mask_prob": 0.0, **(mixture or {})}}
    return load_config(DatasetConfig, {**base, **kw})


ONLY_STICKY = {"w_drift_random": 0.0, "w_model_based": 0.0, "w_q_learning": 0.0, "w_mb_oracle": [0.0] * 4,
               "w_noisy_oracle": [0.0, 0.0], "w_oracle": [0.0] * 3, "weights": {"sticky_random": 1.0}}


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_a_registered_behaviour_acts_by_its_own_rule_with_its_tag(example, engine, capsys):
    """Only the plug-in acts: every step is its, tagged 6, and it repeats its previous action 90% + 10% / na of
    the time (a uniform policy would 25%). The compiled engine runs it on the numpy path, says so once, and
    writes the numpy engine's bytes."""
    d = synthesize_shard(_dataset(ONLY_STICKY, engine=engine), 0)
    real = d["behaviour"] != BOUNDARY
    assert (d["behaviour"][real] == BEHAVIOURS.index("sticky_random")).all()
    assert (d["tag"][real] == 6).all()
    act = np.where(real, d["action"].astype(int), -1)
    pairs = [(a, b) for row in act for a, b in zip(row[:-1], row[1:]) if a >= 0 and b >= 0]
    repeat = np.mean([a == b for a, b in pairs])
    assert abs(repeat - (0.9 + 0.1 / 4)) < 0.03, repeat  # measured 0.93 over about 4,000 pairs
    said = capsys.readouterr().out
    if engine == "numba":
        assert said.count("sticky_random has no compiled path") == 1
        synthesize_shard(_dataset(ONLY_STICKY, engine=engine), 0)
        assert "no compiled path" not in capsys.readouterr().out  # once per process
        other = synthesize_shard(_dataset(ONLY_STICKY, engine="numpy"), 0)
        assert all(np.array_equal(d[k], other[k]) for k in d)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_adding_a_behaviour_shifts_no_other_draw(example, engine):
    """Registered with weight 0, the plug-in changes no byte of a dataset; with weight, the other behaviours'
    schedules and the learners' hyperparameters stay as they were (their streams are keyed by their names)."""
    unregister_behaviour("sticky_random")
    before = synthesize_shard(_dataset(engine=engine), 0)
    register_behaviour("sticky_random", example.sticky_random, tag=6)
    assert all(np.array_equal(before[k], v) for k, v in synthesize_shard(_dataset(engine=engine), 0).items())
    zero = synthesize_shard(_dataset({"weights": {"sticky_random": 0.0}}, engine=engine), 0)
    assert all(np.array_equal(before[k], v) for k, v in zero.items())
    weighted = _dataset({"weights": {"sticky_random": 0.3}}, engine=engine)
    some = synthesize_shard(weighted, 0)
    assert np.array_equal(before["learner_params"], some["learner_params"])
    seq, table = np.random.SeedSequence([5, 0]), behaviour_table()
    plain, with_it = (draw_schedules(table, behaviour_weights(c), before["learner_params"], c, 8, seq)
                      for c in (_dataset(engine=engine), weighted))
    others = [j for j, n in enumerate(table.names) if n != "sticky_random"]
    assert np.abs(plain[:, others]).sum() > 0 and np.array_equal(plain[:, others], with_it[:, others])
    # the same for a behaviour early in the registry (the first): a stream shared in id order would shift all
    without, first = (_dataset({"w_drift_random": w}, engine=engine) for w in (0.0, 0.1))
    a, b = (draw_schedules(table, behaviour_weights(c), before["learner_params"], c, 8, seq) for c in (without, first))
    assert np.abs(a[:, 1:]).sum() > 0 and np.array_equal(a[:, 1:], b[:, 1:])
    assert (some["behaviour"] == BEHAVIOURS.index("sticky_random")).any()
    assert not np.array_equal(before["action"], some["action"])


def test_a_behaviour_that_breaks_its_contract_is_named(example):
    register_behaviour("sticky_random", lambda ctx: np.full(ctx.states.size, ctx.na), tag=6, replace=True)
    with pytest.raises(ValueError, match="behaviour 'sticky_random': act returned actions outside 0 .. 3"):
        synthesize_shard(_dataset(ONLY_STICKY), 0)
    register_behaviour("sticky_random", lambda ctx: np.zeros(2, dtype=int), tag=6, replace=True)
    with pytest.raises(ValueError, match=r"act returned int64 \(2,\), expected integer actions of shape"):
        synthesize_shard(_dataset(ONLY_STICKY), 0)
    with pytest.raises(ValueError, match="tag must be an int in 0 .. 6"):
        register_behaviour("bad", example.sticky_random, tag=7)
    with pytest.raises(ValueError, match="'oracle_0.994' is built in and cannot be replaced"):
        register_behaviour("oracle_0.994", example.sticky_random, tag=3, replace=True)


def test_unregistered_names_are_refused_with_the_registered_ones_listed():
    assert "toy_chain" not in SUITE_NAMES
    with pytest.raises(ConfigError, match="'toy_gru' is not allowed: choose one of 'rwkv7', 'gated_deltanet'"):
        load_config(ModelConfig, {"backbone": "toy_gru"})
    with pytest.raises(ConfigError, match="toy_chain"):
        load_config(EvaluationConfig, {"suites": ["toy_chain"]})
    with pytest.raises(ValueError, match="unknown suite 'toy_chain'; choose one of anymdp_1, "):
        build_suite("toy_chain", 2)
    with pytest.raises(ConfigError, match="'mixture.weights.sticky_random': 'sticky_random' is not allowed: must be a "
                                          "registered behaviour: drift_random, "):
        _dataset({"weights": {"sticky_random": 1.0}})
    with pytest.raises(ConfigError, match=r"'mixture.weights.orcale_0.994': .* \(did you mean 'oracle_0.994'\?\)"):
        _dataset({"weights": {"orcale_0.994": 1.0}})


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


def test_a_plug_in_behaviour_synthesises_through_the_command_line(tmp_path):
    """``python -m omnirl_core.synthesis``: the plug-in is listed, a parameter file weighting it by name writes a
    dataset where it acts, and the dataset reads without the plug-in; without it the same file is refused before
    any work, naming the file and the key."""
    params = {"datasets": {"sticky": {"seed": 1, "ns": 8, "na": 3, "seq_len": 64, "n_sequences": 4,
                                      "sequences_per_shard": 4, "batch_size": 4,
                                      "mixture": {"weights": {"sticky_random": 0.5}}}}, "workers": 1}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "omnirl_core.synthesis"]
    listed = subprocess.run([*cmd, "--list-behaviours"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and "14  sticky_random" in listed.stdout, listed.stdout + listed.stderr
    res = subprocess.run([*cmd, "p.yaml", "--out", "data", "--no-progress"], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    arrays = load_dataset_arrays(tmp_path / "data" / "sticky")  # read without the plug-in: its code is not needed
    manifest = json.loads((tmp_path / "data" / "sticky" / "manifest.json").read_text())
    assert manifest["behaviours"][14] == "sticky_random"
    assert ((arrays["behaviour"] == 14) & (arrays["tag"] != TAG_UNKNOWN)).any()
    bare = {k: v for k, v in _env().items() if k != PLUGINS_ENV}
    res = subprocess.run([*cmd, "p.yaml", "--out", "data2"], cwd=tmp_path, env=bare, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and not (tmp_path / "data2").exists()
    assert "p.yaml (SynthesisConfig): 'datasets.sticky.mixture.weights.sticky_random': 'sticky_random' is not " \
           "allowed: must be a registered behaviour" in res.stderr, res.stderr
