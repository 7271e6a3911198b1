"""What starting a job costs on one machine: ``run_on_devices`` (notebook 05's spread, one process per variant) against
submitit's ``LocalExecutor`` (``python -m omnirl_core.studies FILE --cluster local``), each on a trivial job, beside
the imports every variant's job pays either way; and the size of the paper profile's SLURM array.

Jobs run one at a time on one slot, each timed from its start to its result (both sides polled every 10 ms):

- ``run_on_devices``: a process ``python -c pass`` with its log file;
- submitit ``LocalExecutor``: a trivial function, pickled, run by submitit's controller and job processes, its result
  read back;
- the imports of a variant's job (``omnirl_core.studies.ablations`` and torch), started as ``run_on_devices`` does.

    .venv/bin/python bench/cluster_overhead.py --out bench/results/cluster_overhead.md   # about a minute
    .venv/bin/python bench/cluster_overhead.py --smoke                                  # seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnirl_core.studies.ablations import AblationConfig  # noqa: E402
from omnirl_core.studies.cluster import pending_runs  # noqa: E402
from omnirl_core.workbook import load_config  # noqa: E402
from omnirl_core.workbook.devices import run_on_devices  # noqa: E402

PAPER = "params/paper/05_ablations.yaml"


def submitit_version() -> str:
    import submitit

    return submitit.__version__


def trivial() -> int:
    return 0


def time_processes(cmd: list[str], jobs: int, folder: Path) -> list[float]:
    out = []
    for i in range(jobs):
        t0 = time.perf_counter()
        run_on_devices([(f"job {i}", cmd, folder / f"{i}.log")], [None], log=None, poll_seconds=0.01)
        out.append(time.perf_counter() - t0)
    return out


def time_submitit_local(jobs: int, folder: Path) -> list[float]:
    import submitit

    executor = submitit.LocalExecutor(folder=folder)
    out = []
    for _ in range(jobs):
        t0 = time.perf_counter()
        job = executor.submit(trivial)
        while not job.done():
            time.sleep(0.01)
        assert job.result() == 0
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=8, help="jobs per row (default 8)")
    p.add_argument("--smoke", action="store_true", help="1 job per row")
    p.add_argument("--out", default=None, help="also write the report to this file")
    args = p.parse_args(argv)
    jobs = 1 if args.smoke else args.jobs
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [("`run_on_devices`: `python -c pass`", time_processes([sys.executable, "-c", "pass"], jobs, tmp)),
                ("submitit `LocalExecutor`: a trivial function", time_submitit_local(jobs, tmp / "submitit")),
                ("`run_on_devices`: a variant job's imports (`omnirl_core.studies.ablations`, torch)",
                 time_processes([sys.executable, "-c", "import omnirl_core.studies.ablations, torch"], jobs, tmp))]
    cfg = load_config(AblationConfig, ROOT / PAPER)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as empty:
        runs = pending_runs(cfg, empty)
    scan = time.perf_counter() - t0
    command = " ".join(["OMP_NUM_THREADS=1", ".venv/bin/python", "bench/cluster_overhead.py",
                        *(argv if argv is not None else sys.argv[1:])])
    lines = [f"`{command}`", "",
             f"Measured {time.strftime('%Y-%m-%d')} on this {os.cpu_count()}-core machine (Python "
             f"{platform.python_version()}, submitit {submitit_version()}, load average {load:.1f} at start); {jobs} "
             "jobs per row, one at a time, each from its start to its result.", "",
             "| how a job is started | jobs | median seconds per job | min | max |", "|---|---|---|---|---|"]
    for name, times in rows:
        lines.append(f"| {name} | {len(times)} | {statistics.median(times):.2f} | {min(times):.2f} | "
                     f"{max(times):.2f} |")
    base, sub, imports = (statistics.median(t) for _, t in rows)
    lines += ["", f"submitit's own cost per job: {sub - base:+.2f} s over a bare process, against "
              f"{imports:.2f} s of imports that every variant's job pays either way.", "",
              f"{PAPER}: {len(runs)} runs (studies x variants x seeds, equal runs once), submitted as one SLURM "
              f"array of {len(runs)} elements; finding them took {scan:.2f} s."]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
