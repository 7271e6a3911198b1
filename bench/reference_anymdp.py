"""Timings of the reference library, Xenoverse 0.1.14.0 (``xenoverse.anymdp``).

Runs inside the reference venv (``bench/.ref-venv``, made by ``bench/setup_reference.sh``), never in
the project's own venv. Two modes:

``--serve``
    A worker for ``bench/bench_anymdp.py``: reads one JSON request per line on stdin and answers one
    JSON line on stdout, so that the two sides can be measured interleaved in one run. Only the
    library call itself is inside each timer; the pipe round trip is not.

``--json``
    One-shot: measures task sampling (and, given ``--tasks``, value iteration and env stepping on the
    exchanged tasks) and prints a single JSON object.

What is timed (all public entry points of the reference):
- sampling: ``AnyMDPTaskSampler(ns, na, seed=seed)``;
- value iteration: ``xenoverse.anymdp.solver.update_value_matrix(transition, reward, gamma, zeros)``,
  the numba-compiled, damped, in-place Q-value iteration the sampler's acceptance check uses;
- env: ``AnyMDPEnv(max_steps)`` + ``set_task(task)``, then ``step(a)`` with pre-drawn uniform random
  actions and ``reset()`` whenever an episode ends (resets are inside the timer).

Exchanged tasks are an ``.npz`` of stacked arrays written by the benchmark: transition, reward,
reward_noise [K, ns, na, ns], start_prob, terminal, state_mapping [K, ns], max_steps [K].
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def _import_reference():
    """Import the reference lazily, with any chatter it prints sent to stderr."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        import xenoverse
        from xenoverse.anymdp import AnyMDPEnv, AnyMDPTaskSampler
        from xenoverse.anymdp.solver import update_value_matrix
    finally:
        sys.stdout = real_stdout
    return xenoverse, AnyMDPTaskSampler, AnyMDPEnv, update_value_matrix


try:
    XENOVERSE, AnyMDPTaskSampler, AnyMDPEnv, update_value_matrix = _import_reference()
    MISSING: ImportError | None = None
except ImportError as exc:  # not the reference venv: main() says so in one line, after --help has had its say
    XENOVERSE = AnyMDPTaskSampler = AnyMDPEnv = update_value_matrix = None
    MISSING = exc


def info() -> dict:
    import importlib.metadata as md

    def version(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "absent"

    return {
        "xenoverse": XENOVERSE.__version__,
        "numpy": np.__version__,
        "numba": version("numba"),
        "scipy": version("scipy"),
        "python": platform.python_version(),
        "threads": {k: os.environ.get(k, "") for k in THREAD_VARS},
    }


# ---------------------------------------------------------------------------------------- tasks
def load_tasks(path: str) -> list[dict]:
    """Exchanged tasks (stacked arrays) as the task dicts that ``AnyMDPEnv.set_task`` takes."""
    tasks = []
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    count, ns, na, _ = arrays["transition"].shape
    for i in range(count):
        start = arrays["start_prob"][i]
        s_0 = np.flatnonzero(start > 0)
        terminal = arrays["terminal"][i].astype(bool)
        mapping = arrays["state_mapping"][i].astype(np.int64)
        if not np.array_equal(np.sort(mapping), np.arange(ns)):
            # The reference maps inner states onto observations by a permutation of range(ns);
            # the mapping does not change the cost of a step, so fall back to the identity.
            mapping = np.arange(ns)
        tasks.append(
            {
                "ns": int(ns),
                "na": int(na),
                "max_steps": float(arrays["max_steps"][i]),
                "state_mapping": mapping,
                "task_type": "MDP",
                "s_0": s_0,
                "s_0_prob": start[s_0] / start[s_0].sum(),
                "s_e": np.flatnonzero(terminal),
                "final_goal_terminate": bool(terminal[-1]),
                "transition": np.ascontiguousarray(arrays["transition"][i], dtype=np.float64),
                "reward": np.ascontiguousarray(arrays["reward"][i], dtype=np.float64),
                "reward_noise": np.ascontiguousarray(arrays["reward_noise"][i], dtype=np.float64),
            }
        )
    return tasks


# ---------------------------------------------------------------------------------------- measurements
def time_sample(ns: int, na: int, seed: int) -> dict:
    t0 = time.perf_counter()
    task = AnyMDPTaskSampler(ns, na, seed=seed)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "ns": ns,
        "seed": seed,
        "max_steps": float(task["max_steps"]),
        "n_terminal": int(len(task["s_e"])),
    }


