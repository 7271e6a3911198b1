"""Studies on a cluster (:mod:`omnirl_core.studies.cluster`): the unfinished (variant, seed) runs of a parameter file
go to SLURM as one submitit job array, and an element checkpoints at SIGUSR1, is requeued and resumes to the result
of a run never interrupted; ``--cluster local`` runs the same jobs through submitit on this machine.

Without a cluster: ``sbatch``, ``srun`` and ``scontrol`` are small scripts on PATH that record their arguments (and
``sbatch`` the submission script), and an array element is run as SLURM's ``srun`` would start it
(``python -m submitit.core._submit FOLDER`` with SLURM's job variables).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omnirl_core.studies import ablations as ab
from omnirl_core.studies import cli as studies_cli
from omnirl_core.studies import cluster
from omnirl_core.synthesis.writer import writer_lock
from omnirl_core.training import CHECKPOINT, PREEMPTED_FILE, read_metrics
from omnirl_core.workbook import dump_config, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ablations import tiny_config  # noqa: E402  (the ablation tests' tiny configuration)

submitit = pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[1]
# variant a: long enough to be signalled between two metrics rows; no checkpoint but the last (and a signal's)
LONG = {"training.steps": 24, "training.log_every": 1, "training.checkpoint_every": 1000}
RESULT_KEYS = ("gain", "final_loss", "env_steps_trained", "context_loss", "dataset", "training")


def studies(**variants) -> ab.AblationConfig:
    cfg = tiny_config(tags=variants)
    cfg.also_suites = []
    return cfg


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """tags/a seed 0 trained and measured by run_variant in this process: the result every other path must give."""
    base = tmp_path_factory.mktemp("plain")
    cfg = studies(a=LONG, b={}, same=LONG)  # "same" equals a: one run for both
    cfg.seeds = 2
    ab.run_variant(cfg, "tags", "a", base / "run", log=None)
    gain = next((base / "run" / "runs").glob("*/gain.json"))
    return cfg, dump_config(cfg, base / "abl.yaml"), base / "run", json.loads(gain.read_text())


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """sbatch, srun and scontrol on PATH, recording into ``tmp_path/calls``; sbatch answers job 12345."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    scripts = {"sbatch": f'echo "$@" >> {calls}/sbatch.args\ncat "$1" >> {calls}/sbatch.scripts\n'
                         'echo "Submitted batch job 12345"\n',
               "srun": "exit 0\n",
               "scontrol": f'echo "$@" >> {calls}/scontrol.args\n'}
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def untimed(value):
    """A result without its wall-clock fields ("seconds")."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "seconds"}
    return [untimed(v) for v in value] if isinstance(value, list) else value


def same_result(a: dict, b: dict) -> None:
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    for record in (a, b):
        record["training"]["data"]["path"] = None  # the dataset folder of each run folder
    for key in RESULT_KEYS:
        assert json.dumps(untimed(a[key]), sort_keys=True) == json.dumps(untimed(b[key]), sort_keys=True), key


def test_slurm_submits_the_unfinished_runs_as_one_array(plain, tmp_path, monkeypatch, capsys):
    cfg, path, run, _ = plain
    calls, jobs = fake_slurm(tmp_path, monkeypatch), tmp_path / "jobs"
    assert studies_cli.main([str(path), "--all", "--out", str(run), "--cluster", "slurm", "--slurm-partition", "gpu",
                             "--slurm-time", "120", "--slurm-gpus-per-job", "1", "--slurm-cpus-per-job", "2",
                             "--slurm-array-parallelism", "2", "--slurm-folder", str(jobs)]) == 0
    out = capsys.readouterr().out
    # a/0 is finished and "same" is a's run: a/1, b/0, b/1 remain, in one sbatch of an array of 3, 2 at a time
    assert (calls / "sbatch.args").read_text().count("\n") == 1
    script = (calls / "sbatch.scripts").read_text().splitlines()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --signal=USR1@90", f"#SBATCH --output={jobs}/%A_%a_0_log.out",
                 "export SUBMITIT_PREEMPT_SIGNAL=USR1"):
        assert line in script, line
    assert not any("SBATCH --signal=USR2" in line for line in script)
    index = json.loads((jobs / "12345.runs.json").read_text())["runs"]
    expected = [("tags", "b", 0), ("tags", "a", 1), ("tags", "b", 1)]
    assert [(r["study"], r["variant"], r["seed"]) for r in index] == expected
    assert [r["log"] for r in index] == [str(jobs / f"12345_{i}_0_log.out") for i in range(3)]
    for i, args in enumerate(expected):  # each element calls run_variant for its run into the same root
        delayed = submitit.helpers.DelayedSubmission.load(jobs / f"12345_{i}_submitted.pkl")
        assert isinstance(delayed.function, cluster.VariantJob) and delayed.args == args
        assert delayed.function.root == run.resolve() and delayed.function.cfg.seeds == 2
        again = delayed.function.checkpoint(*delayed.args)  # what submitit requeues: the same call
        assert again.function is delayed.function and again.args == args
    for study, variant, seed in expected:  # their datasets are written before submitting
        dataset, _ = ab.variant_configs(cfg, study, variant, seed)
        assert (run / "data" / ab.dataset_key(dataset) / "manifest.json").is_file()
    assert "watch: squeue -j 12345" in out and f"{path} --out {run} --all --report" in out


def element_env(path: Path) -> dict:
    """What SLURM and the submission script give array element 0 of job 12345."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "SUBMITIT_EXECUTOR": "slurm",
            "SUBMITIT_PREEMPT_SIGNAL": "USR1", "SLURM_JOB_ID": "12346", "SLURM_ARRAY_JOB_ID": "12345",
            "SLURM_ARRAY_TASK_ID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
            "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "PATH": path}


