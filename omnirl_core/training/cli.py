"""Command line for meta-training (see :mod:`omnirl_core.training`).

One process::

    python -m omnirl_core.training params/quick/03_training.yaml [--out DIR] [--resume] [key=value ...]

Eight GPUs (DistributedDataParallel, NCCL; gloo on CPU)::

    torchrun --nproc_per_node 8 -m omnirl_core.training params/paper/03_training.yaml --out outputs/paper/train

``key=value`` overrides use dotted keys (``optim.lr=1e-4 data.batch_size=2``). ``--resume`` continues from
``DIR/checkpoint.pt`` when it exists (and starts afresh otherwise). Exit codes: 0 done, 2 bad configuration or
checkpoint, 3 stopped by non-finite losses.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from ..workbook.config import load_config, repo_path
from ..workbook.fields import ConfigError
from .checkpoints import CheckpointMismatchError
from .config import TrainConfig
from .loop import NonFiniteLossError, train


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m omnirl_core.training", description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML file of a TrainConfig (e.g. params/quick/03_training.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted-key overrides, values parsed as YAML")
    p.add_argument("--out", default=None, help="run folder (default: outputs/train/<config file stem>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint if present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    try:
        cfg = load_config(TrainConfig, args.config, overrides=args.overrides or None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else repo_path("outputs/train") / Path(args.config).stem
    torch.set_flush_denormal(True)  # subnormal floats make CPU backward passes many times slower

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    try:
        rank = torch.distributed.get_rank() if world > 1 else 0
        result = train(cfg, out, resume=args.resume, progress=not args.no_progress and rank == 0)
        if rank == 0:
            print(f"done: {result.step} iterations, last loss {result.last_loss:.4f}, "
                  f"{result.bad_steps} skipped; checkpoint in {out}")
        return 0
    except (CheckpointMismatchError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 3
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
