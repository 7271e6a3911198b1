"""Command line: ``python -m omnirl_core.synthesis PARAMS.yaml --out DIR`` synthesises the datasets of a
02_synthesis parameter file.

Exit codes: 0 done, 2 bad input (parameter file, ``--only``, ``--workers``, a dataset folder of another
configuration or being written by another synthesis), each reported as one line on stderr.
"""

from __future__ import annotations

import time

from ..workbook.config import load_config, repo_path
from ..workbook.errors import CliParser, InputError, run_cli
from .config import SynthesisConfig
from .writer import synthesize

PROG = "python -m omnirl_core.synthesis"


def _parser() -> CliParser:
    ap = CliParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("params", help="a 02_synthesis YAML (SynthesisConfig)")
    ap.add_argument("--out", required=True, help="output folder; each dataset goes to OUT/<name>")
    ap.add_argument("--workers", type=int, default=None, help="worker processes, >= 1 (default: the config's)")
    ap.add_argument("--only", action="append", default=None, help="synthesise only this dataset (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. datasets.d_small.n_sequences=8")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command line; known errors become one line on stderr and exit code 2 (see the module docstring)."""
    return run_cli(_main, argv, prog=PROG)


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be >= 1")
    cfg = load_config(SynthesisConfig, args.params, overrides=args.set)
    unknown = [name for name in args.only or [] if name not in cfg.datasets]
    if unknown:
        raise InputError(f"--only {unknown[0]!r}: {args.params} has no such dataset; it has "
                         f"{', '.join(cfg.datasets) or 'none'}")
    workers = args.workers or cfg.workers
    for name, dcfg in cfg.datasets.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        man = synthesize(dcfg, repo_path(args.out) / name, workers=workers, progress=not args.no_progress)
        dt = time.perf_counter() - t0
        steps = dcfg.n_sequences * dcfg.seq_len
        print(f"{name}: {man['n_shards']} shards, {steps} steps, {dt:.1f} s")
    return 0