def wait_for(what: str, condition, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"never {what} (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


def test_an_element_waits_for_its_dataset_checkpoints_at_usr1_is_requeued_and_resumes(plain, tmp_path, monkeypatch):
    cfg, _, _, expected = plain
    calls, jobs, run = fake_slurm(tmp_path, monkeypatch), tmp_path / "jobs", tmp_path / "run"
    path = dump_config(studies(a=LONG, b={}), tmp_path / "abl.yaml")
    # a 1-minute limit: submitit counts the signal as the time limit's, which requeues only a checkpointable job
    assert studies_cli.main([str(path), "--all", "--out", str(run), "--cluster", "slurm", "--slurm-time", "1",
                             "--slurm-folder", str(jobs)]) == 0
    assert "#SBATCH --array=0-1%2" in (calls / "sbatch.scripts").read_text()
    dataset, training = ab.variant_configs(cfg, "tags", "a")
    folder = run / "runs" / ab.run_key(cfg, "tags", dataset, training)
    cmd, env = [sys.executable, "-u", "-m", "submitit.core._submit", str(jobs)], element_env(os.environ["PATH"])
    log = tmp_path / "element.log"
    with open(log, "w") as fh, writer_lock(run / "data" / ab.dataset_key(dataset)):  # another job verifies the data
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        wait_for("waited for the dataset", lambda: "waiting for it" in log.read_text(), proc, log)
    try:  # the lock released, it trains; SIGUSR1 between two iterations, as SLURM sends it ahead of the limit
        wait_for("trained 2 iterations", lambda: (rows := read_metrics(folder)) and rows[-1]["step"] >= 2, proc, log)
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 255, text  # submitit's exit after a requeue (sys.exit(-1))
    assert (calls / "scontrol.args").read_text() == "requeue 12345_0\n", text
    record = json.loads((folder / PREEMPTED_FILE).read_text())
    assert record["signal"] == "SIGUSR1" and 2 <= record["step"] < 24, record
    assert (folder / CHECKPOINT).is_file() and not (folder / "gain.json").exists()
    assert "training wrote its checkpoint at SIGUSR1: submitit requeues the job" in text
    # SLURM starts the requeued element again: it resumes from the checkpoint to the uninterrupted run's result
    with open(log, "w") as fh:
        assert subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=300).returncode == 0, \
            log.read_text()
    same_result(json.loads((folder / "gain.json").read_text()), expected)
    outcome, summary = submitit.core.utils.pickle_load(jobs / "12345_0_0_result.pkl")
    assert outcome == "success" and summary["run"] == str(folder.resolve()) and summary["variant"] == "a"


def test_local_runs_the_jobs_through_submitit_to_the_plain_runs_result(plain, tmp_path, capsys):
    _, _, _, expected = plain
    path = dump_config(studies(a=LONG), tmp_path / "abl.yaml")
    run = tmp_path / "run"
    assert studies_cli.main([str(path), "--all", "--out", str(run), "--cluster", "local",
                             "--set", "cpu_processes=1"]) == 0
    out = capsys.readouterr().out
    assert "1 unfinished run: tags/a" in out and "| tags | a | anymdp_1, 40 steps | 1 |" in out
    results = list((run / "submitit").glob("*_0_result.pkl"))
    assert len(results) == 1 and submitit.core.utils.pickle_load(results[0])[0] == "success"
    same_result(json.loads(next((run / "runs").glob("*/gain.json")).read_text()), expected)
    # finished: a second call submits nothing and prints the table
    assert studies_cli.main([str(path), "--all", "--out", str(run), "--cluster", "local"]) == 0
    assert "0 unfinished runs: nothing to run" in capsys.readouterr().out
    assert len(list((run / "submitit").glob("*_result.pkl"))) == 1


def test_cluster_options_fail_in_one_line_before_any_work(plain, tmp_path, monkeypatch, capsys):
    _, path, _, _ = plain
    out = tmp_path / "run"

    def error(*args: str) -> str:
        try:
            code = studies_cli.main([str(path), "--all", "--out", str(out), *args])
        except SystemExit as exc:  # a usage error of the parser
            code = exc.code
        assert code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no srun here
    assert "cluster.executor: slurm: no srun on PATH" in error("--cluster", "slurm")
    assert "'cluster.time_min': 0 is out of range: must be >= 1" in error("--cluster", "slurm", "--slurm-time", "0")
    assert "'cluster.executor': 'pbs'" in error("--set", "cluster.executor=pbs")
    assert "leave out --variant" in error("--cluster", "local", "--study", "tags", "--variant", "a")
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    assert "need submitit (pip install -e '.[cluster]')" in error("--cluster", "local")
    assert not out.exists()  # nothing synthesised


def test_the_overhead_bench_runs_and_prints_its_table(tmp_path):
    out = tmp_path / "overhead.md"
    res = subprocess.run([sys.executable, "bench/cluster_overhead.py", "--smoke", "--out", str(out)], cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.read_text() == res.stdout
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and " | 1 | " in line]
    assert len(rows) == 3 and "submitit `LocalExecutor`" in rows[1], res.stdout
    runs = len(cluster.pending_runs(load_config(ab.AblationConfig, ROOT / "params/paper/05_ablations.yaml"), tmp_path))
    assert f"05_ablations.yaml: {runs} runs" in res.stdout and runs > 30
