"""Measure task statistics of the reference sampler (Xenoverse 0.1.14.0) with OUR statistic definitions.

Run inside the reference venv (see bench/setup_reference.sh); it imports omnirl_core from this checkout
for the statistic definitions only (numpy is all they need). Writes a JSON that tests/data keeps, with
provenance (task counts, timings, command, versions under "generated"), for the statistical-agreement
tests:

    bench/.ref-venv/bin/python bench/reference_task_stats.py tests/data/reference_task_stats.json

Options: --sizes 1:20000,16:2000 (ns:tasks pairs; default SIZES), --only 16,32 (measure only these ns
and keep the other entries of an existing output file), --jobs N (worker processes; the same numbers as
one process). Measured on one core shared with another job: 0.4 ms per bandit, 0.4 s per ns=16 task, 1.0 s
at ns=32, 3.8 s at ns=64 and 21 s at ns=128, so the default sizes take about 32 minutes (7 s, 14, 5, 8 and
6 minutes), or --jobs 8 about 5 on a free 8-core machine.
"""

import argparse
import json
import platform
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    from xenoverse.anymdp import AnyMDPTaskSampler

    MISSING: ImportError | None = None
except ImportError as exc:  # not the reference venv: main() says so in one line, after --help has had its say
    MISSING = exc

from omnirl_core.world import Task, task_statistics  # noqa: E402
from omnirl_core.world.stats import DISTRIBUTION_LEVELS, reward_scale_statistics, summarise  # noqa: E402

SIZES = {1: 20000, 16: 2000, 32: 300, 64: 120, 128: 16}
SEED0 = 1000


def to_task(d: dict) -> Task:
    ns_real = d["transition"].shape[0]
    start = np.zeros(ns_real)
    start[np.asarray(d["s_0"], int)] = d["s_0_prob"]
    terminal = np.zeros(ns_real, bool)
    terminal[np.asarray(d["s_e"], int)] = True
    return Task(
        transition=d["transition"],
        reward=d["reward"],
        reward_noise=d["reward_noise"],
        start_prob=start,
        terminal=terminal,
        max_steps=d["max_steps"],
        state_mapping=d["state_mapping"],
        n_obs=d["ns"],
        kind="bandit" if ns_real == 1 else "anymdp",
    )


def measure(job: tuple[int, int]) -> dict[str, float]:
    ns, seed = job
    task = to_task(AnyMDPTaskSampler(ns, 5, seed=seed))
    return {**task_statistics(task), **reward_scale_statistics(task)}


def parse_sizes(text: str) -> dict[int, int]:
    return {int(a): int(b) for a, b in (pair.split(":") for pair in text.split(","))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--sizes", type=parse_sizes, default=SIZES)
    ap.add_argument("--only", type=lambda s: [int(v) for v in s.split(",")], default=None)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    if MISSING is not None:
        sys.exit(
            f"reference_task_stats.py: cannot import xenoverse ({MISSING}); it runs in the reference venv: "
            "bash bench/setup_reference.sh, then bench/.ref-venv/bin/python bench/reference_task_stats.py OUT"
        )
    import xenoverse

    out_path = Path(args.out)
    version = getattr(xenoverse, "__version__", "0.1.14.0")
    out = json.loads(out_path.read_text()) if args.only and out_path.exists() else {}
    generated = out.get("generated", {})
    sizes = generated.get("sizes", {}) if args.only else {}
    out.update(
        provenance=(
            f"Tasks drawn by Xenoverse {version} AnyMDPTaskSampler(ns, 5, seed={SEED0}+i) for i < n, statistics by "
            "omnirl_core.world.stats.task_statistics and reward_scale_statistics, summarised by "
            "omnirl_core.world.stats.summarise at DISTRIBUTION_LEVELS; written by bench/reference_task_stats.py "
            "(task counts, dates and timings per ns under generated.sizes)"
        ),
        seed0=SEED0,
    )
    command = "bench/.ref-venv/bin/python bench/reference_task_stats.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    pool = Pool(args.jobs) if args.jobs > 1 else None
    try:
        for ns, n in args.sizes.items():
            if args.only and ns not in args.only:
                continue
            t0 = time.perf_counter()
            jobs = [(ns, SEED0 + i) for i in range(n)]
            rows = list(pool.imap(measure, jobs, chunksize=max(1, n // (8 * args.jobs)))) if pool else [
                measure(j) for j in jobs
            ]
            seconds = time.perf_counter() - t0
            out[f"ns{ns}"] = summarise(rows, levels=DISTRIBUTION_LEVELS)
            sizes[str(ns)] = {"n": n, "seconds": round(seconds, 1), "jobs": args.jobs,
                              "date": time.strftime("%Y-%m-%d"), "command": command}
            print(f"ns={ns}: {n} tasks in {seconds:.1f}s", flush=True)
    finally:
        if pool:
            pool.close()
    out["generated"] = {
        "xenoverse": version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "levels": list(DISTRIBUTION_LEVELS),
        "sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
    }
    out = {k: out[k] for k in ("provenance", "seed0", "generated")} | {
        k: out[k] for k in sorted((k for k in out if k.startswith("ns")), key=lambda k: int(k[2:]))
    }
    out_path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
