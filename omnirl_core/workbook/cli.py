"""Command line of the workbook runner (``python -m omnirl_core.workbook``); see :mod:`.runner`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from . import config as _config
from .errors import CliParser, run_cli
from .runner import (
    DEFAULT_KERNEL,
    DEFAULT_REGISTRY,
    NotebookFailed,
    _load_registry,
    _plan,
    _pretty,
    run_workbook,
)


def _parser() -> CliParser:
    parser = CliParser(
        prog="python -m omnirl_core.workbook",
        description="Execute the workbook notebooks with papermill, one validated parameter YAML each.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: CliParser) -> None:
        p.add_argument("params_dir", metavar="PARAMS_DIR", help="folder of NN_name.yaml files, e.g. params/quick")
        p.add_argument(
            "--only",
            action="append",
            metavar="NN",
            help="run only this notebook (number such as 01, or full name); repeatable",
        )
        p.add_argument("--notebooks-dir", metavar="DIR", help="folder of NN_name.py notebooks (default: notebooks/)")
        p.add_argument("--set", dest="overrides", action="append", metavar="[NN:]KEY=VALUE",
                       help="override a parameter (dotted key, YAML value) of notebook NN, or of every selected one")
        p.add_argument(
            "--registry",
            metavar="MODULE:ATTR",
            default=DEFAULT_REGISTRY,
            help=f"mapping of notebook names to config classes (default: {DEFAULT_REGISTRY})",
        )

    run = sub.add_parser("run", help="validate every parameter file, then execute the notebooks in order")
    common(run)
    run.add_argument("--run-name", metavar="NAME", help="output sub-folder (default: the name of PARAMS_DIR)")
    run.add_argument("--output-root", metavar="DIR", help="where run folders go (default: outputs/)")
    run.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel name (default: {DEFAULT_KERNEL})")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' cell output")

    chk = sub.add_parser("check", help="validate the parameter files only")
    common(chk)

    aud = sub.add_parser("audit", help="read a run folder's executed notebooks: figures shown once, no stray "
                         "outputs, claims.json with computed verdicts (exit 1 on a problem)")
    aud.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. outputs/quick")

    desc = sub.add_parser("describe", help="print the fields of every registered configuration")
    desc.add_argument("--registry", metavar="MODULE:ATTR", default=DEFAULT_REGISTRY)
    return parser


def _describe_all(registry: Mapping[str, type]) -> str:
    parts = []
    for stem, cls in registry.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        parts.append(f"## {stem}: {cls.__name__}\n")
        if doc and not doc[0].startswith(cls.__name__ + "("):
            parts.append(doc[0] + "\n")
        parts.append(_config.describe(cls) + "\n")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omnirl_core.workbook``: exit 0 done, 1 a notebook failed, 2 bad input (one line on stderr)."""
    return run_cli(_main, argv, prog="python -m omnirl_core.workbook")


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "describe":
            print(_describe_all(_load_registry(args.registry)))
            return 0
        if args.command == "audit":
            from .audit import audit_run

            found = audit_run(args.run_dir)
            if not found:
                print(f"{args.run_dir}: no executed NN_name.ipynb notebook here", file=sys.stderr)
                return 1
            for name, problems in found.items():
                print(f"{'ok ' if not problems else 'BAD'} {name}")
                for p in problems:
                    print(f"    {p}")
            return int(any(found.values()))
        if args.command == "check":
            plan = _plan(args.params_dir, notebooks_dir=args.notebooks_dir, only=args.only, registry=args.registry,
                         overrides=args.overrides)
            for warning in plan.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            for job in plan.jobs:
                print(f"ok  {job.stem}  {_pretty(job.params)}  ({type(job.config).__name__})")
            return 0
        if args.log_output:
            import logging

            logging.basicConfig(level=logging.INFO, format="%(message)s")
        run_workbook(
            args.params_dir,
            only=args.only,
            run_name=args.run_name,
            output_root=args.output_root,
            kernel=args.kernel,
            notebooks_dir=args.notebooks_dir,
            registry=args.registry,
            log_output=args.log_output,
            overrides=args.overrides,
        )
        return 0
    except NotebookFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
