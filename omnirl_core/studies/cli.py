"""``python -m omnirl_core.studies``: the ablation studies of a parameter file (:mod:`.ablations`), spread over the
GPUs of ``devices`` or the CPU slots of ``cpu_processes`` when the file asks for it, then the tables.

With ``--cluster slurm`` (or ``cluster.executor: slurm`` in the file) the unfinished (variant, seed) runs are submitted
as one SLURM job array instead, and ``--report`` prints the tables once they finished; ``--cluster local`` runs the
same jobs through submitit on this machine and then prints the tables (:mod:`.cluster`)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from ..workbook.config import load_config
from ..workbook.devices import spreads
from ..workbook.errors import CliParser, run_cli
from .ablations import (
    AblationConfig,
    StudyConfig,
    markdown_summary,
    run_label,
    run_studies,
    run_variant,
    spread_variants,
    summary_rows,
    synthesize_for,
    tql_reference,
)
from .cluster import EXECUTORS, check_executor, pending_runs, run_local, submit_slurm
from .cross_suite import suite_table

# --slurm-OPTION -> (field of the cluster section, type, metavar)
SLURM_OPTIONS = {"partition": ("partition", str, "NAME"), "time": ("time_min", int, "MIN"),
                 "gpus-per-job": ("gpus_per_job", int, "N"), "cpus-per-job": ("cpus_per_job", int, "N"),
                 "array-parallelism": ("array_parallelism", int, "N"), "folder": ("folder", str, "DIR")}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omnirl_core.studies``: exit 0 done, 2 bad input (one line on stderr), 3 a run stopped."""
    return run_cli(_main, argv, prog="python -m omnirl_core.studies")


def _main(argv: Sequence[str]) -> int:
    ap = CliParser(prog="python -m omnirl_core.studies", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="an ablation parameter file, e.g. params/quick/05_ablations.yaml")
    ap.add_argument("--out", default="outputs/ablations", help="run folder (data and models go below it)")
    ap.add_argument("--study", action="append", help="run only this study (repeatable); default: the file's run")
    ap.add_argument("--variant", help="with one --study: run only this variant (e.g. one per GPU)")
    ap.add_argument("--all", action="store_true", help="run every study of the file")
    ap.add_argument("--seed", type=int, default=0, help="with --variant: the seed to run (0 .. seeds - 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter of the file (repeatable), e.g. --set seeds=3 --set workers=1")
    ap.add_argument("--results", metavar="DIR", help="keep every finished (variant, seed)'s small result files in "
                    "DIR and reuse those found there (sets results_dir)")
    ap.add_argument("--report", action="store_true", help="train nothing: the tables of the finished seeds")
    ap.add_argument("--cluster", choices=EXECUTORS, help="where to run the unfinished (variant, seed) runs (sets "
                    "cluster.executor): slurm submits them as one SLURM job array and returns, local runs them "
                    "through submitit on this machine, none as without the option")
    for option, (field, kind, metavar) in SLURM_OPTIONS.items():
        ap.add_argument(f"--slurm-{option}", dest=field, type=kind, metavar=metavar, help=f"sets cluster.{field}")
    a = ap.parse_args(argv)
    over = list(a.set) + ([f"results_dir={a.results}"] if a.results else [])
    over += [f"cluster.executor={a.cluster}"] if a.cluster else []
    for field, kind, _ in SLURM_OPTIONS.values():
        if getattr(a, field) is not None:  # a string stays a string (a partition named 123)
            over.append(f"cluster.{field}={json.dumps(getattr(a, field)) if kind is str else getattr(a, field)}")
    cfg = load_config(AblationConfig, a.config, overrides=over or None)
    if a.variant is not None and a.cluster not in (None, "none"):
        ap.error(f"--cluster {a.cluster} runs every unfinished variant of the studies; leave out --variant")
    if a.variant is not None:
        if not a.study or len(a.study) != 1 or a.variant not in cfg.studies.get(a.study[0], StudyConfig()).variants:
            ap.error("--variant needs exactly one --study that has this variant")
        if not 0 <= a.seed < cfg.seeds:
            ap.error(f"--seed {a.seed}: must be in 0 .. {cfg.seeds - 1} (seeds: {cfg.seeds})")
        run_variant(cfg, a.study[0], a.variant, Path(a.out), seed=a.seed)
        return 0
    studies = list(cfg.studies) if a.all and not a.study else a.study
    for name in studies or []:
        if name not in cfg.studies:
            ap.error(f"unknown study {name!r}; the file has {', '.join(cfg.studies)}")
    if cfg.cluster.executor != "none" and not a.report:
        check_executor(cfg)
        runs = pending_runs(cfg, Path(a.out), studies)
        print(f"{len(runs)} unfinished run{'s' if len(runs) != 1 else ''}"
              + (f": {', '.join(run_label(*r) for r in runs)}" if runs else ": nothing to run"))
        if runs:
            synthesize_for(cfg, Path(a.out), runs)  # here, before the jobs: they share the datasets
            if cfg.cluster.executor == "slurm":
                job = submit_slurm(cfg, Path(a.out), runs)[0].job_id.split("_")[0]
                print(f"watch: squeue -j {job} (sacct -j {job} once finished); when every job is done, the "
                      f"tables: {shlex.join(report_command(a))}")
                return 0
            run_local(cfg, Path(a.out), runs)
    elif spreads(cfg.devices, cfg.cpu_processes) and not a.report:  # one variant per GPU or per core at a time
        spread_variants(cfg, None, Path(a.out), studies)  # the file with the --set values, as run
    results = run_studies(cfg, Path(a.out), studies, reuse_only=a.report)
    results = {name: variants for name, variants in results.items() if variants}
    tql = {name: tql_reference(cfg, name) for name in results} if cfg.tql else None
    print(markdown_summary(summary_rows(cfg, results), tql))
    if any(r.suites for variants in results.values() for r in variants):
        print("\n" + suite_table(cfg, results, list(results)))
    return 0


def report_command(a) -> list[str]:
    """The command line that prints the tables of the runs that ``a`` submitted."""
    cmd = ["python", "-m", "omnirl_core.studies", a.config, "--out", a.out]
    cmd += ["--all"] if a.all and not a.study else [x for name in a.study or [] for x in ("--study", name)]
    cmd += [x for kv in a.set for x in ("--set", kv)] + (["--results", a.results] if a.results else [])
    return cmd + ["--report"]
