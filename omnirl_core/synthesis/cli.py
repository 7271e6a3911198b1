"""Command line: ``python -m omnirl_core.synthesis PARAMS.yaml --out DIR`` synthesises the datasets of a
02_synthesis parameter file.

Several nodes, one shared folder: each runs the same command with ``--part RANK/WORLD`` (``--part env`` reads
``RANK``/``WORLD_SIZE`` or SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``) and writes its disjoint share of the shards;
one run without ``--part`` afterwards verifies them all and writes the manifest.

Exit codes: 0 done, 2 bad input (parameter file, ``--only``, ``--workers``, a dataset folder of another
configuration or being written by another synthesis), each reported as one line on stderr.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..workbook.config import load_config
from ..workbook.errors import CliParser, InputError, run_cli
from .behaviours import SOURCES, behaviour_table
from .config import SynthesisConfig
from .format import TAG_NAMES
from .writer import synthesize

PROG = "python -m omnirl_core.synthesis"


def _parser() -> CliParser:
    ap = CliParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="?", help="a 02_synthesis YAML (SynthesisConfig)")
    ap.add_argument("--out", help="output folder; each dataset goes to OUT/<name> (required with PARAMS)")
    ap.add_argument("--list-behaviours", action="store_true",
                    help="list the registered behaviours (plug-ins of OMNIRL_PLUGINS included) and exit")
    ap.add_argument("--workers", type=int, default=None, help="worker processes, >= 1 (default: the config's)")
    ap.add_argument("--only", action="append", default=None, help="synthesise only this dataset (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. datasets.d_small.n_sequences=8")
    ap.add_argument("--part", default=None, metavar="RANK/WORLD",
                    help="write only the shards k with k %% WORLD == RANK (several nodes); 'env': from the launcher")
    ap.add_argument("--force", action="store_true",
                    help="start even when the dataset is larger than the free disk or the workers exceed 2 per core")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def parse_part(text: str | None, env: dict | None = None) -> tuple[int, int] | None:
    """``--part``: ``"RANK/WORLD"``, or ``"env"`` for the launcher's rank variables; None without it."""
    if text is None:
        return None
    if text == "env":
        env = dict(os.environ if env is None else env)
        for rank_key, world_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
            if rank_key in env and world_key in env:
                text = f"{env[rank_key]}/{env[world_key]}"
                break
        else:
            raise InputError("--part env: neither RANK/WORLD_SIZE nor SLURM_PROCID/SLURM_NTASKS is set")
    rank, _, world = text.partition("/")
    if not (rank.isdigit() and world.isdigit() and int(rank) < int(world)):
        raise InputError(f"--part {text!r}: must be RANK/WORLD with 0 <= RANK < WORLD, e.g. 0/4")
    return int(rank), int(world)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; known errors become one line on stderr and exit code 2 (see the module docstring)."""
    return run_cli(_main, argv, prog=PROG)


def _main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_behaviours:
        table = behaviour_table()
        print(f"{'id':3s} {'name':21s} {'tag':18s} {'source':8s} description")
        for i, b in enumerate(table.entries):
            what = b.doc or ("its own act rule" if b.source == "plugin" else "")
            print(f"{i:<3d} {b.name:21s} {b.tag} {TAG_NAMES[b.tag]:16s} {SOURCES[table.src[i]]:8s} {what}")
        return 0
    if args.params is None or args.out is None:
        parser.error("PARAMS and --out are required (or --list-behaviours)")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be >= 1")
    cfg = load_config(SynthesisConfig, args.params, overrides=args.set)
    unknown = [name for name in args.only or [] if name not in cfg.datasets]
    if unknown:
        raise InputError(f"--only {unknown[0]!r}: {args.params} has no such dataset; it has "
                         f"{', '.join(cfg.datasets) or 'none'}")
    workers = args.workers or cfg.workers
    part = parse_part(args.part)
    out = Path(args.out).expanduser().resolve()  # relative to the working directory, as for every command line
    for name, dcfg in cfg.datasets.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        folder = out / name
        man = synthesize(dcfg, folder, workers=workers, progress=not args.no_progress, part=part,
                         force=args.force or cfg.force)
        dt = time.perf_counter() - t0
        if part is None:
            print(f"{name}: {man['n_shards']} shards, {dcfg.n_sequences * dcfg.seq_len} steps, {dt:.1f} s, in {folder}")
        else:
            print(f"{name}: part {part[0]}/{part[1]}: {len(man['shards'])} of {man['n_shards']} shards, {dt:.1f} s; "
                  "run once more without --part to write the manifest")
    return 0
