"""Measure task statistics of the reference sampler (Xenoverse 0.1.14.0) with OUR statistic definitions.

Run inside the reference venv (see bench/setup_reference.sh); it imports omnirl_core from this checkout
for the statistic definitions only (numpy is all they need). Writes a JSON that tests/data keeps, with
provenance, for the statistical-agreement tests:

    bench/.ref-venv/bin/python bench/reference_task_stats.py tests/data/reference_task_stats.json
"""

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xenoverse.anymdp import AnyMDPTaskSampler  # noqa: E402

from omnirl_core.world import (
    Task,  # noqa: E402
    task_statistics,  # noqa: E402
)
from omnirl_core.world.stats import summarise

SIZES = {1: 400, 16: 200, 32: 120, 64: 60, 128: 16}
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


def main(out_path: str) -> None:
    import xenoverse

    out = {
        "provenance": (
            f"Tasks drawn by Xenoverse {getattr(xenoverse, '__version__', '0.1.14.0')} "
            f"AnyMDPTaskSampler(ns, 5, seed={SEED0}+i), statistics by omnirl_core.world.stats.task_statistics; "
            f"measured {time.strftime('%Y-%m-%d')} on {platform.machine()} with bench/reference_task_stats.py"
        ),
        "seed0": SEED0,
    }
    for ns, n in SIZES.items():
        t0 = time.perf_counter()
        rows = [task_statistics(to_task(AnyMDPTaskSampler(ns, 5, seed=SEED0 + i))) for i in range(n)]
        out[f"ns{ns}"] = summarise(rows)
        print(f"ns={ns}: {n} tasks in {time.perf_counter() - t0:.1f}s", flush=True)
    Path(out_path).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
