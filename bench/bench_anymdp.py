#!/usr/bin/env python
"""AnyMDP speed: ``omnirl_core`` against the reference library Xenoverse 0.1.14.0, in one run, one table.

Our side runs in this process; the reference runs in its own venv (``bench/.ref-venv``) as a worker
process (``bench/reference_anymdp.py --serve``) that answers one request at a time, so the two sides
are measured interleaved: seed by seed, task by task, repeat by repeat. Both processes get the same
BLAS/OpenMP/numba thread settings (``--threads``, default 1). Every timer wraps only the library call
under test; warm-up calls (numba compilation, first imports) come before any timer.

Rows of the table:

- task sampling, seconds per task at each ``--ns`` (na = 5): ``sample_anymdp(ns, 5, seed=s)`` against
  ``AnyMDPTaskSampler(ns, 5, seed=s)``, the same seeds on both sides; median over seeds;
- value iteration at ns = ``--vi-ns`` on the same tasks (drawn by our sampler and handed to the
  reference as arrays): the reference's ``solver.update_value_matrix`` (numba, damped in-place sweeps)
  against our ``value_iteration`` / ``policy_iteration`` on one task, and on a stacked batch of
  ``--vi-batch`` tasks (time per task = batch time / batch size); mean seconds per task over the tasks;
  the values of both sides are compared and the differences printed under the table;
- env steps per second with uniform random actions and a reset at each episode end: the reference's
  ``AnyMDPEnv`` against our ``AnyMDPEnv`` (same task) and ``BatchedAnyMDPEnv`` (``--env-batch`` envs,
  counting every env's step); median over repeats.

Usage::

    python bench/bench_anymdp.py            # full run (a few minutes)
    python bench/bench_anymdp.py --quick    # short run (a minute or two)
    python bench/bench_anymdp.py --smoke    # seconds, tiny sizes; without bench/.ref-venv: our side only
    python bench/bench_anymdp.py --markdown # table as Markdown
    python bench/bench_anymdp.py --setup    # create bench/.ref-venv first if it is missing
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REF_VENV = HERE / ".ref-venv"
REF_SCRIPT = HERE / "reference_anymdp.py"
SETUP_SCRIPT = HERE / "setup_reference.sh"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)
NA = 5
TARGETS = {"sample_16": 50.0, "sample_128": 200.0, "vi": 50.0, "env_batched": 100.0}


# ---------------------------------------------------------------------------------------------- setup
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare omnirl_core's AnyMDP sampler, planners and envs with Xenoverse 0.1.14.0.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="few repeats and small batches: a short run")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, tiny sizes (checks that the script runs, measures nothing useful); without the reference "
        "venv our side runs alone and the reference column stays empty",
    )
    p.add_argument(
        "--ns", type=int, nargs="+", default=None, help="state counts for task sampling [16 32 64 128; smoke 16 32]"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="seeds per ns for sampling, repeats for envs [7; quick 2; smoke 1]"
    )
    p.add_argument(
        "--repeats-large",
        type=int,
        default=None,
        help="seeds for sampling at ns >= 128, where the reference is slow [3; quick 1]",
    )
    p.add_argument("--vi-ns", type=int, default=None, help="state count of the value-iteration tasks [128; smoke 32]")
    p.add_argument("--vi-batch", type=int, default=None, help="tasks in our stacked batch [16; quick 4; smoke 2]")
    p.add_argument(
        "--vi-tasks",
        type=int,
        default=None,
        help="of those, how many both sides solve one by one [all of the batch; quick 2; smoke 1]",
    )
    p.add_argument("--env-ns", type=int, default=None, help="state count of the env tasks [64; smoke 16]")
    p.add_argument(
        "--env-steps", type=int, default=None, help="steps per repeat of the single envs [20000; quick 5000; smoke 500]"
    )
    p.add_argument("--env-batch", type=int, default=None, help="envs in our BatchedAnyMDPEnv [256; smoke 16]")
    p.add_argument(
        "--env-batch-steps", type=int, default=None, help="batched steps per repeat [1000; quick 200; smoke 50]"
    )
    p.add_argument(
        "--env-tasks", type=int, default=None, help="distinct tasks spread over the batched envs [16; smoke 4]"
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/numba threads, the same for both processes")
    p.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    p.add_argument("--json-out", type=Path, help="also write every raw timing to this JSON file")
    p.add_argument("--setup", action="store_true", help="create bench/.ref-venv (setup_reference.sh) if it is missing")
    p.add_argument(
        "--reference-python",
        type=Path,
        default=REF_VENV / "bin" / "python",
        help="python of the venv that holds xenoverse",
    )
    args = p.parse_args(argv)
    quick, smoke = args.quick, args.smoke

    def fill(name: str, full, small, tiny=None):
        if getattr(args, name) is None:
            setattr(args, name, tiny if smoke and tiny is not None else small if quick or smoke else full)

    fill("ns", [16, 32, 64, 128], [16, 32, 64, 128], [16, 32])
    fill("repeats", 7, 2, 1)
    fill("repeats_large", 3, 1)
    fill("vi_ns", 128, 128, 32)
    fill("vi_batch", 16, 4, 2)
    fill("env_ns", 64, 64, 16)
    fill("env_steps", 20_000, 5_000, 500)
    fill("env_batch", 256, 256, 16)
    fill("env_batch_steps", 1_000, 200, 50)
    fill("env_tasks", 16, 16, 4)
    if args.vi_tasks is None:
        args.vi_tasks = 1 if smoke else min(2, args.vi_batch) if quick else args.vi_batch
    args.vi_tasks = min(args.vi_tasks, args.vi_batch)
    for name in (
        "repeats",
        "repeats_large",
        "vi_batch",
        "vi_tasks",
        "env_steps",
        "env_batch",
        "env_batch_steps",
        "env_tasks",
        "threads",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def pin_threads(n: int) -> dict[str, str]:
    """Thread settings for both processes; must run before numpy is first imported here."""
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread settings; they may not apply here", file=sys.stderr)
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    return {var: os.environ[var] for var in THREAD_VARS}


def ensure_reference(args: argparse.Namespace) -> Path | None:
    """The reference venv's python; None in a smoke run without it (CI has no reference venv)."""
    python = args.reference_python
    if not python.exists():
        if args.smoke and not args.setup:
            print(
                f"reference venv not found ({python}): reference column skipped; make it with "
                f"`bash {SETUP_SCRIPT.relative_to(ROOT)}` or rerun with --setup",
                file=sys.stderr,
                flush=True,
            )
            return None
        if not args.setup:
            sys.exit(
                f"reference venv not found ({python}).\n"
                f"Create it with `bash {SETUP_SCRIPT.relative_to(ROOT)}` or rerun with --setup."
            )
        print(f"setting up the reference venv with {SETUP_SCRIPT.name} ...", file=sys.stderr, flush=True)
        subprocess.run(["bash", str(SETUP_SCRIPT)], check=True, stdout=sys.stderr)
        if not python.exists():
            sys.exit(f"{SETUP_SCRIPT.name} sets up {REF_VENV}; {python} still does not exist")
    return python


