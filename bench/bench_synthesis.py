#!/usr/bin/env python
"""Data-synthesis speed: our vectorised DPD synthesis against a reference-style loop, in one run, one table.

- ours: ``omnirl_core.synthesis.synthesize_batch`` on ``--batch`` sequences of one ns advanced together as
  arrays (one process, one core); "sim" times the stepping only, "end to end" adds drawing the tasks and
  solving their oracles (everything a shard needs except writing it);
- reference-style: ``bench/reference_synthesis.py`` in the reference venv (``bench/.ref-venv``): Xenoverse
  0.1.14.0's env and solvers, one task at a time, Python per step. Without that venv, a local stand-in runs
  instead (our code with one sequence per batch, i.e. Python per step on one task) and the table says so.

Both sides get the same thread settings (``--threads``, default 1) before numpy is imported. The two
sides are measured alternately, ``--repeats`` times each, and the best rate of each is kept (a shared
machine slows both alike). Under the table: the projection of core-hours and disk for D_Large (6B steps).

    python bench/bench_synthesis.py [--quick] [--markdown] [--json-out PATH]
    python bench/bench_synthesis.py --smoke     # seconds: tiny sizes, checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF_PY = ROOT / "bench" / ".ref-venv" / "bin" / "python"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", type=int, default=16, help="state count of the comparison (default 16, D_Small)")
    ap.add_argument("--ns-large", type=int, default=72, help="ns of the extra D_Large-like row (mean of 16..128)")
    ap.add_argument("--batch", type=int, default=256, help="sequences advanced together (ours)")
    ap.add_argument("--seq-len", type=int, default=8192, help="steps per sequence (D_Small: 8192)")
    ap.add_argument("--ref-steps", type=int, default=20000, help="steps of the reference-style loop per repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    ap.add_argument("--smoke", action="store_true", help="tiny runs (seconds): checks that the script runs; the "
                    "numbers mean little")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.seq_len, a.ref_steps, a.repeats = 64, 2048, 8000, 1
    if a.smoke:
        a.batch, a.seq_len, a.ref_steps, a.repeats, a.ns_large = 8, 256, 400, 1, 32
    return a


def _ours(ns: int, batch: int, seq_len: int, seed: int, engine: str = "numba") -> dict:
    from omnirl_core.synthesis import DatasetConfig, dataset_tasks, shard_tasks, synthesize_batch
    from omnirl_core.workbook import load_config

    cfg = load_config(DatasetConfig, {"ns": ns, "seq_len": seq_len, "n_sequences": batch,
                                      "sequences_per_shard": batch, "batch_size": batch, "seed": seed,
                                      "engine": engine})
    t0 = time.perf_counter()
    ss = dataset_tasks(cfg, 0)[3]
    tasks = shard_tasks(cfg, 0)
    t_tasks = time.perf_counter() - t0
    t0 = time.perf_counter()
    synthesize_batch(tasks, cfg, ss)  # includes the oracle solves (label and behaviour oracles)
    t_sim = time.perf_counter() - t0
    steps = batch * seq_len
    return {"steps": steps, "sim_s": t_sim, "tasks_s": t_tasks, "sim_rate": steps / t_sim,
            "e2e_rate": steps / (t_sim + t_tasks)}


def _reference(ns: int, steps: int, seq_len: int, env: dict) -> dict:
    if REF_PY.exists():
        cmd = [str(REF_PY), str(ROOT / "bench" / "reference_synthesis.py"), "--steps", str(steps), "--ns", str(ns),
               "--seq-len", str(seq_len)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=3600)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["kind"] = "Xenoverse 0.1.14.0 env + solvers, one task, Python per step"
        return res
    # stand-in: our own code with a batch of one sequence (Python per step on one task)
    r = _ours(ns, 1, steps, seed=99, engine="numpy")
    return {"steps": r["steps"], "seconds": r["sim_s"], "steps_per_s": r["sim_rate"], "e2e_steps_per_s": r["e2e_rate"],
            "kind": "stand-in (no bench/.ref-venv): our numpy engine, one sequence per batch"}


def main(argv=None) -> int:
    a = _args(argv)
    for v in THREAD_VARS:
        os.environ[v] = str(a.threads)
    import numpy as np  # noqa: F401  (after the thread settings)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=a.threads, user_api="blas")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"warming up (ns={a.ns}) ...", file=sys.stderr)
    _ours(a.ns, 8, 64, seed=1)  # compiles (or loads the cached) kernel outside the timers
    ours, refs, numpy_rows = [], [], []
    for rep in range(a.repeats):
        print(f"repeat {rep + 1}/{a.repeats}: reference-style loop ...", file=sys.stderr)
        refs.append(_reference(a.ns, a.ref_steps, min(a.seq_len, a.ref_steps), env))
        print(f"repeat {rep + 1}/{a.repeats}: ours (B={a.batch}, T={a.seq_len}) ...", file=sys.stderr)
        ours.append(_ours(a.ns, a.batch, a.seq_len, seed=rep))
        print(f"repeat {rep + 1}/{a.repeats}: ours, numpy engine ...", file=sys.stderr)
        numpy_rows.append(_ours(a.ns, a.batch, max(256, a.seq_len // 4), seed=rep, engine="numpy"))
    print(f"ours at ns={a.ns_large} ...", file=sys.stderr)
    large = _ours(a.ns_large, max(16, a.batch // 4), a.seq_len, seed=7)
    ref_rate = max(r["steps_per_s"] for r in refs)
    ref_e2e = max(r["e2e_steps_per_s"] for r in refs)
    sim = max(o["sim_rate"] for o in ours)
    e2e = max(o["e2e_rate"] for o in ours)
    npy = max(o["sim_rate"] for o in numpy_rows)
    bytes_per_step = 1 + 1 + 1 + 4 + 1 + 1  # obs, tag, action (uint8), reward (float32), label, behaviour (uint8)
    d_large_steps = 6e9
    rows = [
        ("reference-style loop, stepping", f"ns={a.ns}", ref_rate, 1.0, refs[0]["kind"]),
        ("reference-style loop, end to end", f"ns={a.ns}", ref_e2e, 1.0, "+ its task sampling and solver setup"),
        ("ours, stepping", f"ns={a.ns}, B={a.batch}", sim, sim / ref_rate, "compiled engine, one core"),
        ("ours, end to end", f"ns={a.ns}, B={a.batch}", e2e, e2e / ref_e2e, "+ tasks, oracles; vs ref. end to end"),
        ("ours, numpy engine, stepping", f"ns={a.ns}, B={a.batch}", npy, npy / ref_rate, "arrays over the batch"),
        ("ours, end to end", f"ns={a.ns_large}, B={max(16, a.batch // 4)}", large["e2e_rate"],
         large["e2e_rate"] / ref_e2e, "D_Large-like state count; vs ref. end to end at ns=16"),
    ]
    d_large_rate = large["e2e_rate"]
    report = {
        "ns": a.ns, "threads": a.threads, "repeats": a.repeats, "reference": refs, "ours": ours,
        "ours_numpy": numpy_rows, "large": large,
        "speedup_sim": sim / ref_rate, "speedup_e2e": e2e / ref_e2e, "target": 50.0,
        "d_large_core_hours": d_large_steps / d_large_rate / 3600,
        "d_large_disk_gb": d_large_steps * bytes_per_step / 1e9,
        "load_average": os.getloadavg(), "cpu_count": os.cpu_count(),
    }
    head = ["row", "setting", "steps/s per core", "speed-up", "note"]
    fmt = [[r[0], r[1], f"{r[2]:,.0f}", f"{r[3]:.1f}x", r[4]] for r in rows]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in fmt:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *fmt)]
        for r in [head, *fmt]:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    ok = "meets" if report["speedup_e2e"] >= 50 else "misses"
    print(f"\nend-to-end speed-up {report['speedup_e2e']:.1f}x {ok} the 50x target "
          f"(stepping only: {report['speedup_sim']:.1f}x); threads={a.threads}, load average "
          f"{report['load_average'][0]:.1f} on {report['cpu_count']} cores")
    print(f"D_Large (6B steps, ns 16..128): about {report['d_large_core_hours']:,.0f} core-hours at "
          f"{d_large_rate:,.0f} steps/s per core; disk {report['d_large_disk_gb']:.0f} GB "
          f"({bytes_per_step} bytes per step)")
    if a.smoke:
        print("smoke run: sizes too small for the target and the projection; it checks that the benchmark runs")
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
