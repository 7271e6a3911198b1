"""Studies on a cluster: every unfinished (variant, seed) of the chosen studies as one submitit job array.

``python -m omnirl_core.studies FILE --all --cluster slurm`` (the ``cluster`` section of
:class:`~omnirl_core.studies.ablations.AblationConfig`, :class:`ClusterConfig`; the command line's ``--cluster`` and
``--slurm-*`` options set it):

1. :func:`pending_runs` lists the (study, variant, seed) runs not finished under the run folder ROOT, one per run
   folder (variants with equal configurations share a run), after restoring the results kept in ``results_dir``
   as :func:`~omnirl_core.studies.ablations.run_variant` would;
2. :func:`~omnirl_core.studies.ablations.synthesize_for` writes their datasets here, before anything is submitted
   (synthesis holds a dataset folder's lock and refuses a second writer at once);
3. :func:`submit_slurm` submits them as one SLURM job array (submitit's ``map_array``: one ``sbatch``, ``--array=
   0-(N-1)%P``), each element a :class:`VariantJob` that calls ``run_variant(cfg, study, variant, ROOT, seed=s)``;
   :func:`run_local` runs the same jobs through submitit's ``LocalExecutor`` on this machine's slots (``devices``
   or ``cpu_processes``) and waits for them;
4. ``--report`` reads the finished results back (:func:`~omnirl_core.studies.ablations.run_studies` with
   ``reuse_only``).

Time limits and preemption (:data:`JOB_SIGNAL`): the jobs are submitted with ``--signal=USR1@signal_delay_s`` and
``SUBMITIT_PREEMPT_SIGNAL=USR1``, so that SIGUSR1 is both submitit's requeue signal and one of training's stop
signals (:mod:`omnirl_core.training.preemption`). While a job trains, training's handler replaces submitit's: the
run finishes its iteration, writes a checkpoint and raises
:class:`~omnirl_core.training.preemption.TrainingPreempted`; the job then calls submitit's handler, which calls
:meth:`VariantJob.checkpoint` (the same job again: its state is the run folder), requeues the array element and
exits. Outside training (synthesis check, evaluation) submitit's handler runs at once; the rerun redoes that step.
SIGTERM (``scancel``, or a preemption that SLURM requeues itself) also makes training write its checkpoint, but
the job is not requeued by it: it ends, and a rerun resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..workbook.errors import InputError
from .cluster_config import EXECUTORS, ClusterConfig  # noqa: F401 - the section this module runs

JOB_SIGNAL = "USR1"
"""The signal of a job's time limit and of submitit's requeue (``--signal=USR1@signal_delay_s``): one of
training's stop signals, so a run checkpoints at it before submitit requeues."""
SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit reads its requeue signal from this variable when it is imported
RUNS_FILE = "{job}.runs.json"  # in the job folder: array index -> (study, variant, seed), run folder and log


# ------------------------------------------------------------------------------------------------ what to run
def _run_paths(cfg, study: str, variant: str, seed: int, root: Path):
    from .ablations import dataset_key, run_key, variant_configs

    dataset, training = variant_configs(cfg, study, variant, seed)
    return dataset, training, root / "data" / dataset_key(dataset), root / "runs" / run_key(cfg, study, dataset,
                                                                                              training)


def is_finished(cfg, study: str, variant: str, seed: int, root: str | Path) -> bool:
    """Whether :func:`~omnirl_core.studies.ablations.run_variant` has nothing left to train or measure for this run:
    its ``gain.json`` is there (or kept in ``results_dir``, which is restored into the run folder as the run would
    do), every further suite is measured, and its context-loss curve was read with today's ``loss_sequences``."""
    from . import cross_suite as xs
    from .ablations import archive_key
    from .archive import find_archived, restore_archived

    root = Path(root)
    dataset, training, _, folder = _run_paths(cfg, study, variant, seed, root)
    gain = folder / "gain.json"
    if not gain.is_file() and cfg.results_dir:
        record = find_archived(cfg.results_dir, archive_key(cfg, study, dataset, training))
        if record is not None:
            restore_archived(record, folder, lambda n: xs.suite_ident(cfg, study, n))
    if not gain.is_file() or xs.suites_to_measure(cfg, study, folder, training.model):
        return False
    curve = json.loads(gain.read_text()).get("context_loss") or {}
    return curve.get("sequences", 0) == cfg.loss_sequences or not (folder / "model.safetensors").is_file()


