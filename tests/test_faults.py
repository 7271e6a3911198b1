"""Nothing wrong is reported as right: checkpoints that fail their checksum, models that output NaN, invalid
temperatures, refused runs that must leave their folder as it was, resumes that would not be exact, NaN stops,
datasets whose manifest lies, and two writers of one dataset folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from omnirl_core.evaluation import CheckpointConfigError, OmniRLAgent, load_model, load_shipped, run_agent, task_suite
from omnirl_core.evaluation.agents import NonFiniteOutputError
from omnirl_core.synthesis import (
    DatasetConfig,
    DatasetError,
    SequenceDataset,
    SynthesisError,
    load_manifest,
    synthesize,
)
from omnirl_core.training import (
    CHECKPOINT,
    WEIGHTS,
    CheckpointMismatchError,
    NonFiniteLossError,
    load_checkpoint,
    train,
)
from omnirl_core.training.checkpoints import tensor_digest
from omnirl_core.workbook import load_config
from omnirl_core.world import sample_anymdp

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import tiny  # noqa: E402  (the tiny training configuration of the training tests)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished tiny training run (checkpoint.pt and model.safetensors with checksums)."""
    out = tmp_path_factory.mktemp("run") / "r"
    train(tiny(steps=2), out, progress=False, hooks=[])
    return out


def _suite():
    return task_suite("bandits", [sample_anymdp(1, 5, seed=i) for i in range(4)])


# ---------------------------------------------------------------------------------------------- evaluation
def test_flipped_bytes_in_model_safetensors_fail_the_checksum(run_dir, tmp_path):
    bad = tmp_path / WEIGHTS
    data = bytearray((run_dir / WEIGHTS).read_bytes())
    data[-64:] = b"\xff" * 64  # 16 float32 weights become NaN
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointConfigError, match="fail their checksum"):
        load_model(bad)
    # the same bytes with a checksum recomputed over them (a forged file): the NaN weights are still refused
    weights = load_file(str(bad))
    meta = {"model_config": json.dumps(load_checkpoint(run_dir / CHECKPOINT)["model_config"]),
            "weights_sha256": tensor_digest(weights)}
    save_file(weights, str(tmp_path / "forged.safetensors"), metadata=meta)
    with pytest.raises(CheckpointConfigError, match="NaN or infinite"):
        load_model(tmp_path / "forged.safetensors")


def test_flipped_bytes_in_checkpoint_pt_fail_the_checksum(run_dir, tmp_path):
    ckpt = torch.load(run_dir / CHECKPOINT, weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name].view(-1)[0] += 1.0  # one weight altered after the file was written
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointMismatchError, match="checksum"):
        load_checkpoint(tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointConfigError, match="checksum"):
        load_model(tmp_path / CHECKPOINT)


def test_files_without_a_checksum_are_refused_unless_explicitly_accepted(run_dir, tmp_path, capsys):
    weights = load_file(str(run_dir / WEIGHTS))
    meta = {"model_config": json.dumps(load_checkpoint(run_dir / CHECKPOINT)["model_config"])}
    save_file(weights, str(tmp_path / "old.safetensors"), metadata=meta)  # as written before checksums
    with pytest.raises(CheckpointConfigError, match="no checksum recorded.*allow_unverified"):
        load_model(tmp_path / "old.safetensors")
    model = load_model(tmp_path / "old.safetensors", allow_unverified=True)
    assert "used unverified" in capsys.readouterr().err and model.cfg.na == 5
    ckpt = torch.load(run_dir / CHECKPOINT, weights_only=True)
    del ckpt["checksums"]
    ckpt["version"] = 1
    torch.save(ckpt, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointMismatchError, match="no checksum recorded"):
        load_checkpoint(tmp_path / CHECKPOINT)
    assert load_checkpoint(tmp_path / CHECKPOINT, allow_unverified=True)["step"] == 2


def test_nan_output_stops_the_evaluation_naming_the_checkpoint(run_dir):
    model = load_model(run_dir / WEIGHTS)
    with torch.no_grad():  # weights damaged after loading: every logit becomes NaN
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError, match=rf"{WEIGHTS}.*non-finite logits"):
        run_agent(_suite(), OmniRLAgent(model, temperature=1.0), 4, seed=0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_temperatures_are_refused(run_dir, temperature):
    with pytest.raises(ValueError, match="temperature"):
        OmniRLAgent(load_model(run_dir / WEIGHTS), temperature=temperature)


def test_shipped_models_carry_a_checksum_checked_on_load(tmp_path):
    for name in ("omnirl-tiny-bandit", "omnirl-tiny-anymdp16"):
        cfg = json.loads((ROOT / "models" / name / "config.json").read_text())
        model, _ = load_shipped(name)
        assert cfg["weights_sha256"] == tensor_digest(model.state_dict())
    copy = shutil.copytree(ROOT / "models" / "omnirl-tiny-bandit", tmp_path / "models" / "copy")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["weights_sha256"] = "0" * 64
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointConfigError, match="do not belong together"):
        load_shipped(copy)


