"""``python -m omnirl_core.studies``: the ablation studies of a parameter file (:mod:`.ablations`), spread over the
GPUs of ``devices`` or the CPU slots of ``cpu_processes`` when the file asks for it, then the tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..workbook.config import load_config
from ..workbook.devices import spreads
from ..workbook.errors import CliParser, run_cli
from .ablations import (
    AblationConfig,
    StudyConfig,
    markdown_summary,
    run_studies,
    run_variant,
    spread_variants,
    summary_rows,
    tql_reference,
)
from .cross_suite import suite_table


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
    a = ap.parse_args(argv)
    over = list(a.set) + ([f"results_dir={a.results}"] if a.results else [])
    cfg = load_config(AblationConfig, a.config, overrides=over or None)
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
    if spreads(cfg.devices, cfg.cpu_processes) and not a.report:  # one variant per GPU or per core at a time
        spread_variants(cfg, None, Path(a.out), studies)  # the file with the --set values, as run
    results = run_studies(cfg, Path(a.out), studies, reuse_only=a.report)
    results = {name: variants for name, variants in results.items() if variants}
    tql = {name: tql_reference(cfg, name) for name in results} if cfg.tql else None
    print(markdown_summary(summary_rows(cfg, results), tql))
    if any(r.suites for variants in results.values() for r in variants):
        print("\n" + suite_table(cfg, results, list(results)))
    return 0