class ReferenceWorker:
    """The reference side: a ``reference_anymdp.py --serve`` process, one JSON line per request."""

    def __init__(self, python: Path) -> None:
        env = dict(os.environ)
        env["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        self.proc = subprocess.Popen(
            [str(python), str(REF_SCRIPT), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(HERE),
        )

    def __call__(self, op: str, **kw) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the reference worker exited (code {self.proc.wait()}) during {op!r}")
        out = json.loads(line)
        if not out.pop("ok", False):
            raise RuntimeError(f"reference {op!r} failed: {out.get('error')}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                self("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------------------------- machine
def machine_info() -> dict:
    import numpy as np

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------------------------- measurements
def export_tasks(tasks, path: Path) -> Path:
    """Stacked arrays of same-sized tasks for the reference worker."""
    import numpy as np

    np.savez(
        path,
        transition=np.stack([t.transition for t in tasks]),
        reward=np.stack([t.reward for t in tasks]),
        reward_noise=np.stack([t.reward_noise for t in tasks]),
        start_prob=np.stack([t.start_prob for t in tasks]),
        terminal=np.stack([t.terminal for t in tasks]),
        state_mapping=np.stack([t.state_mapping for t in tasks]),
        max_steps=np.array([t.max_steps for t in tasks]),
    )
    return path


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t0, out


def warm_up_ours() -> None:
    import numpy as np

    from omnirl_core.world import AnyMDPEnv, BatchedAnyMDPEnv, policy_iteration, sample_anymdp
    from omnirl_core.world.oracle import stack_tasks, value_iteration

    task = sample_anymdp(16, NA, seed=0)
    value_iteration(task, 0.9)
    policy_iteration(stack_tasks([task, task]), 0.9)
    env = AnyMDPEnv(task=task)
    env.reset(seed=0)
    env.step(0)
    benv = BatchedAnyMDPEnv([task, task])
    benv.reset(seed=0)
    benv.step(np.zeros(2, dtype=np.int64))


def bench_sampling(ref: ReferenceWorker | None, args, log) -> dict:
    from omnirl_core.world import sample_anymdp, sample_anymdp_batch

    out = {}
    for ns in args.ns:
        reps = args.repeats_large if ns >= 128 else args.repeats
        ref_s, ours_s = [], []
        for i in range(reps):
            seed = 1000 + i
            # Alternate which side goes first, so slow drifts of the machine hit both alike.
            for side in ("ref", "ours") if i % 2 == 0 else ("ours", "ref"):
                if side == "ref":
                    if ref is not None:
                        ref_s.append(ref("sample", ns=ns, na=NA, seed=seed)["seconds"])
                else:
                    ours_s.append(timed(sample_anymdp, ns, NA, seed=seed)[0])
        # Many tasks at once (what data synthesis uses): the linear algebra is shared across tasks.
        n_batch = max(4, 4 * reps)
        batch_s = timed(sample_anymdp_batch, n_batch, ns, NA, seed=7)[0] / n_batch
        out[ns] = {"ref": ref_s, "ours": ours_s, "ours_batch": batch_s, "n_batch": n_batch}
        ref_text = f"{statistics.median(ref_s):.4g} s" if ref_s else "not run"
        log(
            f"sampling ns={ns}: reference {ref_text}, ours {statistics.median(ours_s):.4g} s, "
            f"ours batched {batch_s:.4g} s/task"
        )
    return out


def bench_value_iteration(ref: ReferenceWorker | None, args, tmp: Path, log) -> dict:
    import numpy as np

    from omnirl_core.world import policy_iteration, sample_anymdp
    from omnirl_core.world.oracle import acceptance_gamma, policy_value, stack_tasks, value_iteration

    ns = args.vi_ns
    gamma = acceptance_gamma(ns)
    tasks = [sample_anymdp(ns, NA, seed=2000 + i) for i in range(args.vi_batch)]
    if ref is not None:
        ref("load", key="vi", path=str(export_tasks(tasks, tmp / "vi_tasks.npz")))
    inner = 3  # our single-task solves are repeated, their median taken
    res = {
        "gamma": gamma,
        "ns": ns,
        "ref": [],
        "vi": [],
        "pi": [],
        "vi_matched": [],
        "vi_batch": [],
        "pi_batch": [],
        "vi_batch_matched": [],
        "checks": {},
    }
    dv_ref, dv_pi, agree, gap, tols, dv_matched = [], [], [], [], [], []
    for i in range(args.vi_tasks):
        task = tasks[i]
        r = ref("vi", key="vi", index=i, gamma=gamma) if ref is not None else None
        vi_t, pi_t, vim_t = [], [], []
        for _ in range(inner):
            t, (_, V) = timed(value_iteration, task, gamma)
            vi_t.append(t)
            t, (Q_pi, V_pi) = timed(policy_iteration, task, gamma)
            pi_t.append(t)
        res["vi"].append(statistics.median(vi_t))
        res["pi"].append(statistics.median(pi_t))
        dv_pi.append(float(np.abs(V_pi - V).max()))
        text = ""
        # Without the reference there is no error of its to match, so the "tol = ref's error" rows are left out.
        if r is not None:
            res["ref"].append(r["seconds"])
            Q_ref = np.asarray(r["Q"])
            live = ~task.terminal
            dv_ref.append(float(np.abs(Q_ref.max(1) - V).max()))
            # The same accuracy as the reference: tolerance = its error on this task, rounded down to a power of 10.
            tol = 10.0 ** np.floor(np.log10(max(dv_ref[-1], 1e-8)))
            for _ in range(inner):
                t, (_, V_m) = timed(value_iteration, task, gamma, tol=tol)
                vim_t.append(t)
            res["vi_matched"].append(statistics.median(vim_t))
            tols.append(float(tol))
            dv_matched.append(float(np.abs(V_m - V).max()))
            pol_ref = Q_ref.argmax(1)
            agree.append(float((pol_ref == Q_pi.argmax(1))[live].mean()))
            gap.append(max(0.0, float((V_pi - policy_value(task, pol_ref, gamma)).max())))
            text = f"reference {r['seconds']:.3g} s, "
        log(
            f"value iteration task {i}: {text}ours VI {res['vi'][-1]:.3g} s, PI {res['pi'][-1]:.3g} s"
            + (f", max|dV| {dv_ref[-1]:.2g}" if r is not None else "")
        )
    dv_batch = []
    for _ in range(max(1, min(args.repeats, 3))):
        t, (_, Vb) = timed(lambda: value_iteration(stack_tasks(tasks), gamma))
        res["vi_batch"].append(t / len(tasks))
        t, (_, Vpb) = timed(lambda: policy_iteration(stack_tasks(tasks), gamma))
        res["pi_batch"].append(t / len(tasks))
        if tols:
            t, (_, Vmb) = timed(lambda: value_iteration(stack_tasks(tasks), gamma, tol=min(tols)))
            res["vi_batch_matched"].append(t / len(tasks))
    V_single = np.stack([value_iteration(t, gamma)[1] for t in tasks[: args.vi_tasks]])
    dv_batch.append(float(np.abs(Vb[: args.vi_tasks] - V_single).max()))
    dv_batch.append(float(np.abs(Vpb - Vb).max()))
    if tols:
        dv_matched.append(float(np.abs(Vmb - Vb).max()))
    log(
        f"value iteration batch of {len(tasks)}: VI {statistics.median(res['vi_batch']):.3g} s/task, "
        f"PI {statistics.median(res['pi_batch']):.3g} s/task"
    )
    res["checks"] = {
        "max_abs_dV_vi_vs_pi": max(dv_pi),
        "max_abs_dV_batched_vs_single": max(dv_batch),
        "value_scale": float(np.abs(V_single).max()),
    }
    if ref is not None:
        res["checks"] |= {
            "max_abs_dV_ref_vs_ours": max(dv_ref),
            "matched_tol_range": [min(tols), max(tols)],
            "max_abs_dV_matched_vs_exact": max(dv_matched),
            "greedy_agreement_min": min(agree),
            "ref_greedy_optimality_gap_max": max(gap),
        }
    return res


def bench_envs(ref: ReferenceWorker | None, args, tmp: Path, log) -> dict:
    import numpy as np

    from omnirl_core.world import AnyMDPEnv, BatchedAnyMDPEnv, sample_anymdp

    ns, B = args.env_ns, args.env_batch
    tasks = [sample_anymdp(ns, NA, seed=3000 + i) for i in range(min(args.env_tasks, B))]
    if ref is not None:
        ref("load", key="env", path=str(export_tasks(tasks[:1], tmp / "env_task.npz")))
    batch_tasks = [tasks[i % len(tasks)] for i in range(B)]

    def ours_single(seed: int) -> float:
        env = AnyMDPEnv(task=tasks[0])
        actions = np.random.default_rng(seed).integers(NA, size=args.env_steps).tolist()
        t0 = time.perf_counter()
        env.reset(seed=seed)
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return args.env_steps / (time.perf_counter() - t0)

    def ours_batched(seed: int) -> float:
        env = BatchedAnyMDPEnv(batch_tasks)
        actions = np.random.default_rng(seed).integers(NA, size=(args.env_batch_steps, B))
        t0 = time.perf_counter()
        env.reset(seed=seed)
        for a in actions:  # autoreset: ended episodes restart inside step()
            env.step(a)
        return args.env_batch_steps * B / (time.perf_counter() - t0)

    res = {"ns": ns, "batch": B, "ref": [], "single": [], "batched": []}
    for i in range(args.repeats):
        if ref is not None:
            r = ref("env", key="env", index=0, steps=args.env_steps, seed=i)
            res["ref"].append(r["steps"] / r["seconds"])
        res["single"].append(ours_single(i))
        res["batched"].append(ours_batched(i))
    ref_text = f"{statistics.median(res['ref']):.4g} steps/s" if res["ref"] else "not run"
    log(
        f"env ns={ns}: reference {ref_text}, ours single "
        f"{statistics.median(res['single']):.4g}, batched {statistics.median(res['batched']):.4g}"
    )
    return res


# ---------------------------------------------------------------------------------------------- report
def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.3g} M steps/s"
    if r >= 1e3:
        return f"{r / 1e3:.3g} k steps/s"
    return f"{r:.3g} steps/s"


def build_rows(results: dict, args) -> list[list[str]]:
    """Table rows; without the reference (a smoke run) its column, the speed-ups and the results are "-"."""
    med, mean = statistics.median, statistics.fmean
    rows = []

    def row(name: str, ref: float | None, ours: float, target: float | None, fmt, rate: bool = False) -> None:
        ratio = None if ref is None else (ours / ref if rate else ref / ours)
        status = "-" if target is None or ratio is None else ("PASS" if ratio >= target else "MISS")
        rows.append(
            [
                name,
                "-" if ref is None else fmt(ref),
                fmt(ours),
                "-" if ratio is None else f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2f}x",
                "-" if target is None else f">= {target:g}x",
                status,
            ]
        )

    for ns, r in results["sampling"].items():
        target = {16: TARGETS["sample_16"], 128: TARGETS["sample_128"]}.get(ns)
        rt = med(r["ref"]) if r["ref"] else None
        n = len(r["ours"])
        name = f"sample_anymdp ns={ns}, per task (median of {n} seed{'s' if n > 1 else ''})"
        row(name, rt, med(r["ours"]), target, fmt_seconds)
        if "ours_batch" in r:
            name = f"sample_anymdp_batch ns={ns}, per task ({r['n_batch']} tasks in one call)"
            row(name, rt, r["ours_batch"], None, fmt_seconds)
    vi = results.get("vi")
    if vi:
        ref_t = mean(vi["ref"]) if vi["ref"] else None
        k, b, ns = len(vi["vi"]), args.vi_batch, vi["ns"]
        single = (
            ("vi", "value_iteration"),
            ("vi_matched", "value_iteration, tol = ref's error"),
            ("pi", "policy_iteration"),
        )
        for key, label in single:
            if vi[key]:
                row(f"{label}, ns={ns}, one task (mean of {k})", ref_t, mean(vi[key]), TARGETS["vi"], fmt_seconds)
        batched = (
            ("vi_batch", "value_iteration"),
            ("vi_batch_matched", "value_iteration, tol = ref's error"),
            ("pi_batch", "policy_iteration"),
        )
        for key, label in batched:
            if vi[key]:
                row(f"{label}, ns={ns}, batch of {b} (per task)", ref_t, med(vi[key]), TARGETS["vi"], fmt_seconds)
    env = results.get("env")
    if env:
        rr = med(env["ref"]) if env["ref"] else None
        name = f"env steps ns={env['ns']}, AnyMDPEnv (median of {len(env['single'])})"
        row(name, rr, med(env["single"]), None, fmt_rate, rate=True)
        name = f"env steps ns={env['ns']}, BatchedAnyMDPEnv B={env['batch']} (all envs)"
        row(name, rr, med(env["batched"]), TARGETS["env_batched"], fmt_rate, rate=True)
    return rows


