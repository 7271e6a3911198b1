"""Bad input, as a new user would give it: ``workbook check`` runs every rule a run would run, and every command line
answers with one line naming the problem and exit code 2 (a traceback only with --debug or OMNIRL_DEBUG=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from omnirl_core.evaluation import incontext
from omnirl_core.studies import cli as studies_cli
from omnirl_core.synthesis import SynthesisConfig
from omnirl_core.synthesis import cli as synthesis_cli
from omnirl_core.training import WEIGHTS, train
from omnirl_core.training import cli as training_cli
from omnirl_core.workbook import ConfigError, load_config
from omnirl_core.workbook import cli as workbook_cli
from omnirl_core.workbook.errors import one_line
from omnirl_core.world import TasksConfig, sample_anymdp

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import TINY, tiny  # noqa: E402


def _yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and ": error: " in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------------------------------------- check = run rules
SMALL = {"seq_len": 64, "n_sequences": 4, "engine": "numpy"}


@pytest.mark.parametrize("dataset, key, allowed", [
    ({"ns": 100000}, "datasets.d.ns", "<= 65535"),
    ({"ns": 32, "ns_max": 16}, "datasets.d.ns_max", ">= ns (32)"),
    ({"task_source": "garnet", "ns": 1}, "datasets.d.ns", ">= 8 for Garnet tasks"),
    ({"mixture": {"learner_noise_range": [0.5, 0.1]}}, "datasets.d.mixture.learner_noise_range", "low <= high"),
    ({"mixture": {"mb_oracle_oracle_cap": [0.2, 0.0]}}, "datasets.d.mixture.mb_oracle_oracle_cap", "low <= high"),
    ({"ns": 4096, "n_sequences": 256, "sequences_per_shard": 256}, "datasets.d.sequences_per_shard",
     "GiB per worker"),
], ids=["ns 100000", "ns_max < ns", "garnet bandit", "reversed noise range", "reversed oracle cap", "memory"])
def test_dataset_rules_run_for_every_dataset_of_a_02_file(tmp_path, dataset, key, allowed):
    path = _yaml(tmp_path / "02_synthesis.yaml", {"datasets": {"d": {**SMALL, **dataset}}})
    with pytest.raises(ConfigError) as err:
        load_config(SynthesisConfig, path)
    assert err.value.key == key and allowed in str(err.value) and str(path) in str(err.value)


def test_check_reports_dataset_rules_with_the_file_and_key(tmp_path, capsys):
    params = tmp_path / "params"
    _yaml(params / "02_synthesis.yaml", {"datasets": {"d": {**SMALL, "ns": 32, "ns_max": 16}}})
    nb = tmp_path / "notebooks"
    nb.mkdir()
    (nb / "02_synthesis.py").write_text("# %%\n")
    assert workbook_cli.main(["check", str(params), "--notebooks-dir", str(nb)]) == 2
    _one_error_line(capsys, "02_synthesis.yaml", "'datasets.d.ns_max': 16 is not allowed: must be >= ns (32)")


def test_explorer_and_state_counts_are_bounded_up_front():
    with pytest.raises(ConfigError, match=r"'explorer_ns': 100000 is not allowed: must be <= 128"):
        load_config(TasksConfig, {"explorer_ns": 100000})
    with pytest.raises(ConfigError, match=r"'stats_ns\[1\]': 100000 is not allowed: .*GiB"):
        load_config(TasksConfig, {"stats_ns": [1, 100000]})


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_yaml_is_an_error_naming_the_file(tmp_path, text):
    path = _yaml(tmp_path / "03_training.yaml", text)
    from omnirl_core.training import TrainConfig

    with pytest.raises(ConfigError, match=rf"{path}.*the file is empty"):
        load_config(TrainConfig, path)
    assert load_config(TrainConfig, _yaml(tmp_path / "all_defaults.yaml", "{}\n")).steps == 100000  # explicit


def test_min_state_space_is_named_in_its_error():
    with pytest.raises(ValueError, match=r"invalid state count min_state_space=4: need min_state_space >= 8"):
        sample_anymdp(16, 5, seed=0, min_state_space=4)
    with pytest.raises(ValueError, match="min_state_space=32 exceeds ns=16"):
        sample_anymdp(16, 5, seed=0, min_state_space=32)


def test_one_line_joins_a_multi_line_message():
    err = ConfigError([("a", "bad"), ("b", "worse")], source="f.yaml")
    assert one_line(err) == "f.yaml: 2 problems: 'a': bad; 'b': worse"


# ---------------------------------------------------------------------------------------------- synthesis CLI
def test_synthesis_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = _yaml(tmp_path / "bad.yaml", {"datasets": {"d": {**SMALL, "sead": 1}}})
    assert synthesis_cli.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "bad.yaml", "unknown key 'datasets.d.sead'")
    good = _yaml(tmp_path / "good.yaml", {"datasets": {"d": SMALL}})
    assert synthesis_cli.main([str(good), "--out", str(tmp_path / "o"), "--only", "nosuch"]) == 2
    _one_error_line(capsys, "--only 'nosuch'", "it has d")
    assert synthesis_cli.main([str(good), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    _one_error_line(capsys, "--workers 0: must be >= 1")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as exc:  # a usage error: one line too
        synthesis_cli.main([str(good)])
    assert exc.value.code == 2
    _one_error_line(capsys, "--out")


@pytest.mark.slow
def test_debug_flag_and_environment_variable_show_the_traceback(tmp_path):
    bad = _yaml(tmp_path / "bad.yaml", {"datasets": {"d": {**SMALL, "ns": 4}}})
    cmd = [sys.executable, "-m", "omnirl_core.synthesis", str(bad), "--out", str(tmp_path / "o")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMNIRL_DEBUG", None)
    plain = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert "'datasets.d.ns': 4 is not allowed: must be 1 or >= 8" in plain.stderr
    debug = subprocess.run(cmd + ["--debug"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    envd = subprocess.run(cmd, env={**env, "OMNIRL_DEBUG": "1"}, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert envd.returncode == 1 and "Traceback" in envd.stderr


# ---------------------------------------------------------------------------------------------- training CLI
@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    return _yaml(tmp_path_factory.mktemp("cfg") / "03_training.yaml", {**TINY, "steps": 1})


def test_training_cli_reports_data_and_init_from_problems_in_one_line(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert training_cli.main([str(tiny_yaml), "--out", str(out), "--no-progress",
                              f"data.path={tmp_path / 'nosuch'}"]) == 2
    _one_error_line(capsys, "nosuch/manifest.json: missing (not a synthesised dataset folder)")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 100)
    assert training_cli.main([str(tiny_yaml), "--out", str(out), "--no-progress",
                              f"init_from={tmp_path / 'corrupt.safetensors'}"]) == 2
    _one_error_line(capsys, "init_from:", "corrupt.safetensors: not a readable checkpoint")
    assert not out.exists()  # nothing was written by a refused run


def test_training_cli_refuses_a_changed_resume_and_leaves_the_folder(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert training_cli.main([str(tiny_yaml), "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert training_cli.main([str(tiny_yaml), "--out", str(out), "--no-progress", "--resume", "steps=2",
                              "optim.lr=0.1"]) == 2
    _one_error_line(capsys, "optim.lr: checkpoint 0.003, now 0.1", "--allow-changes")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert training_cli.main([str(tiny_yaml), "--out", str(out), "--no-progress", "--resume", "steps=2",
                              "optim.lr=0.1", "--allow-changes"]) == 0


def test_training_cli_nan_stop_is_one_line_with_exit_3(tiny_yaml, tmp_path, capsys):
    assert training_cli.main([str(tiny_yaml), "--out", str(tmp_path / "r"), "--no-progress", "steps=4",
                              "max_bad_steps=2", "inject_nan_steps=[0,1]"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m omnirl_core.training: stopped: 2 consecutive")
    assert "No checkpoint was written" in err


# ---------------------------------------------------------------------------------------------- evaluation CLI
@pytest.mark.parametrize("args, needle", [
    (["--temperature", "0"], "--temperature 0: must be a finite number > 0"),
    (["--temperature", "-1"], "--temperature -1: must be a finite number > 0"),
    (["--steps", "0"], "--steps 0: must be >= --bins (6): every bin holds a step at least"),
    (["--bins", "1"], "--bins 1: must be >= 2 (the gain is the last bin minus the first)"),
    (["--n-tasks", "0"], "--n-tasks 0: must be >= 1"),
    (["--suite", "nosuch"], "--suite 'nosuch': unknown suite"),
    (["--suite", "anymdp_4"], "--suite 'anymdp_4': unknown suite"),
], ids=["temperature 0", "temperature -1", "steps 0", "bins 1", "n-tasks 0", "unknown suite", "anymdp_4"])
def test_evaluation_cli_refuses_bad_arguments_in_one_line(capsys, args, needle):
    assert incontext.main(["models/omnirl-tiny-bandit", *args]) == 2
    _one_error_line(capsys, needle)


def test_evaluation_cli_names_a_missing_model_folder_as_given(capsys):
    assert incontext.main(["models/nosuch", "--steps", "8"]) == 2
    err = _one_error_line(capsys, "models/nosuch: not a shipped model folder", "omnirl-tiny-bandit")
    assert "models/models" not in err
    assert incontext.main(["nosuch", "--steps", "8"]) == 2
    _one_error_line(capsys, "nosuch: not a shipped model folder")


def test_evaluation_cli_refuses_a_damaged_checkpoint_before_scoring(tmp_path, capsys):
    train(tiny(steps=1), tmp_path / "r", progress=False, hooks=[])
    path = tmp_path / "r" / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-64:] = b"\xff" * 64
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert incontext.main([str(path), "--suite", "anymdp_8", "--steps", "8", "--n-tasks", "2"]) == 2
    _one_error_line(capsys, "model.safetensors: the weights fail their checksum")


# ---------------------------------------------------------------------------------------------- studies and workbook
def test_studies_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = _yaml(tmp_path / "05.yaml", {"eval_suite": "anymdp_4"})
    assert studies_cli.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "05.yaml", "eval_suite")
    assert studies_cli.main([str(tmp_path / "missing.yaml")]) == 2
    _one_error_line(capsys, "missing.yaml: file not found")


def test_workbook_check_refuses_an_empty_yaml(tmp_path, capsys):
    params = tmp_path / "params"
    _yaml(params / "01_tasks.yaml", "")
    nb = tmp_path / "notebooks"
    nb.mkdir()
    (nb / "01_tasks.py").write_text("# %%\n")
    assert workbook_cli.main(["check", str(params), "--notebooks-dir", str(nb)]) == 2
    _one_error_line(capsys, "01_tasks.yaml", "the file is empty")