# ---------------------------------------------------------------------------------------------- NaN guard
def test_weights_that_overflow_never_reach_a_checkpoint(tmp_path):
    cfg = tiny(steps=6, checkpoint_every=1, **{"optim.lr": 1e30})  # finite gradients, weights of 1e30
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written"):
        train(cfg, tmp_path / "r", progress=False, hooks=[])
    assert not (tmp_path / "r" / CHECKPOINT).exists() and not (tmp_path / "r" / WEIGHTS).exists()


def test_a_nan_stop_after_a_resume_names_the_checkpoint_it_keeps(tmp_path):
    train(tiny(steps=2), tmp_path / "r", progress=False, hooks=[])
    before = _files(tmp_path / "r")
    cfg = tiny(steps=8, max_bad_steps=2, inject_nan_steps=[2, 3])
    with pytest.raises(NonFiniteLossError, match=r"The last checkpoint \(.*checkpoint\.pt, iteration 2\) is left"):
        train(cfg, tmp_path / "r", resume=True, progress=False, hooks=[], allow_changes=True)
    after = _files(tmp_path / "r")
    assert after[CHECKPOINT] == before[CHECKPOINT] and after[WEIGHTS] == before[WEIGHTS]


# ---------------------------------------------------------------------------------------------- run records
@pytest.mark.parametrize("case", ["other model", "no --resume", "changed seed"])
def test_a_refused_start_or_resume_leaves_the_run_folder_as_it_was(tmp_path, case):
    out = tmp_path / "r"
    train(tiny(steps=2), out, progress=False, hooks=[])
    before = _files(out)
    other = {"other model": tiny(steps=4, **{"model.hidden_size": 48}), "no --resume": tiny(steps=4),
             "changed seed": tiny(steps=4, seed=1)}[case]
    with pytest.raises((CheckpointMismatchError, FileExistsError)):
        train(other, out, resume=case != "no --resume", progress=False, hooks=[])
    assert _files(out) == before


@pytest.mark.parametrize("override, key", [({"seed": 5}, "seed"), ({"optim.lr": 1e-3}, "optim.lr"),
                                           ({"data.batch_size": 3}, "data.batch_size"),
                                           ({"data.episode_len": 9}, "data.episode_len"),
                                           ({"loss.state_mask_prob": 0.3}, "loss.state_mask_prob")])
def test_resume_refuses_settings_that_break_exactness(tmp_path, override, key):
    train(tiny(steps=2), tmp_path / "r", progress=False, hooks=[])
    with pytest.raises(CheckpointMismatchError, match=rf"(?s)resuming with them would not continue.*{key}: "
                                                      r"checkpoint .*, now .*allow-changes"):
        train(tiny(steps=4, **override), tmp_path / "r", resume=True, progress=False, hooks=[])


def test_resume_accepts_a_longer_run_and_explicitly_allowed_changes(tmp_path, capsys):
    out = tmp_path / "r"
    train(tiny(steps=2), out, progress=False, hooks=[])
    res = train(tiny(steps=4, log_every=2, checkpoint_every=4), out, resume=True, progress=False, hooks=[])
    assert res.step == 4
    res = train(tiny(steps=6, seed=3), out, resume=True, progress=False, hooks=[], allow_changes=True)
    assert res.step == 6
    assert "seed: checkpoint 0, now 3" in capsys.readouterr().out
    assert "Resumed at iteration 4 with changes (allow_changes): seed: checkpoint 0, now 3" in \
        (out / "config.yaml").read_text()


# ---------------------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "d"
    cfg = load_config(DatasetConfig, {"seq_len": 64, "n_sequences": 16, "sequences_per_shard": 4, "batch_size": 4,
                                      "seed": 2, "engine": "numpy", "ns": 8})
    synthesize(cfg, root, workers=1, progress=False)
    return root


