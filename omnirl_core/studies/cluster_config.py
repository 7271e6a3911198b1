"""The ``cluster`` section of an ablation file: where ``python -m omnirl_core.studies`` runs the variants (the
command line's ``--cluster`` and ``--slurm-*`` options set it; :mod:`.cluster` runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..workbook.fields import param

EXECUTORS = ("none", "local", "slurm")


@dataclass
class ClusterConfig:
    """Where ``python -m omnirl_core.studies`` runs the variants (``--cluster`` and the ``--slurm-*`` options)."""

    executor: str = param("none", choices=EXECUTORS)
    ("none: on this machine (devices / cpu_processes); local: submitit's LocalExecutor on this machine's slots; "
     "slurm: every unfinished (variant, seed) as one SLURM job array")
    partition: str | None = None
    "SLURM partition of the jobs (None: the cluster's default)."
    time_min: int = param(1440, ge=1)
    ("Time limit of one job in minutes; a run longer than that is requeued from its checkpoint at the limit "
     "(at most max_timeouts times).")
    gpus_per_job: int = param(1, ge=0)
    "SLURM: GPUs per job (0: CPU jobs)."
    cpus_per_job: int = param(4, ge=1)
    "SLURM: CPU cores per job (torch_threads threads train on them)."
    array_parallelism: int = param(64, ge=1)
    "SLURM: jobs of the array running at once (the %P of --array=0-N%P)."
    folder: str | None = None
    "Folder of the job scripts, pickles and logs (None: submitit/ in the run folder); shared with the nodes."
    signal_delay_s: int = param(90, ge=10)
    ("Seconds before the time limit at which SLURM sends SIGUSR1 (--signal=USR1@seconds); must cover one "
     "training iteration and a checkpoint write.")
    max_timeouts: int = param(3, ge=0)
    "Requeues at the time limit before a job gives up (preemptions do not count)."
    sbatch: dict[str, Any] = param({})
    "Further #SBATCH options, e.g. {account: my_account, qos: normal, mem: 64G, requeue: true}."
