"""Command line: ``python -m omnirl_core.synthesis PARAMS.yaml --out DIR`` synthesises the datasets of a
02_synthesis parameter file.
"""

from __future__ import annotations

import argparse
import time

from ..workbook.config import load_config, repo_path
from .config import SynthesisConfig
from .writer import synthesize


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnirl_core.synthesis", description=__doc__.splitlines()[0])
    ap.add_argument("params", help="a 02_synthesis YAML (SynthesisConfig)")
    ap.add_argument("--out", required=True, help="output folder; each dataset goes to OUT/<name>")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: the config's)")
    ap.add_argument("--only", action="append", default=None, help="synthesise only this dataset (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. datasets.d_small.n_sequences=8")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_config(SynthesisConfig, args.params, overrides=args.set)
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
