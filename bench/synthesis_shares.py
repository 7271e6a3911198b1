"""What the behaviour mixture puts in a dataset: the share of steps per tag and per behaviour, and how often the
executed action is the label (the oracle's action), for each engine side by side (one process, other random
streams: the columns agree up to sampling noise).

    python bench/synthesis_shares.py --out bench/results/synthesis_shares.md   # dpd mixture, AnyMDP(16, 5), 256 x 4,096
    python bench/synthesis_shares.py --ns 32 --seq-len 8192 --n 128
    python bench/synthesis_shares.py --smoke             # seconds: 8 x 256 steps

Prints one table per quantity with a column per engine (``DatasetConfig.engine``); the numbers are shares of the
non-boundary steps of one shard, seed 0. ``--out`` also writes what it prints to a file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omnirl_core.synthesis import BEHAVIOURS, BOUNDARY, TAG_NAMES, DatasetConfig, synthesize_shard
from omnirl_core.workbook import load_config


def shares(engine: str, args) -> dict[str, dict[str, float]]:
    cfg = {"seed": 0, "ns": args.ns, "na": 5, "seq_len": args.seq_len, "n_sequences": args.n,
           "sequences_per_shard": args.n, "batch_size": min(args.n, 128), "engine": engine}
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
    p.add_argument("--engine", nargs="*", default=["numba", "numpy"], choices=("numba", "numpy"),
                   help="engines to compare [both]")
    p.add_argument("--out", default=None, help="also write the tables to this file")
    p.add_argument("--smoke", action="store_true", help="seconds: a tiny shard (checks that the script runs)")
    args = p.parse_args()
    for name, full, smoke in (("seq_len", 4096, 256), ("n", 256, 8)):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    cols = {engine: shares(engine, args) for engine in args.engine}
    lines = [f"`python bench/synthesis_shares.py` (AnyMDP({args.ns}, 5), {args.n} x {args.seq_len} steps, seed 0; "
             "shares of the non-boundary steps)"]
    for table in next(iter(cols.values())):
        lines += ["", f"{table}:", "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for row in cols[next(iter(cols))][table]:
            lines.append(f"| {row} | " + " | ".join(f"{cols[c][table][row]:.3f}" for c in cols) + " |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