def time_vi(task: dict, gamma: float) -> dict:
    ns, na, _ = task["transition"].shape
    t_mat, r_mat = task["transition"], task["reward"]
    t0 = time.perf_counter()
    q = update_value_matrix(t_mat, r_mat, gamma, np.zeros((ns, na), dtype=float))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "Q": np.asarray(q).tolist()}


def time_env(task: dict, steps: int, seed: int) -> dict:
    """Step a fresh env for ``steps`` uniform random actions, resetting at episode ends."""
    env = AnyMDPEnv(max_steps=int(np.ceil(task["max_steps"])))
    env.set_task(task)
    actions = np.random.default_rng(seed).integers(task["na"], size=steps).tolist()
    episodes = 0
    total_reward = 0.0
    t0 = time.perf_counter()
    env.reset()
    for a in actions:
        _, r, terminated, truncated, _ = env.step(a)
        total_reward += r
        if terminated or truncated:
            env.reset()
            episodes += 1
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "episodes": episodes, "mean_reward": total_reward / steps}


def warmup() -> dict:
    """Compile / load the numba kernels and touch every code path once."""
    t0 = time.perf_counter()
    task = AnyMDPTaskSampler(16, 5, seed=0)
    update_value_matrix(task["transition"], task["reward"], 0.9, np.zeros((16, 5)))
    env = AnyMDPEnv(max_steps=int(np.ceil(task["max_steps"])))
    env.set_task(task)
    env.reset()
    env.step(0)
    return {"seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------- modes
def serve() -> None:
    """Line protocol: {"op": ...} in, {"ok": true, ...} or {"ok": false, "error": ...} out."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed (by us, numba or pygame) goes to stderr
    sys.stdout = sys.stderr
    task_sets: dict[str, list[dict]] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "quit":
                proto.write(json.dumps({"ok": True}) + "\n")
                break
            if op == "info":
                out = info()
            elif op == "warmup":
                out = warmup()
            elif op == "sample":
                out = time_sample(int(req["ns"]), int(req.get("na", 5)), int(req["seed"]))
            elif op == "load":
                task_sets[req["key"]] = load_tasks(req["path"])
                out = {"count": len(task_sets[req["key"]])}
            elif op == "vi":
                out = time_vi(task_sets[req["key"]][int(req["index"])], float(req["gamma"]))
            elif op == "env":
                out = time_env(task_sets[req["key"]][int(req["index"])], int(req["steps"]), int(req["seed"]))
            else:
                raise ValueError(f"unknown op {op!r}")
            out["ok"] = True
        except Exception as exc:  # report and keep serving
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(out) + "\n")


def one_shot(args: argparse.Namespace) -> dict:
    result = {"info": info(), "warmup": warmup(), "sample": {}}
    for ns in args.ns:
        result["sample"][str(ns)] = [time_sample(ns, args.na, args.seed0 + i)["seconds"] for i in range(args.repeats)]
    if args.tasks:
        tasks = load_tasks(args.tasks)
        if args.gamma is not None:
            result["vi"] = [time_vi(t, args.gamma) for t in tasks]
        if args.env_steps:
            result["env"] = [time_env(tasks[0], args.env_steps, i) for i in range(args.repeats)]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="JSON-lines worker on stdin/stdout")
    mode.add_argument("--json", action="store_true", help="measure once and print one JSON object")
    p.add_argument("--ns", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--na", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed0", type=int, default=1000)
    p.add_argument("--tasks", help="exchanged tasks (.npz) for value iteration and env stepping")
    p.add_argument("--gamma", type=float, help="discount for value iteration on --tasks")
    p.add_argument("--env-steps", type=int, default=0, help="env steps per repeat on the first of --tasks")
    args = p.parse_args(argv)
    if MISSING is not None:
        sys.exit(
            f"reference_anymdp.py: cannot import xenoverse ({MISSING}); it runs in the reference venv: "
            "bash bench/setup_reference.sh, then bench/.ref-venv/bin/python bench/reference_anymdp.py"
        )
    if args.serve:
        serve()
        return 0
    print(json.dumps(one_shot(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