def pending_runs(cfg, root: str | Path, studies: Sequence[str] | None = None) -> list[tuple[str, str, int]]:
    """The (study, variant, seed) runs of ``studies`` (default ``cfg.run``, or all) not finished under ``root``
    (:func:`is_finished`), in :func:`~omnirl_core.studies.ablations.run_studies`' order; one per run folder."""
    out: dict[Path, tuple[str, str, int]] = {}
    for name in studies or cfg.studies_to_run:
        for seed in range(cfg.seeds):
            for variant in cfg.studies[name].variants:
                folder = _run_paths(cfg, name, variant, seed, Path(root))[3]
                if folder not in out and not is_finished(cfg, name, variant, seed, root):
                    out[folder] = (name, variant, seed)
    return list(out.values())


def _label(study: str, variant: str, seed: int) -> str:
    from .ablations import run_label

    return run_label(study, variant, seed)


# ------------------------------------------------------------------------------------------------ the job
class VariantJob:
    """One (study, variant, seed) run as a submitit job: ``VariantJob(cfg, root)(study, variant, seed)`` calls
    :func:`~omnirl_core.studies.ablations.run_variant` into ``root`` and returns a small summary.

    Checkpointable in submitit's sense (``submitit.helpers.Checkpointable``'s protocol, which submitit tests with
    ``hasattr(fn, "checkpoint")``): :meth:`checkpoint` resubmits the same call, since everything a rerun needs is
    in the run folder (``run_variant`` resumes from its checkpoint). A stop of training at submitit's own signal is
    handed to submitit's handler, which requeues the job (see the module's docstring)."""

    def __init__(self, cfg, root: str | Path):
        self.cfg = dataclasses.replace(cfg, progress=False)  # logs of jobs, not terminals: no progress bars
        self.root = Path(root).resolve()

    def __call__(self, study: str, variant: str, seed: int = 0) -> dict:
        from ..training.preemption import TrainingPreempted
        from .ablations import run_variant

        _say_signal_setup()
        _, _, data_dir, folder = _run_paths(self.cfg, study, variant, seed, self.root)
        with _dataset_turn(data_dir, needed=not (folder / "gain.json").is_file()):
            try:
                result = run_variant(self.cfg, study, variant, self.root, seed=seed, log=_stderr)
            except TrainingPreempted as exc:
                _requeue_through_submitit(exc)  # exits when submitit requeues the job
                raise
        return {"study": study, "variant": variant, "seed": seed, "run": str(result.folder),
                "gain": result.gain["gain"]}

    def checkpoint(self, *args: Any, **kwargs: Any):
        """The same call again (submitit calls this at its requeue signal): the run folder holds the state."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _job_environment():
    """submitit's environment of the job this process runs, or None outside a submitit job."""
    try:
        import submitit
    except ImportError:
        return None
    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return None


def _say_signal_setup() -> None:
    """Say so when the job's requeue signal is not one training stops at (a job submitted without this module's
    settings): a time limit then requeues at once, and the run resumes from its last periodic checkpoint."""
    from ..training.preemption import STOP_SIGNALS

    env = _job_environment()
    if env is not None and env._usr_sig() not in STOP_SIGNALS:
        _stderr(f"note: submitit's requeue signal is SIG{env.USR_SIG}, at which training does not checkpoint; "
                f"a time limit requeues from the last periodic checkpoint ({SIGNAL_ENV}={JOB_SIGNAL} and "
                f"--signal={JOB_SIGNAL}@SECONDS make training checkpoint first)")


