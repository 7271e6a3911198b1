"""Command line for meta-training (see :mod:`omnirl_core.training`).

One process::

    python -m omnirl_core.training params/quick/03_training.yaml [--out DIR] [--resume] [key=value ...]

Eight GPUs (DistributedDataParallel, NCCL; gloo on CPU)::

    torchrun --nproc_per_node 8 -m omnirl_core.training params/paper/03_training.yaml --out outputs/paper/train

The long-context stage after a run (``post_training`` in the YAML: D_Long), into the folder ``post`` beside
``DIR``, started from ``DIR/model.safetensors``::

    python -m omnirl_core.training params/paper/03_training.yaml --out outputs/paper/03_training/run --post

``key=value`` overrides use dotted keys (``optim.lr=1e-4 data.batch_size=2``). ``--resume`` continues from
``DIR/checkpoint.pt`` when it exists (and starts afresh otherwise); it refuses a checkpoint written with other
settings that would make the resume inexact unless ``--allow-changes`` is given, and a checkpoint (or
``init_from`` file) without a checksum unless ``--allow-unverified`` is given. A refused run leaves its folder as it
was. Exit codes: 0 done, 2 bad input (configuration, data, checkpoint; one line on stderr), 3 stopped by non-finite
losses or weights, 75 preempted.

Preemption: SIGTERM or SIGUSR1 makes the run finish its iteration, write a checkpoint and exit with 75
(``PREEMPTED_EXIT``), all processes of a torchrun together; ``preempted.json`` in the run folder records it (torchrun
itself exits with 1 whatever its processes returned). The same command with ``--resume`` continues exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..workbook.config import load_config, repo_path
from ..workbook.errors import CliParser, run_cli
from .checkpoints import WEIGHTS
from .config import TrainConfig, post_training_config
from .loop import train
from .preemption import PREEMPTED_EXIT, PREEMPTED_FILE, TrainingPreempted

PROG = "python -m omnirl_core.training"


EPILOG = (f"exit codes: 0 done, 2 bad input, 3 stopped by non-finite losses or weights, {PREEMPTED_EXIT} preempted: "
          f"SIGTERM or SIGUSR1 wrote a checkpoint at the end of the iteration under way (and {PREEMPTED_FILE} in the "
          "run folder); the same command with --resume continues the run exactly")


def _parser() -> CliParser:
    p = CliParser(prog=PROG, description=__doc__.split("\n")[0], epilog=EPILOG)
    p.add_argument("config", help="YAML file of a TrainConfig (e.g. params/quick/03_training.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted-key overrides, values parsed as YAML")
    p.add_argument("--out", default=None, help="run folder (default: outputs/train/<config file stem>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint if present")
    p.add_argument("--allow-changes", action="store_true",
                   help="resume although settings other than steps, logging, checkpointing and evaluation changed")
    p.add_argument("--allow-unverified", action="store_true",
                   help="accept a checkpoint or init_from file without a checksum (written by an older version)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--post", action="store_true",
                   help="run the post_training stage from OUT/model.safetensors, into the folder 'post' beside OUT")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line (exit codes in the module docstring)."""
    return run_cli(_main, argv, prog=PROG)


def _main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    cfg = load_config(TrainConfig, args.config, overrides=args.overrides or None)
    # --out is relative to the working directory (as for every command line); the default lies in the repository
    out = Path(args.out).expanduser().resolve() if args.out else repo_path("outputs/train") / Path(args.config).stem
    if args.post:
        cfg = post_training_config(cfg, out.resolve() / WEIGHTS)
        out = out.parent / "post"
    torch.set_flush_denormal(True)  # subnormal floats make CPU backward passes many times slower

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    try:
        rank = torch.distributed.get_rank() if world > 1 else 0
        code = 0
        try:
            result = train(cfg, out, resume=args.resume, progress=not args.no_progress and rank == 0,
                           allow_changes=args.allow_changes, allow_unverified=args.allow_unverified)
        except TrainingPreempted:  # the checkpoint is written and the run said so on stderr
            code = PREEMPTED_EXIT
        else:
            if rank == 0 and result.start >= result.step:
                print(f"nothing to do: the checkpoint in {out} is at iteration {result.start}, the steps={result.step} "
                      f"asked for (last loss {result.last_loss:.4f}); raise steps to continue the run")
            elif rank == 0:
                print(f"done: {result.step} iterations, last loss {result.last_loss:.4f}, "
                      f"{result.bad_steps} skipped; checkpoint in {out}")
        if world > 1:  # every rank done before any tears gloo down (a peer gone mid-teardown once aborted a rank)
            torch.distributed.barrier()
        return code
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
