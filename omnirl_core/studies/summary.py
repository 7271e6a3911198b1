"""The ablations' reports: one row per variant beside the paper's finding (:func:`summary_rows`,
:func:`markdown_summary`) and the in-context curves of a study's variants (:func:`plot_study`).

Each row gives, besides the last bin and the gain (last bin - first), the *best in-context gain* (the best bin
minus the first: the quantity of the paper's task-count study) and the *steps to adapt* (the first step of the
first bin that reaches 99% of the best bin, :func:`~omnirl_core.evaluation.incontext.adaptation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..evaluation.incontext import late
from .cross_suite import eval_settings


def _ci(x: Sequence[float] | None) -> str:
    """``+m [+lo, +hi]`` of a [mean, low, high] triple; ``-`` for none (results measured by older code)."""
    if not x or not math.isfinite(x[0]):
        return "-"
    return f"{x[0]:+.3f} [{x[1]:+.3f}, {x[2]:+.3f}]"


def _steps(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def summary_rows(cfg: Any, results: dict[str, list[Any]]) -> list[dict]:
    rows = []
    for study, variants in results.items():
        suite, steps = eval_settings(cfg, study)
        for r in variants:
            g = r.gain
            per_seed = g.get("per_seed", {}).get("gain", [g["gain"][0]])
            best = g.get("best_gain", [float("nan")] * 3)
            rows.append({"study": study, "variant": r.variant, "suite": suite, "test_steps": steps,
                         "env_steps": r.env_steps_trained, "loss": r.final_loss, "q1": g["q1"][0], "q4": late(g)[0],
                         "q4_low": late(g)[1], "q4_high": late(g)[2], "mean": g["mean"], "gain": g["gain"][0],
                         "gain_low": g["gain"][1], "gain_high": g["gain"][2], "best_gain": best[0],
                         "best_gain_low": best[1], "best_gain_high": best[2], "steps_99": g.get("steps_99"),
                         "seeds": g.get("n_seeds", 1), "gain_per_seed": per_seed,
                         "paper": cfg.studies[study].finding})
    return rows


def markdown_summary(rows: Sequence[dict], tql: dict[str, dict] | None = None,
                     models: dict[str, dict[str, dict]] | None = None) -> str:
    """The results table (one row per variant, then per study TQL-UCB and other reference models, e.g. notebook
    03's, when given: ``models[study][label]``) and the paper's findings. A row of several seeds has intervals over
    seeds and tasks (:mod:`.seeds`), of one seed over tasks; the last column lists each seed's own gain."""
    lines = ["| study | variant | test tasks | seeds | env steps trained | final loss | first bin | last bin "
             "[95% CI] | mean | gain, last - first [95% CI] | best gain, best bin - first [95% CI] | steps to 99% "
             "| gain per seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def reference(label: str, ref: dict) -> str:
        q4, g = late(ref), ref["gain"]
        return (f"| {study} | {label}, reference | {where} | - | - | - | {ref['q1'][0]:.3f} | "
                f"{q4[0]:.3f} [{q4[1]:.3f}, {q4[2]:.3f}] | {ref['mean']:.3f} | {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] "
                f"| {_ci(ref.get('best_gain'))} | {_steps(ref.get('steps_99'))} | - |")

    studies: dict[str, dict] = {}
    for r in rows:
        studies.setdefault(r["study"], r)
    for study, first in studies.items():
        where = f"{first['suite']}, {first['test_steps']} steps"
        for r in rows:
            if r["study"] == study:
                lines.append(f"| {study} | {r['variant']} | {where} | {r['seeds']} | {r['env_steps'] / 1e6:.2f}M | "
                             f"{r['loss']:.3f} | {r['q1']:.3f} | {r['q4']:.3f} [{r['q4_low']:.3f}, "
                             f"{r['q4_high']:.3f}] | {r['mean']:.3f} | {r['gain']:+.3f} [{r['gain_low']:+.3f}, "
                             f"{r['gain_high']:+.3f}] | "
                             f"{_ci([r['best_gain'], r['best_gain_low'], r['best_gain_high']])} | "
                             f"{_steps(r['steps_99'])} | {', '.join(f'{x:+.3f}' for x in r['gain_per_seed'])} |")
        ref = (tql or {}).get(study)
        if ref is not None:
            lines.append(reference(f"TQL-UCB (c={ref['c']:g})", ref))
        for label, ref in (models or {}).get(study, {}).items():
            lines.append(reference(label, ref))
    lines += ["", "| study | the paper's finding |", "|---|---|"]
    lines += [f"| {s} | {r['paper'] or '-'} |" for s, r in studies.items()]
    return "\n".join(lines)


def plot_study(study: str, variants: Sequence[Any], tql: dict | None = None, ax=None,
               models: dict[str, dict] | None = None):
    """The in-context gain curve (score per log-spaced bin, 95% CIs) of every variant of a study, and of the references
    (TQL-UCB, ``models``: label -> summary)."""
    from ..views.evaluation import plot_gain

    summaries = {r.variant: r.gain for r in variants}
    if tql is not None:
        summaries[f"TQL-UCB c={tql['c']:g}"] = tql
    summaries.update(models or {})
    return plot_gain(summaries, title=study, ax=ax)
