"""Online in-context evaluation on unseen 5-armed bandits: mean score per quarter of the run with 95% CIs.

python models/omnirl-tiny-bandit/evaluate_online.py models/omnirl-tiny-bandit/model.safetensors --temperature 1.0 --tql
"""

import argparse
import json
import time

import numpy as np
import torch
from scipy import stats as st

from omnirl_core.evaluation import OmniRLAgent, TQLAgent, load_model, run_agent
from omnirl_core.suites import build_suite, task_suite, test_seed
from omnirl_core.tasks import sample_anymdp


def quarter_summary(scores: np.ndarray) -> dict:
    """Per-task means over each quarter of the run; mean over tasks with t-based 95% CIs, also of Q4 - Q1."""
    s = scores[np.isfinite(scores).all(axis=1)]
    n, k = s.shape
    q = np.stack([s[:, i * k // 4:(i + 1) * k // 4].mean(axis=1) for i in range(4)], axis=1)
    t = st.t.ppf(0.975, n - 1)
    out = {"n_tasks": int(n), "mean": float(s.mean())}

    def ci(x):
        m, se = x.mean(), x.std(ddof=1) / np.sqrt(n)
        return [float(m), float(m - t * se), float(m + t * se)]

    for i in range(4):
        out[f"q{i + 1}"] = ci(q[:, i])
    out["q4_minus_q1"] = ci(q[:, 3] - q[:, 0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--n-tasks", type=int, default=64)
    ap.add_argument("--pulls", type=int, default=400)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--tql", action="store_true", help="also TQL-UCB with c in 0.1, 0.5, 1, 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", action="store_true", help="validation bandits (test seed indices 50000+), not anymdp_1")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.val:
        tasks = [sample_anymdp(1, 5, seed=test_seed(0, 1, 50_000 + i)) for i in range(a.n_tasks)]
        suite = task_suite("val_bandits", tasks)
    else:
        suite = build_suite("anymdp_1", a.n_tasks)
    res = {}
    if a.checkpoint:
        t0 = time.time()
        model = load_model(a.checkpoint)
        with torch.no_grad():
            r = run_agent(suite, OmniRLAgent(model, temperature=a.temperature), a.pulls, seed=a.seed)
        res["omnirl"] = {**quarter_summary(r.scores), "seconds": time.time() - t0}
    if a.tql:
        for c in (0.1, 0.5, 1.0, 2.0):
            r = run_agent(suite, TQLAgent(c=c), a.pulls, seed=a.seed)
            res[f"tql_ucb_c{c:g}"] = quarter_summary(r.scores)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