def _requeue_through_submitit(exc) -> None:
    """Training stopped at a signal and wrote its checkpoint: when the signal is submitit's requeue signal, run
    submitit's handler for it (which training's own handler replaced while it ran): it calls
    :meth:`VariantJob.checkpoint`, saves the resubmission, requeues the job and exits. Any other signal (SIGTERM:
    ``scancel``, or a preemption that SLURM requeues itself) leaves the job to end with the error."""
    env = _job_environment()
    if env is None:
        return
    sig = env._usr_sig()
    handler = signal.getsignal(sig)
    if exc.signal_name != signal.Signals(sig).name or not callable(handler):
        return
    _stderr(f"training wrote its checkpoint at {exc.signal_name}: submitit requeues the job")
    handler(sig, None)


@contextlib.contextmanager
def _dataset_turn(data_dir: Path, needed: bool) -> Iterator[None]:
    """Wait while another job holds the dataset folder's lock (synthesis verifies a finished dataset under its
    writer lock, and refuses a second holder at once: jobs of one array sharing a dataset would fail).

    The lock taken here is a POSIX record lock of this process on ``data_dir/.lock``: synthesis's own lock in this
    process then succeeds, and releases both when it closes its file, so the wait lasts until this job's synthesis
    check is done. ``needed`` False (a finished run, read back): no wait."""
    if not needed:
        yield
        return
    import fcntl

    from ..workbook.locks import LOCK_FILE

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            _stderr(f"{data_dir}: another job holds this dataset folder; waiting for it")
            fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ executors
def _submitit():
    try:
        import submitit
    except ImportError:
        raise InputError("cluster.executor: local and slurm need submitit (pip install -e '.[cluster]')") from None
    return submitit


def check_executor(cfg) -> None:
    """Fail now, before datasets are synthesised, when ``cluster.executor`` cannot run here: submitit not installed,
    or ``slurm`` without SLURM's ``srun`` on PATH (not a SLURM login node)."""
    import shutil

    _submitit()
    if cfg.cluster.executor == "slurm" and shutil.which("srun") is None:
        raise InputError("cluster.executor: slurm: no srun on PATH; submit from a SLURM login node (or use local)")


def job_folder(cfg, root: str | Path) -> Path:
    """Where submitit keeps the job scripts, pickles and logs: ``cluster.folder``, or ``ROOT/submitit``."""
    return Path(cfg.cluster.folder) if cfg.cluster.folder else Path(root) / "submitit"


@contextlib.contextmanager
def _job_signal_env() -> Iterator[None]:
    """``SUBMITIT_PREEMPT_SIGNAL=USR1`` for the processes started in the block (LocalExecutor's controller copies
    this process's environment; its time-limit signal and its jobs' handler read it)."""
    old = os.environ.get(SIGNAL_ENV)
    os.environ[SIGNAL_ENV] = JOB_SIGNAL
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SIGNAL_ENV, None)
        else:
            os.environ[SIGNAL_ENV] = old


