"""What the behaviour mixture puts in a dataset: the share of steps per tag and per behaviour, and how often the
executed action is the label (the oracle's action), for each synthesis process side by side.

    python bench/synthesis_shares.py                       # dpd mixture, AnyMDP(16, 5), 256 x 4,096 steps
    python bench/synthesis_shares.py --ns 32 --seq-len 8192 --n 128 --engine numpy
    python bench/synthesis_shares.py --smoke             # seconds: 8 x 256 steps, numpy engine

Prints one table per quantity with a column per process (``DatasetConfig.process``); the numbers are shares of the
non-boundary steps of one shard, seed 0.
"""

from __future__ import annotations

import argparse

from omnirl_core.synthesis import BEHAVIOURS, BOUNDARY, TAG_NAMES, DatasetConfig, synthesize_shard
from omnirl_core.workbook import load_config


def shares(process: str | None, args) -> dict[str, dict[str, float]]:
    cfg = {"seed": 0, "ns": args.ns, "na": 5, "seq_len": args.seq_len, "n_sequences": args.n,
           "sequences_per_shard": args.n, "batch_size": min(args.n, 128), "engine": args.engine}
    if process is not None:
        cfg["process"] = process
    d = synthesize_shard(load_config(DatasetConfig, cfg), 0)
    real = d["behaviour"] != BOUNDARY
    tag, beh = d["tag"][real], d["behaviour"][real]
    agree = d["action"][real] == d["label"][real]
    return {
        "tag share": {TAG_NAMES[t]: float((tag == t).mean()) for t in range(8)},
        "behaviour share": {b: float((beh == i).mean()) for i, b in enumerate(BEHAVIOURS)},
        "action == label, by behaviour": {b: float(agree[beh == i].mean()) if (beh == i).any() else float("nan")
                                          for i, b in enumerate(BEHAVIOURS)} | {"all steps": float(agree.mean())},
        "random actions (tag 6 where shown)": {"share of tagged steps": float((tag == 6).sum() / max((tag != 7).sum(),
                                                                                                     1))},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=None, help="steps per sequence [4096; smoke 256]")
    p.add_argument("--n", type=int, default=None, help="sequences [256; smoke 8]")
    p.add_argument("--engine", default=None, choices=("numba", "numpy"), help="[numba; smoke numpy]")
    p.add_argument("--process", nargs="*", default=None, help="processes to compare (default: all)")
    p.add_argument("--smoke", action="store_true", help="seconds: a tiny shard (checks that the script runs)")
    args = p.parse_args()
    # The numpy engine needs no compilation, which on a cold numba cache would take longer than a smoke run.
    for name, full, smoke in (("seq_len", 4096, 256), ("n", 256, 8), ("engine", "numba", "numpy")):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    field = DatasetConfig.__dataclass_fields__.get("process")
    processes = args.process or ([None] if field is None else ["reference", "workbench_v1"])
    cols = {str(pr): shares(pr, args) for pr in processes}
    for table in next(iter(cols.values())):
        print(f"\n{table} (AnyMDP({args.ns}, 5), {args.n} x {args.seq_len} steps, {args.engine})")
        print(f"| {'':36s} | " + " | ".join(f"{c:>12s}" for c in cols) + " |")
        print("|" + "-" * 38 + "|" + "|".join("-" * 14 for _ in cols) + "|")
        for row in cols[next(iter(cols))][table]:
            print(f"| {row:36s} | " + " | ".join(f"{cols[c][table][row]:12.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