def _edited(dataset: Path, tmp_path: Path, edit) -> Path:
    root = shutil.copytree(dataset, tmp_path / "d")
    man = json.loads((root / "manifest.json").read_text())
    edit(man)
    (root / "manifest.json").write_text(json.dumps(man))
    return root


def _dup(m):
    m["shards"] = [m["shards"][0]] * 4


def _cut(m):
    m["shards"] = m["shards"][:1]


def _seq_len(m):
    m["seq_len"] = 640
    m["config"]["seq_len"] = 640


def _seq_len_only(m):
    m["seq_len"] = 32


def _missing(m):
    del m["n_shards"]


def _shard_key(m):
    del m["shards"][1]["n_sequences"]


@pytest.mark.parametrize("edit, message", [
    (_dup, "shard 0 is listed twice"),
    (_cut, "marked complete, but it lists 1 of 4 shards"),
    (_seq_len, r"\w+\.npy has shape \[4, 64\], the schema gives \[4, 640\]"),
    (_seq_len_only, "'seq_len' is 32, but its recorded configuration gives 64"),
    (_missing, "missing key 'n_shards'"),
    (_shard_key, r"shards\[1\]: missing key 'n_sequences'"),
], ids=["one shard four times", "cut to one of four", "seq_len edited", "seq_len alone edited", "missing key",
        "missing shard key"])
def test_a_manifest_that_lies_is_refused(dataset, tmp_path, edit, message):
    root = _edited(dataset, tmp_path, edit)
    with pytest.raises(DatasetError, match=message):
        load_manifest(root)
    with pytest.raises(DatasetError):
        SequenceDataset(root, 2, 16)


def test_a_shard_json_that_disagrees_with_the_manifest_is_refused(dataset, tmp_path):
    root = shutil.copytree(dataset, tmp_path / "d")
    meta = root / "shard_000001" / "shard.json"
    own = json.loads(meta.read_text())
    own["ns"] = 99
    meta.write_text(json.dumps(own))
    with pytest.raises(DatasetError, match="shard_000001/shard.json: disagrees with the manifest"):
        SequenceDataset(root, 2, 16)


def test_training_seq_len_longer_than_the_dataset_is_an_error(dataset, tmp_path):
    cfg = tiny(steps=1, **{"data.path": str(dataset), "data.seq_len": 128})
    with pytest.raises(DatasetError, match=r"data\.seq_len 128 is longer than the sequences of .* \(64 steps\)"):
        train(cfg, tmp_path / "r", progress=False, hooks=[])
    assert not (tmp_path / "r").exists()  # refused before anything was written
    res = train(tiny(steps=1, **{"data.path": str(dataset), "data.seq_len": 32}), tmp_path / "r", progress=False,
                hooks=[])
    assert res.step == 1


# ---------------------------------------------------------------------------------------------- one writer
@pytest.mark.slow
def test_a_second_synthesis_into_the_same_folder_is_refused_and_harms_nothing(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({"datasets": {"d": {"seq_len": 4096, "n_sequences": 400, "sequences_per_shard": 1,
                                                     "batch_size": 1, "engine": "numpy", "ns": 64}}}))
    cmd = [sys.executable, "-m", "omnirl_core.synthesis", str(params), "--out", str(tmp_path / "out"),
           "--no-progress", "--workers", "1"]
    first = subprocess.Popen(cmd, env=_env(), cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        folder = tmp_path / "out" / "d"
        deadline = time.time() + 120
        while time.time() < deadline and not list(folder.glob(".tmp_*")):
            time.sleep(0.02)
        assert list(folder.glob(".tmp_*")), "the first synthesis wrote no temporary shard"
        second = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip()
        assert "another synthesis is writing this dataset folder (pid" in err and len(err.splitlines()) == 1
        assert "Traceback" not in err
        assert first.poll() is None, "the first synthesis died"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    with pytest.raises(SynthesisError, match="another synthesis"):  # in-process too, while a holder runs
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from omnirl_core.synthesis.writer import writer_lock\n"
            "with writer_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)"),
            str(folder)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            synthesize(load_config(DatasetConfig, {"seq_len": 64, "n_sequences": 4, "engine": "numpy"}), folder,
                       progress=False)
        finally:
            holder.kill()
            holder.wait()


# ---------------------------------------------------------------------------------------------- run folder files
def _cli_config(tmp_path: Path, **overrides) -> Path:
    import yaml

    from omnirl_core.workbook import config_to_dict

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(tiny(**{"eval.every": 0, **overrides}))))
    return path