def slurm_parameters(cfg, root: str | Path) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters of the ``cluster`` section."""
    c = cfg.cluster
    params: dict[str, Any] = {
        "job_name": f"omnirl-{Path(root).resolve().name}", "time": c.time_min, "cpus_per_task": c.cpus_per_job,
        "array_parallelism": c.array_parallelism, "signal_delay_s": c.signal_delay_s,
        "setup": [f"export {SIGNAL_ENV}={JOB_SIGNAL}"],
        "additional_parameters": {"signal": f"{JOB_SIGNAL}@{c.signal_delay_s}", **c.sbatch},
    }
    if c.partition:
        params["partition"] = c.partition
    if c.gpus_per_job:
        params["gpus_per_node"] = c.gpus_per_job
    return params


def submit_slurm(cfg, root: str | Path, runs: Sequence[tuple[str, str, int]],
                 log: Callable[[str], None] | None = print) -> list:
    """Submit ``runs`` as one SLURM job array (one ``sbatch``; a single run is a plain job) and write
    ``FOLDER/<job id>.runs.json``: each array index's run and log. Returns submitit's jobs."""
    if not runs:
        return []
    submitit = _submitit()
    folder = job_folder(cfg, root)
    check_executor(cfg)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.cluster.max_timeouts)
    executor.update_parameters(**slurm_parameters(cfg, root))
    studies, variants, seeds = zip(*runs)
    jobs = executor.map_array(VariantJob(cfg, root), studies, variants, seeds)
    array_id = jobs[0].job_id.split("_")[0]
    index = [{"job": job.job_id, "study": s, "variant": v, "seed": seed,
              "run": str(_run_paths(cfg, s, v, seed, Path(root).resolve())[3]), "log": str(job.paths.stdout)}
             for job, (s, v, seed) in zip(jobs, runs)]
    from ..synthesis import write_json_atomic

    write_json_atomic(folder / RUNS_FILE.format(job=array_id), {"array": array_id, "runs": index})
    if log:
        log(f"submitted SLURM job {array_id}: {len(jobs)} run{'s' if len(jobs) != 1 else ''}, at most "
            f"{min(len(jobs), cfg.cluster.array_parallelism)} at a time; logs {folder}/{array_id}_<index>_0_log.out "
            f"(index -> run: {folder / RUNS_FILE.format(job=array_id)})")
    return jobs


class ClusterJobError(RuntimeError):
    """A job that failed under submitit; the message holds the end of its error."""


def run_local(cfg, root: str | Path, runs: Sequence[tuple[str, str, int]],
              log: Callable[[str], None] | None = print, poll_seconds: float = 0.2) -> list[dict]:
    """Run ``runs`` through submitit's ``LocalExecutor``, one job per slot of ``devices`` (a GPU each, made its only
    visible one) or of ``cpu_processes`` (no GPU visible) at a time, with ``cluster.time_min`` as each job's time
    limit (and requeue at it); returns the jobs' summaries once all succeeded. A failing job stops the others and
    raises :class:`ClusterJobError` with the end of its error."""
    from ..workbook.devices import slots

    submitit = _submitit()
    c = cfg.cluster
    executor = submitit.LocalExecutor(folder=job_folder(cfg, root), max_num_timeout=c.max_timeouts)
    executor.update_parameters(timeout_min=c.time_min, signal_delay_s=c.signal_delay_s)
    fn = VariantJob(cfg, root)
    pending, running, free, out = list(runs), [], slots(cfg.devices, cfg.cpu_processes), []
    with _job_signal_env():
        while pending or running:
            while pending and free:
                run, slot = pending.pop(0), free.pop(0)
                gpus = {"gpus_per_node": 0, "visible_gpus": ()} if slot is None else {"gpus_per_node": 1,
                                                                                      "visible_gpus": (slot,)}
                executor.update_parameters(**gpus)
                job = executor.submit(fn, *run)
                running.append((job, slot, run))
                if log:
                    log(f"{_label(*run)}: started as local job {job.job_id} on "
                        f"{'a CPU process' if slot is None else f'device {slot}'}")
            while not any(job.done() for job, *_ in running):
                time.sleep(poll_seconds)
            for item in [item for item in running if item[0].done()]:
                running.remove(item)
                job, slot, run = item
                error = job.exception()
                if error is not None:
                    for other, *_ in running:
                        other.cancel()
                    tail = "\n".join(str(error).strip().splitlines()[-12:])
                    raise ClusterJobError(f"{_label(*run)} failed (local job {job.job_id}, logs "
                                          f"{job.paths.stdout} and {job.paths.stderr}):\n{tail}")
                out.append(job.result())
                free.append(slot)
                if log:
                    log(f"{_label(*run)}: done (local job {job.job_id})")
    return out
