"""The faults a new user meets on a first pass, each through the command line (or the public API it names): a
clear one-line refusal (exit 2, no traceback) or a correct result, and nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from omnirl_core.evaluation import incontext
from omnirl_core.evaluation.runs import RunResult
from omnirl_core.synthesis import DatasetConfig, synthesize
from omnirl_core.synthesis import cli as synthesis_cli
from omnirl_core.training import CHECKPOINT, WEIGHTS, load_checkpoint, train
from omnirl_core.training import cli as training_cli
from omnirl_core.workbook import cli as workbook_cli
from omnirl_core.workbook import load_config
from omnirl_core.world import Task, sample_anymdp
from omnirl_core.world.envs import BatchedAnyMDPEnv
from omnirl_core.world.task import TaskFileError, TaskValidationError

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import TINY, tiny  # noqa: E402


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tiny_yaml(tmp_path: Path, name: str = "tiny", **changes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "steps": 4, **changes}))
    return path


def _refused(capsys, code: int, *needles: str) -> str:
    """The one error line of a refused command (exit 2), holding every needle."""
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith("[omnirl kernels]")]
    assert code == 2 and len(err) == 1, (code, err)
    assert "Traceback" not in err[0] and ": error: " in err[0], err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


def _train_cli(*argv) -> int:
    return training_cli.main([*map(str, argv), "--no-progress"])


# ---------------------------------------------------------------------------------------------- 1. model folders
@pytest.mark.parametrize("resume", [False, True])
def test_training_into_a_model_folder_is_refused_and_leaves_it_as_it_was(tmp_path, capsys, resume):
    folder = shutil.copytree(ROOT / "models" / "omnirl-tiny-bandit", tmp_path / "models" / "omnirl-tiny-bandit")
    before = _files(folder)
    code = _train_cli(_tiny_yaml(tmp_path), "--out", folder, *(["--resume"] if resume else []))
    _refused(capsys, code, f"{folder / WEIGHTS} exists without {CHECKPOINT}", "use another folder")
    assert _files(folder) == before  # not even a lock file


# ---------------------------------------------------------------------------------------------- 2. one writer
@pytest.mark.slow
def test_a_second_training_into_a_running_folder_is_refused(tmp_path, capsys):
    params = _tiny_yaml(tmp_path, steps=100000, checkpoint_every=100000)
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "omnirl_core.training", str(params), "--out", str(out),
                              "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.csv").is_file():
            time.sleep(0.05)
        assert (out / "metrics.csv").is_file(), "the first training never started"
        before = (out / "config.yaml").read_bytes()
        code = _train_cli(_tiny_yaml(tmp_path, "second", optim={**TINY["optim"], "lr": 1e-2}), "--out", out, "--resume")
        _refused(capsys, code, "another training is writing this run folder (pid", str(first.pid))
        assert first.poll() is None, "the first training died"
        assert (out / "config.yaml").read_bytes() == before
    finally:
        first.kill()
        first.wait()
    # the holder is gone (kill -9 releases the lock): the folder is free again (no checkpoint yet: a fresh start)
    assert _train_cli(_tiny_yaml(tmp_path, "third"), "--out", out) == 0


# ---------------------------------------------------------------------------------------------- 3. final state saved
def test_a_skipped_last_iteration_still_leaves_the_final_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train_cli(_tiny_yaml(tmp_path, inject_nan_steps=[3]), "--out", out) == 0
    captured = capsys.readouterr()
    assert "the last 1 iteration(s) had a non-finite loss" in captured.err
    assert "done: 4 iterations" in captured.out and "last loss nan" not in captured.out
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["step"] == 4 and ckpt["counters"]["bad_steps_total"] == 1
    # the weights are the run's final ones: those after iteration 3 (index 2), as a 3-iteration run leaves them
    train(tiny(steps=3, checkpoint_every=2), tmp_path / "three", progress=False, hooks=[])
    final = load_file(out / WEIGHTS)
    three = load_file(tmp_path / "three" / WEIGHTS)
    assert all(torch.equal(final[k], three[k]) for k in three)


def test_a_run_whose_weights_blow_up_stops_with_exit_3_and_no_done(tmp_path, capsys):
    out = tmp_path / "run"
    code = _train_cli(_tiny_yaml(tmp_path, optim={**TINY["optim"], "lr": 1e6}), "--out", out)
    captured = capsys.readouterr()
    assert code == 3, captured
    assert "stopped:" in captured.err and "No checkpoint was written" in captured.err and "done" not in captured.out
    assert not (out / CHECKPOINT).exists() and not (out / WEIGHTS).exists()


# ---------------------------------------------------------------------------------------------- 4. data fingerprint
def test_resume_after_the_dataset_was_synthesised_again_is_refused(tmp_path, capsys):
    def dataset(seed: int) -> None:
        shutil.rmtree(tmp_path / "ds", ignore_errors=True)
        synthesize(load_config(DatasetConfig, {"seq_len": 64, "n_sequences": 4, "sequences_per_shard": 4,
                                               "batch_size": 4, "seed": seed, "engine": "numpy", "ns": 8}),
                   tmp_path / "ds", workers=1, progress=False)

    dataset(1)
    params = _tiny_yaml(tmp_path, steps=2, **{"data": {**TINY["data"], "path": str(tmp_path / "ds")}})
    out = tmp_path / "run"
    assert _train_cli(params, "--out", out) == 0
    dataset(1)  # the same dataset again: the same bytes, the resume goes on
    assert _train_cli(params, "--out", out, "--resume", "steps=3") == 0
    dataset(2)  # another seed at the same data.path
    capsys.readouterr()
    before = _files(out)
    code = _train_cli(params, "--out", out, "--resume", "steps=4")
    _refused(capsys, code, "data: the dataset at", "is not the one the checkpoint was trained on", "--allow-changes")
    assert _files(out) == before
    assert _train_cli(params, "--out", out, "--resume", "steps=4", "--allow-changes") == 0  # explicitly accepted


# ---------------------------------------------------------------------------------------------- 10, 12. training CLI
def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = _train_cli(_tiny_yaml(tmp_path), "--out", tmp_path / "run", "device=cuda")
    _refused(capsys, code, "device: 'cuda'", "use device=cpu or device=auto")
    assert not (tmp_path / "run").exists()


def test_relative_out_is_the_working_directory_and_printed_absolute(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train_cli(_tiny_yaml(tmp_path, steps=2), "--out", "rel") == 0
    out = capsys.readouterr().out
    assert (tmp_path / "rel" / WEIGHTS).is_file() and f"checkpoint in {tmp_path / 'rel'}" in out
    # resuming the finished run: nothing to do, with the loss it ended with
    assert _train_cli(_tiny_yaml(tmp_path, steps=2), "--out", "rel", "--resume") == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "nan" not in out
    # a stale temporary file of a killed run (a pid that is gone) is cleared at the next start
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "rel" / f".{WEIGHTS}.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"half")
    assert _train_cli(_tiny_yaml(tmp_path, steps=3), "--out", "rel", "--resume") == 0
    assert not stale.exists() and "removed" in capsys.readouterr().err


def test_init_from_accepts_a_model_folder(tmp_path, capsys):
    cfg = {"model": {**TINY["model"], "ns_max": 16}, "init_from": "models/omnirl-tiny-anymdp16", "steps": 1}
    code = _train_cli(_tiny_yaml(tmp_path, **cfg), "--out", tmp_path / "run")
    out = capsys.readouterr().out
    assert code == 0 and "init_from models/omnirl-tiny-anymdp16:" in out and "tensors loaded" in out


# ---------------------------------------------------------------------------------------------- 5. no run dropped
def _population() -> RunResult:
    """Half the runs play 50-step episodes scoring 0.5 all along (gain 0); the other half lose a first episode of
    230 steps (score 0) and then win 20-step ones (score 1): their quarters are 0, 0, 0.75, 1 (gain 1). The true
    mean gain over the runs is 0.5."""
    fast_ends = np.arange(50, 601, 50)
    slow_ends = np.concatenate([[230], np.arange(250, 601, 20)])
    k = max(fast_ends.size, slow_ends.size)
    ends, scores = np.full((20, k), np.nan), np.full((20, k), np.nan)
    for b in range(20):
        e = fast_ends if b % 2 else slow_ends
        ends[b, :e.size] = e
        scores[b, :e.size] = 0.5 if b % 2 else np.where(e == 230, 0.0, 1.0)
    return RunResult("s", "a", scores, ends, np.ones(20), np.zeros(20), np.ones(20, bool))


def test_a_quarter_without_an_ended_episode_is_scored_by_the_episode_in_progress():
    result = _population()
    seg = incontext.segment_scores(result, 400)
    dropped = incontext.segment_summary(seg)  # the old way: the slow runs (no episode ends in Q1) left out
    assert dropped["n_dropped"] == 10 and abs(dropped["gain"][0]) < 1e-12  # biased: the true gain is 0.5
    filled, n_filled = incontext.fill_open_segments(result, 400, seg)
    s = incontext.segment_summary(filled)
    assert n_filled == 10 and s["n_dropped"] == 0 and s["n_tasks"] == 20
    np.testing.assert_allclose(filled[0], [0.0, 0.0, 0.75, 1.0])  # Q3: the lost episode ends there, 3 won
    np.testing.assert_allclose(s["gain"][0], 0.5)


def test_evaluation_says_how_runs_were_scored_and_refuses_what_it_cannot_score(tmp_path, capsys):
    code = incontext.main(["--suite", "anymdp_16", "--n-tasks", "2", "--steps", "8", "--tql"])
    out = capsys.readouterr().out
    assert code == 0 and "note: tql_ucb_c0.1: 1 of 2 runs had a bin in which no episode ended" in out
    assert "1 left out" in out  # its first episode lasts longer than 16 steps
    code = incontext.main(["--suite", "garnet_16", "--n-tasks", "2", "--steps", "8", "--tql"])
    _refused(capsys, code, "garnet_16, 8 steps: no run finished an episode within 16 steps", "use more steps")
    # 11: nothing to evaluate, and an --out that cannot be written, before any work
    _refused(capsys, incontext.main(["--suite", "anymdp_16"]), "nothing to evaluate")
    _refused(capsys, incontext.main(["--suite", "anymdp_16", "--tql", "--out", str(tmp_path)]), "is a folder")
    _refused(capsys, incontext.main(["--suite", "anymdp_16", "--tql", "--out", str(tmp_path / "no" / "r.json")]),
             "does not exist")


# ---------------------------------------------------------------------------------------------- 6. dataset names
SMALL = {"seq_len": 64, "n_sequences": 4, "sequences_per_shard": 4, "batch_size": 4, "engine": "numpy", "ns": 8}


def _synth(params: Path, out: Path, *extra) -> int:
    return synthesis_cli.main([str(params), "--out", str(out), "--no-progress", "--workers", "1", *map(str, extra)])


@pytest.mark.parametrize("name", ["../../escape", "", ".", "..", "a/b"])
def test_a_dataset_name_that_is_not_a_folder_name_is_refused(tmp_path, capsys, name):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"datasets": {name: SMALL}}))
    _refused(capsys, _synth(params, tmp_path / "out"), "'datasets'", "plain folder names")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape").exists()


def test_an_override_of_a_dataset_the_file_lacks_is_refused_with_the_closest_name(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"datasets": {"d_small": SMALL}}))
    code = _synth(params, tmp_path / "out", "--set", "datasets.d_smal.seq_len=32")
    _refused(capsys, code, "datasets.d_smal", "does not create one", "Did you mean 'datasets.d_small'?")
    assert not (tmp_path / "out").exists()
    # the same rule in `check`, through the workbook's --set
    folder = shutil.copytree(ROOT / "params" / "quick", tmp_path / "quick")
    code = workbook_cli.main(["check", str(folder), "--set", "02:datasets.dpd_bandt.seq_len=64"])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'datasets.dpd_bandit'?" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- 7. YAML, mixture
def test_a_parameter_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_bytes("datasets:\n  d: {seq_len: 64}  # caf\u00e9\n".encode("latin-1"))
    _refused(capsys, _synth(params, tmp_path / "out"), "not UTF-8 text (byte 0xe9 on line 2)")


def test_all_zero_mixture_weights_are_refused_and_an_empty_folder_is_reused(tmp_path, capsys):
    zero = {"w_drift_random": 0, "w_model_based": 0, "w_q_learning": 0, "w_mb_oracle": [0] * 4,
            "w_noisy_oracle": [0] * 2, "w_oracle": [0] * 3}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"datasets": {"d": {**SMALL, "mixture": zero}}}))
    _refused(capsys, _synth(params, tmp_path / "out"), "datasets.d.mixture", "at least one weight > 0")
    assert not (tmp_path / "out").exists()
    # a folder left by a synthesis that stopped before its first shard (its manifest lists none) holds nothing
    # to lose: another configuration may take it over
    folder = tmp_path / "out" / "d"
    folder.mkdir(parents=True)
    other = load_config(DatasetConfig, {**SMALL, "seed": 9})
    synthesize(other, folder, max_shards=0, progress=False)
    assert json.loads((folder / "manifest.json").read_text())["shards"] == []
    params.write_text(yaml.safe_dump({"datasets": {"d": SMALL}}))
    assert _synth(params, tmp_path / "out") == 0
    assert json.loads((folder / "manifest.json").read_text())["complete"]
    # one with a shard is another configuration's data: still refused
    params.write_text(yaml.safe_dump({"datasets": {"d": {**SMALL, "seed": 3}}}))
    _refused(capsys, _synth(params, tmp_path / "out"), "another configuration")


# ---------------------------------------------------------------------------------------------- 8. 03 against 02
@pytest.mark.parametrize("override, needle", [
    ("03:model.na=4", "model.na: 4, but notebook 02's dpd_bandit has na 5"),
    ("03:data.seq_len=4096", "data.seq_len: 4096 is longer than the sequences of notebook 02's dpd_bandit"),
    ("02:datasets.dpd_bandit.ns=16", "model.ns_max: 1, but notebook 02's dpd_bandit has tasks with up to 16"),
    ("03:data.path=data/dpd_bandt", "data.path: data/dpd_bandt is not a dataset of notebook 02"),
])
def test_check_compares_notebook_03_with_02s_datasets(tmp_path, capsys, override, needle):
    folder = shutil.copytree(ROOT / "params" / "quick", tmp_path / "quick")
    assert workbook_cli.main(["check", str(folder)]) == 0  # the shipped files agree
    capsys.readouterr()
    code = workbook_cli.main(["check", str(folder), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and "notebook 03_training against 02_synthesis: " + needle in err, err
    if override.startswith("03:"):  # 03 alone is still checked against 02's file
        code = workbook_cli.main(["check", str(folder), "--only", "03", "--set", override.replace("03:", "")])
        assert code == 2 and needle in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- 9. tasks, envs
def test_task_files_and_arrays_with_bad_values_are_refused_by_name(tmp_path):
    task = sample_anymdp(np.int8(16), 5, seed=0)  # a numpy integer size works as an int
    assert task.ns == 16
    np.testing.assert_array_equal(task.transition, sample_anymdp(16, 5, seed=0).transition)
    path = task.save(tmp_path / "t.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    for name, bad, needle in [("nokind", {k: v for k, v in header.items() if k != "kind"}, "header lacks kind"),
                              ("list", [1, 2], "header is a list, not a mapping"),
                              ("many", {**header, "n_obs": "many"}, "n_obs must be an int, got 'many'")]:
        np.savez(tmp_path / f"{name}.npz", **{**arrays, "header": np.array(json.dumps(bad))})
        with pytest.raises(TaskFileError, match=needle):
            Task.load(tmp_path / f"{name}.npz")
    with pytest.raises(TaskValidationError, match="ns, na >= 1"):
        Task.from_arrays(np.zeros((0, 2, 0)), np.zeros((0, 2)))
    with pytest.raises(TaskValidationError, match=r"terminal must hold booleans \(or 0/1\), got \[0.5\]"):
        Task.from_arrays(np.full((3, 2, 3), 1 / 3), np.zeros((3, 2)), terminal=[0, 0, 0.5])
    assert Task.from_arrays(np.full((3, 2, 3), 1 / 3), np.zeros((3, 2)), terminal=[0, 0, 0]).terminal.sum() == 0
    with pytest.raises(ValueError, match="max_draws must be an int >= 1, got 0"):
        sample_anymdp(16, 5, seed=0, max_draws=0)
    env = BatchedAnyMDPEnv([task] * 3)
    with pytest.raises(ValueError, match=r"one seed per env \(3\), got 2 seeds"):
        env.reset(seed=[1, 2])
    env.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match=r"reset_mask must hold booleans \(or 0/1\), got \[2\]"):
        env.reset(options={"reset_mask": [1, 0, 2]})
    env.reset(options={"reset_mask": [1, 0, 1]})


# ---------------------------------------------------------------------------------------------- 10. full disks
def test_a_full_disk_is_one_line_and_the_rerun_recovers_exactly(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def full_disk_at_the_second_checkpoint(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full_disk_at_the_second_checkpoint)
    code = _train_cli(_tiny_yaml(tmp_path), "--out", out)
    err = _refused(capsys, code, f"{out / CHECKPOINT}: writing failed", "run the same command again")
    assert ".tmp" not in err and load_checkpoint(out / CHECKPOINT)["step"] == 2
    monkeypatch.setattr(torch, "save", real_save)
    assert _train_cli(_tiny_yaml(tmp_path), "--out", out, "--resume") == 0
    train(tiny(steps=4), tmp_path / "whole", progress=False, hooks=[])
    a, b = load_file(out / WEIGHTS), load_file(tmp_path / "whole" / WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in b)  # the interrupted run ends where an uninterrupted one does


def test_a_read_only_dataset_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from omnirl_core.synthesis import writer

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out" / "d" / "x.npy"))

    monkeypatch.setattr(writer.np, "save", read_only)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"datasets": {"d": SMALL}}))
    _refused(capsys, _synth(params, tmp_path / "out"), "Read-only file system", "run the same command again")


# ---------------------------------------------------------------------------------------------- 12. synthesis --out
def test_synthesis_out_is_relative_to_the_working_directory_and_printed(tmp_path, capsys, monkeypatch):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"datasets": {"d": SMALL}}))
    monkeypatch.chdir(tmp_path)
    assert _synth(params, "rel") == 0
    assert (tmp_path / "rel" / "d" / "manifest.json").is_file() and not (ROOT / "rel").exists()
    assert f"in {tmp_path / 'rel' / 'd'}" in capsys.readouterr().out


def test_a_read_only_output_root_of_the_runner_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(tmp_path / "outputs")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = workbook_cli.main(["run", str(ROOT / "params" / "quick"), "--only", "01", "--output-root",
                              str(tmp_path / "outputs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Read-only file system" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- 13. evaluation CLI
@pytest.mark.parametrize("target", ["the checkpoint folder's weights", "the checkpoint file", "other weights",
                                    "a JSON file that is no report"])
def test_evaluation_out_that_would_replace_another_file_is_refused_before_running(tmp_path, capsys, target):
    folder = shutil.copytree(ROOT / "models" / "omnirl-tiny-bandit", tmp_path / "omnirl-tiny-bandit")
    (tmp_path / "other.pt").write_bytes(b"\x80\x02weights")
    checkpoint, out = {
        "the checkpoint folder's weights": (folder, folder / "model.safetensors"),
        "the checkpoint file": (folder / "model.safetensors", folder / "model.safetensors"),
        "other weights": (folder, tmp_path / "other.pt"),
        "a JSON file that is no report": (folder, folder / "config.json"),
    }[target]
    before = {**_files(folder), "other.pt": (tmp_path / "other.pt").read_bytes()}
    code = incontext.main([str(checkpoint), "--suite", "anymdp_1", "--n-tasks", "2", "--steps", "8",
                           "--out", str(out)])
    _refused(capsys, code, f"--out {out}", "would be replaced")
    assert {**_files(folder), "other.pt": (tmp_path / "other.pt").read_bytes()} == before
    # a report of this command (the shipped model's own) is replaced, as before
    report = folder / "online_anymdp_1.json"
    assert incontext.main([str(folder), "--suite", "anymdp_1", "--n-tasks", "2", "--steps", "8",
                           "--out", str(report)]) == 0
    assert json.loads(report.read_text())["n_tasks"] == 2


@pytest.mark.parametrize("agents", [["--tql"], [str(ROOT / "models" / "omnirl-tiny-anymdp16"), "--tql"]])
def test_evaluation_steps_beyond_the_memory_are_refused_naming_size_and_limit(capsys, agents):
    t0 = time.perf_counter()
    code = incontext.main([*agents, "--suite", "anymdp_16", "--steps", "1000000000"])
    _refused(capsys, code, "--steps 1000000000 x --n-tasks 64", "GiB", "available")
    assert time.perf_counter() - t0 < 20  # refused before any task is drawn


def test_evaluation_suite_given_twice_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        incontext.main(["--suite", "anymdp_1", "--suite", "anymdp_16", "--tql", "--steps", "8", "--n-tasks", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert "--suite given twice ('anymdp_1', then 'anymdp_16')" in err[0] and "one suite per report" in err[0]