def _train_cli(config: Path, out: Path, *extra: str, prefix: tuple[str, ...] = ("-m", "omnirl_core.training")):
    return subprocess.run([sys.executable, *prefix, str(config), "--out", str(out), "--no-progress", *extra],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)


# the command line with the disk full when model.safetensors is replaced for the N-th time (argv[1])
_FULL_DISK = """
import errno, os, sys
replace, seen = os.replace, []
def full(src, dst, *args, **kwargs):
    if os.path.basename(dst) == "model.safetensors":
        seen.append(dst)
        if len(seen) == int(sys.argv[1]):
            raise OSError(errno.ENOSPC, "No space left on device", dst)
    return replace(src, dst, *args, **kwargs)
os.replace = full
from omnirl_core.training.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_weights_left_older_than_the_checkpoint_are_rewritten_by_the_same_command(tmp_path):
    """The disk fills between checkpoint.pt and model.safetensors of the last iteration: the command fails, and
    the same command afterwards must not call the run done while model.safetensors holds older weights."""
    config, out = _cli_config(tmp_path, steps=4, checkpoint_every=2), tmp_path / "r"
    failed = _train_cli(config, out, "--resume", prefix=("-c", _FULL_DISK, "2"))
    assert failed.returncode == 2 and "No space left on device" in failed.stderr, failed.stderr[-2000:]
    assert load_checkpoint(out / CHECKPOINT)["step"] == 4  # the checkpoint was written, the weights were not
    again = _train_cli(config, out, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "model.safetensors" in again.stderr and "rewritten" in again.stderr, again.stderr
    ckpt = load_checkpoint(out / CHECKPOINT)
    from safetensors import safe_open

    with safe_open(str(out / WEIGHTS), "pt") as fh:
        assert fh.metadata()["step"] == "4"
    model = load_model(out / WEIGHTS)  # what the evaluation scores
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt["model"][name]), name
    third = _train_cli(config, out, "--resume")  # in agreement now: nothing rewritten
    assert third.returncode == 0 and "rewritten" not in third.stderr and "nothing to do" in third.stdout


@pytest.mark.slow
def test_a_resume_asking_for_fewer_iterations_than_done_names_both_counts(tmp_path):
    out = tmp_path / "r"
    assert _train_cli(_cli_config(tmp_path, steps=4), out).returncode == 0
    before = _files(out)
    res = _train_cli(_cli_config(tmp_path, steps=2), out, "--resume")
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and str(out / CHECKPOINT) in err, err
    assert "4 iterations" in err and "steps=2" in err and "steps=4" in err and "another output folder" in err, err
    assert _files(out) == before  # config.yaml still says what the run did


@pytest.mark.slow
def test_init_from_another_architecture_says_so_briefly(tmp_path):
    small = tmp_path / "small"
    assert _train_cli(_cli_config(tmp_path, steps=1, **{"model.num_layers": 6}), small).returncode == 0
    res = _train_cli(_cli_config(tmp_path, steps=1, init_from=str(small / WEIGHTS),
                                 **{"model.num_layers": 6, "model.hidden_size": 48}), tmp_path / "big")
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("init_from"))
    assert len(line) < 600, f"{len(line)} characters"
    assert "hidden_size: checkpoint 32, expected 48" in line and "kept fresh" in line and "more" in line, line


@pytest.mark.slow
def test_a_checkpoint_whose_weights_do_not_fit_is_one_short_line(tmp_path):
    out = tmp_path / "r"
    assert _train_cli(_cli_config(tmp_path, steps=1, **{"model.num_layers": 6}), out).returncode == 0
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    ckpt["model_config"]["hidden_size"] = 48  # the record edited: the weights are still those of 32
    torch.save(ckpt, out / CHECKPOINT)
    res = _train_cli(_cli_config(tmp_path, steps=2, **{"model.num_layers": 6, "model.hidden_size": 48}), out,
                     "--resume")
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and len(err) < 600 and "Traceback" not in err, err[:3000]
    assert str(out / CHECKPOINT) in err and "tensors" in err and "more" in err, err


@pytest.mark.slow
def test_two_identical_runs_write_byte_identical_weights(tmp_path):
    config = _cli_config(tmp_path, steps=2)
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train_cli(config, a).returncode == 0 and _train_cli(config, b).returncode == 0
    for out in (a, b):
        raw = (out / WEIGHTS).read_bytes()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        assert list(header["__metadata__"]) == sorted(header["__metadata__"]), header["__metadata__"].keys()
    assert (a / WEIGHTS).read_bytes() == (b / WEIGHTS).read_bytes()