HEADER = ["Measurement", "Reference (xenoverse)", "Ours (omnirl_core)", "Speed-up", "Target", "Result"]


def render_table(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        right = {1, 2, 3}
        lines = [
            "| " + " | ".join(HEADER) + " |",
            "|" + "|".join("---:" if i in right else "---" for i in range(len(HEADER))) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells):
        return "  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(HEADER), "  ".join("-" * w for w in widths), *[line(r) for r in rows]])


def render_report(results: dict, args) -> str:
    m, ri = results["machine"], results.get("reference_info")
    threads = results["threads"]
    same = len(set(threads.values())) == 1
    thread_text = (
        f"all of {', '.join(THREAD_VARS)} = {next(iter(threads.values()))}"
        if same
        else ", ".join(f"{k}={v}" for k, v in threads.items())
    )
    info = [
        f"date: {m['date']}; load average at start {results['load_start']}, at end {results['load_end']}",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['platform']}",
        f"ours: omnirl_core, python {m['python']}, numpy {m['numpy']}",
        (
            f"reference: xenoverse {ri['xenoverse']}, python {ri['python']}, numpy {ri['numpy']}, numba {ri['numba']}"
            if ri
            else f"reference: not run (no {args.reference_python}; bash {SETUP_SCRIPT.relative_to(ROOT)} makes it)"
        ),
        f"threads (both processes): {thread_text}",
        f"run: {' '.join(results['argv']) or '(defaults)'}; wall time {results['wall_seconds']:.0f} s",
    ]
    notes = []
    if args.smoke:
        notes.append("smoke run: sizes too small for the targets; it checks that the benchmark runs, nothing more.")
    vi = results.get("vi")
    if vi and ri:
        c = vi["checks"]
        notes.append(
            f"value iteration: gamma = 2^(-1/{vi['ns']}) = {vi['gamma']:.6f}; the same {len(vi['ref'])} tasks "
            f"(drawn by sample_anymdp, seeds 2000+) on both sides; batch rows use {args.vi_batch} tasks "
            f"(batch time / {args.vi_batch}, stack_tasks included). The reference column is the mean time of its "
            f"update_value_matrix per task. Its stopping rule (RMS of a sweep's change < 1e-4) leaves an error; "
            f"our value_iteration stops at max|dV| < tol (1-gamma), which bounds the error by tol: tol = 1e-8 by "
            f"default, and in the 'tol = ref's error' rows, per task, the reference's error on that task rounded "
            f"down to a power of ten ({c['matched_tol_range'][0]:.0e} to {c['matched_tol_range'][1]:.0e}; the "
            f"batch uses the smallest)."
        )
        notes.append(
            f"value check: max |V_ref - V_ours| = {c['max_abs_dV_ref_vs_ours']:.3g} (|V| up to "
            f"{c['value_scale']:.3g}); greedy actions agree on >= {100 * c['greedy_agreement_min']:.1f}% of live "
            f"states; the reference's greedy policy loses at most {c['ref_greedy_optimality_gap_max']:.3g} of "
            f"value; ours: VI vs PI max |dV| = {c['max_abs_dV_vi_vs_pi']:.3g}, batched vs single "
            f"{c['max_abs_dV_batched_vs_single']:.3g}, 'tol = ref's error' vs tol = 1e-8 "
            f"{c['max_abs_dV_matched_vs_exact']:.3g}."
        )
    elif vi:
        c = vi["checks"]
        notes.append(
            f"value check (ours only): VI vs PI max |dV| = {c['max_abs_dV_vi_vs_pi']:.3g}, batched vs single "
            f"{c['max_abs_dV_batched_vs_single']:.3g} (|V| up to {c['value_scale']:.3g})."
        )
    env = results.get("env")
    if env:
        notes.append(
            f"envs: uniform random actions drawn in advance, reset at each episode end inside the timer "
            f"(the batched env autoresets); single envs {args.env_steps} steps per repeat on the same task; "
            f"batched {args.env_batch_steps} steps x {env['batch']} envs over {min(args.env_tasks, env['batch'])} "
            f"distinct tasks."
        )
    if ri:
        notes.append("sampling: the same seeds (1000+) on both sides, alternating which side goes first.")
    table = render_table(build_rows(results, args), args.markdown)
    if args.markdown:
        return "\n".join(
            [
                "### AnyMDP speed: omnirl_core vs xenoverse 0.1.14.0",
                "",
                *[f"- {x}" for x in info],
                "",
                table,
                "",
                *[f"- {x}" for x in notes],
            ]
        )
    return "\n".join(
        [
            "AnyMDP speed: omnirl_core vs xenoverse 0.1.14.0",
            *[f"  {x}" for x in info],
            "",
            table,
            "",
            *[f"  * {x}" for x in notes],
        ]
    )


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    python = ensure_reference(args)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    results: dict = {"argv": argv, "threads": threads, "load_start": loadavg(), "machine": machine_info()}
    ref = ReferenceWorker(python) if python is not None else None
    try:
        if ref is not None:
            results["reference_info"] = ref("info")
            log(f"reference worker up (xenoverse {results['reference_info']['xenoverse']}); warming up")
            ref("warmup")
        warm_up_ours()
        with tempfile.TemporaryDirectory(prefix="anymdp-bench-") as tmp:
            results["sampling"] = bench_sampling(ref, args, log)
            results["vi"] = bench_value_iteration(ref, args, Path(tmp), log)
            results["env"] = bench_envs(ref, args, Path(tmp), log)
    finally:
        if ref is not None:
            ref.close()
    results["load_end"] = loadavg()
    results["wall_seconds"] = time.perf_counter() - t_start
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=1, default=str))
    print(render_report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
