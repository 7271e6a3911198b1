"""The typed configuration system: loading, every kind of error, dumping, describing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml

from omnirl_core.workbook import (
    STATE_COUNT,
    ConfigError,
    check,
    config_to_dict,
    describe,
    dump_config,
    field_docs,
    load_config,
    param,
    repo_root,
    validate_config,
)
from omnirl_core.workbook.registry import NOTEBOOK_CONFIGS
from omnirl_core.world import TasksConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class OptimConfig:
    lr: float = param(3e-4, gt=0)
    "Learning rate."
    betas: tuple[float, float] = (0.9, 0.99)
    "Adam betas."


@dataclass
class ModelConfig:
    backbone: str = param("rwkv7", choices=("rwkv7", "gated_deltanet", "gsa", "mamba2"))
    "Sequence-model backbone."
    layers: int = param(2, ge=1, le=64)
    "Number of blocks."
    optim: OptimConfig = param(OptimConfig())
    "Optimiser settings."


@dataclass
class DemoConfig:
    name: str
    "Run name (required)."
    seed: int = param(0, ge=0)
    "Base seed."
    scale: float = param(1.0, ge=0.0, le=10.0)
    "A float in [0, 10]."
    verbose: bool = False
    "Print more."
    mode: Literal["fast", "full"] = "fast"
    "Run mode."
    note: str | None = None
    "Optional note."
    ns: list[int] = param([1, 16], rule=STATE_COUNT, min_len=1)
    "State counts."
    widths: tuple[int, ...] = param((8, 16), ge=1)
    "Layer widths."
    model: ModelConfig = param(ModelConfig())
    "Model settings."

    def validate(self) -> None:
        check(self.scale <= 5.0 or self.mode == "full", "scale", self.scale, "<= 5 unless mode is 'full'")


def _err(data, cls=DemoConfig) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(cls, data)
    return info.value


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------
# loading and round trips
# ---------------------------------------------------------------------------------------------------


def test_defaults_and_nested_values(tmp_path):
    path = _write(
        tmp_path,
        "name: a\nscale: 2\nmode: full\nns: [1, 8]\nwidths: [4, 4, 4]\nmodel:\n  layers: 3\n  optim: {lr: 1e-3}\n",
    )
    cfg = load_config(DemoConfig, path)
    assert cfg.name == "a" and cfg.seed == 0
    assert cfg.scale == 2.0 and isinstance(cfg.scale, float)  # an int is accepted for a float
    assert cfg.mode == "full" and cfg.ns == [1, 8]
    assert cfg.widths == (4, 4, 4) and isinstance(cfg.widths, tuple)
    assert cfg.model.layers == 3 and cfg.model.backbone == "rwkv7"
    assert cfg.model.optim.lr == pytest.approx(1e-3)  # YAML 1.2 style exponent without a dot is a float
    assert cfg.model.optim.betas == (0.9, 0.99)


def test_round_trip_dump_load(tmp_path):
    cfg = load_config(DemoConfig, {"name": "rt", "note": "hi", "ns": [1, 32], "model": {"backbone": "gsa"}})
    out = dump_config(cfg, tmp_path / "sub" / "dumped.yaml", header="a header\nsecond line")
    text = out.read_text()
    assert text.startswith("# a header\n# second line\n")
    assert load_config(DemoConfig, out) == cfg
    assert yaml.safe_load(text) == config_to_dict(cfg)
    assert not [p for p in out.parent.iterdir() if p.name != "dumped.yaml"]  # no temp file left behind


def test_mutable_defaults_are_not_shared():
    a = load_config(DemoConfig, {"name": "a"})
    b = load_config(DemoConfig, {"name": "b"})
    a.ns.append(64)
    a.model.layers = 9
    assert b.ns == [1, 16] and b.model.layers == 2


def test_overrides_dotted_and_strings():
    cfg = load_config(DemoConfig, {"name": "o"}, overrides={"model.optim.lr": 0.5, "seed": 4})
    assert cfg.model.optim.lr == 0.5 and cfg.seed == 4
    cfg = load_config(DemoConfig, {"name": "o"}, overrides=["ns=[1, 64]", "model.backbone=mamba2", "verbose=true"])
    assert cfg.ns == [1, 64] and cfg.model.backbone == "mamba2" and cfg.verbose is True
    with pytest.raises(ConfigError, match="overrides seed=-1"):
        load_config(DemoConfig, {"name": "o"}, overrides={"seed": -1})


# ---------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------


def test_unknown_key_lists_valid_keys_and_suggests(tmp_path):
    path = _write(tmp_path, "name: x\nsead: 3\n", name="my_params.yaml")
    err = _err(path)
    msg = str(err)
    assert "my_params.yaml" in msg
    assert "unknown key 'sead'" in msg and "Did you mean 'seed'?" in msg
    for key in ("name", "seed", "scale", "verbose", "mode", "note", "ns", "widths", "model"):
        assert key in msg.split("Valid keys:")[1]
    assert err.key == "sead"


def test_unknown_nested_key_is_dotted():
    err = _err({"name": "x", "model": {"optim": {"lrr": 0.1}}})
    assert "unknown key 'model.optim.lrr'" in str(err)
    assert "Did you mean 'model.optim.lr'?" in str(err)
    assert "Valid keys in 'model.optim': lr, betas" in str(err)


def test_wrong_type_names_expected_and_received(tmp_path):
    path = _write(tmp_path, "name: x\nseed: three\n")
    msg = str(_err(path))
    assert str(path) in msg
    assert "'seed': expected int, got str 'three'" in msg


def test_float_for_int_rejected_and_int_for_float_accepted():
    assert "'seed': expected int, got float 1.5" in str(_err({"name": "x", "seed": 1.5}))
    assert load_config(DemoConfig, {"name": "x", "scale": 3}).scale == 3.0


@pytest.mark.parametrize("value", [1, 0, "yes", "true", None])
def test_bool_is_strict(value):
    msg = str(_err({"name": "x", "verbose": value}))
    assert "'verbose': expected bool (true or false)" in msg


def test_bool_is_not_an_int():
    assert "'seed': expected int, got bool True" in str(_err({"name": "x", "seed": True}))


def test_out_of_range_names_bound():
    assert "'seed': -1 is out of range: must be >= 0" in str(_err({"name": "x", "seed": -1}))
    assert "'model.layers': 65 is out of range: must be <= 64" in str(_err({"name": "x", "model": {"layers": 65}}))
    assert "'model.optim.lr': 0.0 is out of range: must be > 0" in str(
        _err({"name": "x", "model": {"optim": {"lr": 0}}})
    )


def test_choices_and_literal():
    msg = str(_err({"name": "x", "model": {"backbone": "lstm"}}))
    assert "'model.backbone': 'lstm' is not allowed: choose one of 'rwkv7', 'gated_deltanet', 'gsa', 'mamba2'" in msg
    msg = str(_err({"name": "x", "mode": "slow"}))
    assert "'mode': 'slow' is not allowed: choose one of 'fast', 'full'" in msg


def test_list_elements_are_checked_each():
    assert "'ns[1]': expected int, got str 'a'" in str(_err({"name": "x", "ns": [1, "a"]}))
    assert "'ns[1]': 4 is not allowed: must be 1 or >= 8" in str(_err({"name": "x", "ns": [1, 4]}))
    assert "'widths[2]': 0 is out of range: must be >= 1" in str(_err({"name": "x", "widths": [1, 2, 0]}))
    assert "'ns': expected list[int] (a YAML list), got int 16" in str(_err({"name": "x", "ns": 16}))
    assert "'ns': needs at least 1 item(s), got 0" in str(_err({"name": "x", "ns": []}))
    msg = str(_err({"name": "x", "model": {"optim": {"betas": [0.9]}}}))
    assert "'model.optim.betas': expected tuple[float, float] with exactly 2 items, got 1" in msg


def test_optional_accepts_null_and_checks_type():
    assert load_config(DemoConfig, {"name": "x", "note": None}).note is None
    assert "'note': expected str, got int 5" in str(_err({"name": "x", "note": 5}))


def test_nested_must_be_mapping():
    assert "'model': expected a mapping (ModelConfig), got int 3" in str(_err({"name": "x", "model": 3}))


def test_missing_required_field_named():
    msg = str(_err({}))
    assert "missing required key 'name' (str: Run name (required).)" in msg


def test_validate_hook_same_style(tmp_path):
    path = _write(tmp_path, "name: x\nscale: 7.5\n")
    err = _err(path)
    assert str(path) in str(err)
    assert "'scale': 7.5 is not allowed: must be <= 5 unless mode is 'full'" in str(err)
    assert err.key == "scale"
    assert load_config(DemoConfig, {"name": "x", "scale": 7.5, "mode": "full"}).scale == 7.5


def test_all_problems_reported_at_once():
    err = _err({"name": 1, "seed": -2, "bogus": 0})
    assert len(err.issues) == 3
    assert "3 problems" in str(err)


def test_file_problems(tmp_path):
    assert "missing.yaml: file not found" in str(_err(tmp_path / "missing.yaml"))
    bad = _write(tmp_path, "name: [unclosed\n", name="bad.yaml")
    assert "bad.yaml" in str(_err(bad)) and "invalid YAML" in str(_err(bad))
    dup = _write(tmp_path, "name: a\nseed: 1\nseed: 2\n", name="dup.yaml")
    assert "duplicate key 'seed'" in str(_err(dup))
    top = _write(tmp_path, "- 1\n- 2\n", name="top.yaml")
    assert "must be a mapping" in str(_err(top))


def test_validate_config_on_instances():
    cfg = DemoConfig(name="x")
    assert validate_config(cfg) is not cfg and validate_config(cfg) == cfg
    with pytest.raises(ConfigError, match="'seed': -5 is out of range"):
        validate_config(DemoConfig(name="x", seed=-5))


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------------
# help text
# ---------------------------------------------------------------------------------------------------


def test_field_docs_read_from_source():
    docs = field_docs(DemoConfig)
    assert docs["seed"] == "Base seed." and docs["model"] == "Model settings."
    assert set(field_docs(TasksConfig)) == {f for f in TasksConfig.__dataclass_fields__}


def test_describe_table():
    table = describe(DemoConfig)
    lines = table.splitlines()
    assert lines[0] == "| key | type | default | allowed | description |"
    row = next(line for line in lines if line.startswith("| `seed`"))
    assert "`int`" in row and "`0`" in row and ">= 0" in row and "Base seed." in row
    assert any(line.startswith("| `model.optim.lr`") and "> 0" in line for line in lines)
    assert any(line.startswith("| `name`") and "*required*" in line for line in lines)
    assert any(line.startswith("| `ns`") and "each 1 or >= 8" in line for line in lines)
    assert any(line.startswith("| `note`") and "str \\| None" in line for line in lines)
    assert any(line.startswith("| `mode`") and "one of 'fast', 'full'" in line for line in lines)


# ---------------------------------------------------------------------------------------------------
# the real parameter files
# ---------------------------------------------------------------------------------------------------


def test_tasks_config_defaults_and_rules():
    cfg = load_config(TasksConfig)
    assert cfg.stats_ns == [1, 16, 32] and cfg.explorer_ns == 16 and cfg.na == 5
    assert "'stats_ns[1]': 4 is not allowed: must be 1 or >= 8" in str(_err({"stats_ns": [1, 4]}, TasksConfig))
    assert "'explorer_ns': 2 is not allowed" in str(_err({"explorer_ns": 2}, TasksConfig))
    assert "'na': 1 is out of range: must be >= 2" in str(_err({"na": 1}, TasksConfig))


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_real_params_validate(profile):
    folder = ROOT / "params" / profile
    files = sorted(folder.glob("*.yaml"))
    assert files, f"no parameter files in {folder}"
    for path in files:
        cls = NOTEBOOK_CONFIGS.get(path.stem)
        assert cls is not None, f"{path.name} has no registered configuration class"
        load_config(cls, path)


def test_every_registered_notebook_has_params():
    for stem in NOTEBOOK_CONFIGS:
        for profile in ("quick", "paper"):
            assert (ROOT / "params" / profile / f"{stem}.yaml").is_file(), f"params/{profile}/{stem}.yaml missing"


def test_relative_config_path_falls_back_to_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # like a notebook opened in notebooks/
    assert repo_root() == ROOT
    cfg = load_config(TasksConfig, "params/quick/01_tasks.yaml")
    assert cfg.stats_tasks_per_ns >= 1


@pytest.mark.parametrize("module, name", [("omnirl_core.training", "TrainConfig"),
                                          ("omnirl_core.evaluation", "EvaluationConfig"),
                                          ("omnirl_core.studies.ablations", "AblationConfig"),
                                          ("omnirl_core.workbook.registry", "NOTEBOOK_CONFIGS")])
def test_every_module_imports_first_in_a_fresh_interpreter(module, name):
    """Notebooks import these first; the registry must not make them import each other in a cycle."""
    import subprocess
    import sys

    code = (f"from {module} import {name}\n"
            "from omnirl_core.workbook.registry import NOTEBOOK_CONFIGS as R\n"
            "print(sorted(R[k].__name__ for k in R))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "AblationConfig" in out.stdout and "TrainConfig" in out.stdout
