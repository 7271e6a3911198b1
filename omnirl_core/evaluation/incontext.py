"""Is in-context learning really there? The gain along a run, measured on unseen tasks.

A model that learns in context scores better late in a run than early in it, on tasks it never saw, with an
empty memory at the start and no gradient step. :func:`online_gain` measures exactly that: it runs an agent
for a fixed number of environment steps per task, assigns every finished episode to the log-spaced bin of the
run in which it ended (:func:`log_edges`: octaves, the first 1/32 of the run alone by default), averages the
normalised scores per task and bin, and reports the mean over tasks of every bin and of the gain, last bin -
first bin, each with a t-based 95% confidence interval over tasks (:func:`segment_summary`). Bandits are scored
by the expected reward of each pulled arm. This is the workbook's one in-context measure: notebook 04's gain,
notebook 05's ablations, the long-context curves and the docs all read it.

The models shipped in ``models/`` are found through their ``config.json`` (:func:`shipped_models`,
:func:`shipped_model_for`), so notebooks and the task explorer can load one by default
(:func:`load_shipped`).

Command line (the numbers in ``models/*/README.md`` come from it)::

    python -m omnirl_core.evaluation models/omnirl-tiny-bandit --suite anymdp_1 --steps 400 --tql
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..workbook.errors import CliParser, InputError, run_cli
from ..workbook.plugins import PLUGINS_ENV
from .agents import TQLAgent
from .models import load_shipped
from .report import first_within_99
from .runs import BYTES_PER_TASK_AND_STEP, RunResult, available_memory, run_agent, run_memory
from .suites import SUITE_NAMES, Suite, build_suite, suites_help, task_suite, test_seed

VALIDATION_INDEX = 50_000  # test-seed indices of validation tasks: apart from the suites' 0..n-1
TQL_C_GRID = (0.1, 0.5, 1.0, 2.0)


# ---------------------------------------------------------------------------------------------- the gain
DEFAULT_BINS = 6
"""Bins of :func:`online_gain`: octaves of the run, the first 1/32 of it alone (12 of 400 bandit pulls)."""
MEASURE = f"log-spaced bins ({DEFAULT_BINS}), gain last - first, bandits by expected reward"
"""What :func:`online_gain` measures, part of the identity of a stored result (a result measured another way,
such as the equal quarters of earlier versions, is measured again rather than reused)."""


def log_edges(T: int, bins: int) -> np.ndarray:
    """Integer edges 0 = e_0 < e_1 < ... < e_k = T of at most ``bins`` log-spaced bins of steps 0..T-1 (bin i holds
    steps e_i .. e_{i+1} - 1): each bin twice as wide as the one before when T allows it, the first holding the
    first T / 2**(bins - 1) steps (at least one); bins narrower than a step are merged.

    The one binning of the in-context measure: :func:`online_gain`, the long-context curves and the loss along
    the context all use it."""
    if T < 2 or bins < 1:
        raise ValueError(f"need T >= 2 and bins >= 1, got T={T}, bins={bins}")
    if bins < 2:
        return np.array([0, T])
    first = max(1.0, T / 2 ** (bins - 1))
    edges = np.unique(np.round(np.geomspace(first, T, bins)).astype(int))
    return np.concatenate([[0], edges[edges > 0]])


def segment_scores(result: RunResult, budget: int, n_segments: int = 4) -> np.ndarray:
    """[n_valid, n_segments] mean normalised score per valid run and equal segment of its first ``budget`` steps
    (:func:`binned_scores` with equal bins; the workbook's measure bins by :func:`log_edges`)."""
    if budget < n_segments:
        raise ValueError(f"budget ({budget}) must be at least n_segments ({n_segments})")
    return binned_scores(result, np.arange(n_segments + 1) * budget / n_segments)  # k * budget exact, then /


def binned_scores(result: RunResult, edges: np.ndarray) -> np.ndarray:
    """[n_valid, len(edges) - 1] mean normalised score per valid run of the episodes that ended in each bin:
    an episode whose run had taken e steps when it ended is in bin k when edges[k] <= e - 1 < edges[k + 1].
    NaN where a run has no episode ending in a bin."""
    scores, ends = result.scores[result.valid], result.steps[result.valid]
    out = np.full((scores.shape[0], len(edges) - 1), np.nan)
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (ends - 1 >= lo) & (ends - 1 < hi)  # NaN ends (episodes never reached) are outside
        count = inside.sum(axis=1)
        total = np.where(inside, scores, 0.0).sum(axis=1)
        out[:, k] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def fill_open_bins(result: RunResult, edges: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, int]:
    """(``seg`` with every NaN bin filled, number of runs filled): a bin in which no episode of a run ended is
    scored by the episode that run was playing throughout it, the first to end after the bin (a later bin's, or
    one ending after the last edge when the run went on past it, :func:`online_gain`).

    Why: leaving such runs out (as :func:`segment_summary` does with NaN) drops exactly the runs with long
    episodes, and their early bins score low, so the mean gain over the runs kept is biased; the episode in
    progress is what the agent did in that bin. A bin whose spanning episode never ended stays NaN."""
    scores, ends = result.scores[result.valid], result.steps[result.valid]
    upper = np.asarray(edges[1:], dtype=float)  # bin k holds ends with e - 1 < upper[k]
    after = (ends[:, :, None] - 1) >= upper[None, None, :]  # [runs, episodes, bins]; NaN ends are False
    first = after.argmax(axis=1)  # first episode ending after each bin
    spanning = np.take_along_axis(scores, first, axis=1)
    spanning = np.where(after.any(axis=1), spanning, np.nan)
    gaps = np.isnan(seg)
    filled = np.where(gaps, spanning, seg)
    return filled, int((gaps & np.isfinite(filled)).any(axis=1).sum())


def fill_open_segments(result: RunResult, budget: int, seg: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`fill_open_bins` for ``seg.shape[1]`` equal segments of ``budget`` steps."""
    n_seg = seg.shape[1]
    return fill_open_bins(result, np.arange(n_seg + 1) * budget / n_seg, seg)


def result_gain(result: RunResult, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """:func:`segment_summary` of an existing run in :func:`log_edges` bins of the first B steps of every run, where
    B is the step count that every valid run reached (a run's last finished episode bounds what can be scored)."""
    ends = result.steps[result.valid]
    reached = np.nanmax(np.where(np.isnan(ends), -np.inf, ends), axis=1)
    budget = int(reached.min())
    edges = log_edges(budget, bins)
    return {**segment_summary(binned_scores(result, edges), edges), "steps": budget}


def mean_ci(x: np.ndarray) -> list[float]:
    """[mean, low, high]: t-based 95% interval of the mean of ``x`` (NaN ends for fewer than two values)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n = x.size
    m = float(x.mean()) if n else float("nan")
    if n < 2:
        return [m, float("nan"), float("nan")]
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return [m, m - half, m + half]


def segment_summary(seg: np.ndarray, edges: np.ndarray | Sequence[float] | None = None) -> dict[str, Any]:
    """Mean over runs of every bin (``q1`` .. ``qK``, bin k from the start) and of ``gain`` = last - first, each
    as [mean, 95% low, 95% high]; ``early`` and ``late`` repeat the first and last bins; ``edges`` the bins' step
    edges when given; the adaptation measures of :func:`adaptation` (``best_gain``, ``best_bin``, ``steps_99``).

    Runs with a NaN bin (no episode ended there) are left out and counted in ``n_dropped``."""
    keep = np.isfinite(seg).all(axis=1)
    s = seg[keep]
    if s.shape[0] == 0:
        raise InputError("no run finished an episode in every bin; use a larger budget (--steps) or fewer bins")
    out: dict[str, Any] = {"n_tasks": int(s.shape[0]), "n_dropped": int((~keep).sum()), "mean": float(s.mean())}
    for k in range(s.shape[1]):
        out[f"q{k + 1}"] = mean_ci(s[:, k])
    out["early"], out["late"] = out["q1"], out[f"q{s.shape[1]}"]
    out["gain"] = mean_ci(s[:, -1] - s[:, 0])
    if edges is not None:
        out["edges"] = [float(e) for e in edges]
    k, first = adaptation([out[f"q{i + 1}"][0] for i in range(s.shape[1])], out.get("edges"))
    out["best_gain"] = mean_ci(s[:, k] - s[:, 0])
    out.update(best_bin=k + 1, steps_99=first)
    return out


def adaptation(means: Sequence[float], edges: Sequence[float] | None) -> tuple[int, int | None]:
    """(best bin, steps to adapt) of a score curve in bins: the index of the bin with the highest mean score, whose
    score minus the first bin's is the *best in-context gain* (the paper's measure of the task-count study), and
    the first step of the first bin that reaches 99% of that best (Table 1's rule,
    :func:`~.report.first_within_99`, on log-spaced bins: read to the bin; None without ``edges``)."""
    k, first = first_within_99(np.asarray(means, dtype=float))
    return k, (int(edges[first]) + 1 if edges is not None else None)


def late(summary: dict[str, Any]) -> list[float]:
    """The last bin of a summary ([mean, low, high]); summaries written before ``late`` existed end in ``qK``."""
    if "late" in summary:
        return summary["late"]
    return summary[max((k for k in summary if k[0] == "q" and k[1:].isdigit()), key=lambda k: int(k[1:]))]


def bin_label(summary: dict[str, Any], which: str) -> str:
    """'steps 1-12' for the first (``which`` = 'early') or last bin of a summary with ``edges``."""
    edges = summary.get("edges")
    if not edges:
        return "first quarter" if which == "early" else "last quarter"
    lo, hi = (edges[0], edges[1]) if which == "early" else (edges[-2], edges[-1])
    return f"steps {int(lo) + 1}-{int(hi)}"


def online_gain(suite: Suite, agent, steps: int, *, seed: int = 0, bins: int = DEFAULT_BINS,
                progress: bool = False) -> dict[str, Any]:
    """Run ``agent`` for ``steps`` environment steps on every task of ``suite`` from an empty memory and summarise
    its score along the run in :func:`log_edges` bins, with the gain last bin - first bin (:func:`segment_summary`).

    Bandits are scored by the expected reward of each pulled arm (:mod:`.expected`): the same runs, without the
    reward noise, which on AnyMDP bandits is as wide as the gap between the arms."""
    from .expected import expected_reward_suite, is_bandit

    t0 = time.perf_counter()
    edges = log_edges(steps, bins)
    scored = expected_reward_suite(suite) if is_bandit(suite) else suite
    last = float(edges[-2])  # a run with no episode ending after this plays on to finish it
    result = run_agent(scored, agent, n_episodes=steps, max_steps=steps, seed=seed, progress=progress,
                       finish_after=last)
    seg, n_filled = fill_open_bins(result, edges, binned_scores(result, edges))
    if not np.isfinite(seg).all(axis=1).any():
        longest = max((t.horizon for t in suite.tasks or []), default=None)
        raise InputError(f"{suite.name}, {steps} steps: no run finished an episode within {2 * steps} steps, so no "
                         "bin can be scored; use more steps"
                         + (f" (its episodes last up to {longest} steps)" if longest else ""))
    return {**segment_summary(seg, edges), "n_filled": n_filled, "steps": int(steps),
            "reward": "expected" if scored is not suite else "sampled",
            "seconds": time.perf_counter() - t0, "per_task": seg.tolist()}


def validation_suite(ns: int, n_tasks: int, na: int = 5) -> Suite:
    """AnyMDP tasks for choosing checkpoints and temperatures: test seeds, indices 50,000+ (never the
    evaluation suites' tasks, never a training task)."""
    from ..world import sample_anymdp

    tasks = [sample_anymdp(ns, na, seed=test_seed(0, ns, VALIDATION_INDEX + i)) for i in range(n_tasks)]
    return task_suite(f"val_anymdp_{ns}", tasks, info={"family": "anymdp", "ns": ns})


# ---------------------------------------------------------------------------------------------- command line
def _suite_ns(name: str) -> int | None:
    """ns of an ``anymdp_<ns>`` / ``garnet_<ns>`` name, None for another name."""
    family, _, tail = name.partition("_")
    return int(tail) if family in ("anymdp", "garnet") and tail.isdigit() else None


def check_suite_name(name: str, val: bool = False) -> None:
    """Raise :class:`~omnirl_core.workbook.errors.InputError` unless ``name`` is a suite :func:`build_suite` makes
    (with ``val``: an ``anymdp_<ns>`` suite), before any model is loaded or any task drawn."""
    ns = _suite_ns(name)
    if val:
        if not name.startswith("anymdp_") or ns is None or not (ns == 1 or ns >= 8):
            raise InputError(f"--suite {name!r}: --val needs an anymdp_<ns> suite with ns = 1 or ns >= 8")
        return
    if name in SUITE_NAMES:
        return
    if name.startswith("anymdp_") and ns is not None and (ns == 1 or ns >= 8):
        return
    if name.startswith("garnet_") and ns is not None and ns >= 8:
        return
    raise InputError(f"--suite {name!r}: unknown suite; choose one of {', '.join(SUITE_NAMES)}, or anymdp_<ns> "
                     "(ns = 1 or >= 8) or garnet_<ns> (ns >= 8)")


def _suite_for(name: str, n_tasks: int, val: bool) -> Suite:
    check_suite_name(name, val)
    if not val:
        return build_suite(name, n_tasks)
    return validation_suite(int(name.split("_")[1]), n_tasks)


def _load_for_cli(which: str | os.PathLike | None, allow_unverified: bool = False):
    """(model, temperature or None) for the command line: a checkpoint file, a shipped-model folder (path or name,
    its validated temperature), or nothing (the shipped bandit model)."""
    from .models import load_model

    if which is None:
        model, info = load_shipped(1)
        return model, info.temperature
    path = Path(which)
    if path.is_file() or path.suffix in (".pt", ".safetensors"):
        return load_model(path, allow_unverified=allow_unverified), None  # a missing file is reported there
    model, info = load_shipped(path)
    return model, info.temperature


def gain_report(checkpoint: str | os.PathLike | None, suite_name: str, steps: int, *, n_tasks: int = 64,
                temperature: float | None = None, tql: bool = False, val: bool = False, seed: int = 0,
                bins: int = DEFAULT_BINS, progress: bool = False, allow_unverified: bool = False) -> dict[str, Any]:
    """The command line's work: OmniRL (checkpoint file or shipped-model folder) and optionally TQL-UCB."""
    import torch

    from .agents import OmniRLAgent

    check_suite_name(suite_name, val)
    if checkpoint is not None:  # load first: a bad checkpoint is reported before any task is drawn
        model, shipped_temperature = _load_for_cli(checkpoint, allow_unverified)
    suite = _suite_for(suite_name, n_tasks, val)
    report: dict[str, Any] = {"suite": suite.name, "n_tasks": n_tasks, "steps": steps, "seed": seed}
    if checkpoint is not None:
        temperature = shipped_temperature if temperature is None else temperature
        temperature = 1.0 if temperature is None else float(temperature)
        with torch.no_grad():
            summ = online_gain(suite, OmniRLAgent(model, temperature=temperature), steps, seed=seed, bins=bins,
                               progress=progress)
        report["omnirl"] = {**summ, "checkpoint": str(checkpoint), "temperature": temperature}
    if tql:
        for c in TQL_C_GRID:
            report[f"tql_ucb_c{c:g}"] = online_gain(suite, TQLAgent(c=c), steps, seed=seed, bins=bins)
    return report


def _row(name: str, s: dict) -> str:
    k = sum(1 for key in s if key[0] == "q" and key[1:].isdigit())
    q = " | ".join(f"{s[f'q{i}'][0]:.3f}" for i in range(1, k + 1))
    g = s["gain"]
    return f"| {name} | {s['n_tasks']} | {s['mean']:.3f} | {q} | {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] |"


# ---------------------------------------------------------------------------------------------- loss diagnostic
def label_loss_by_behaviour(model, dataset_dir: str | os.PathLike, n_sequences: int = 32, *, shard: int = -1,
                            tag: int | None = 7) -> list[dict[str, Any]]:
    """Where does a model's label loss come from? Cross entropy of the label per behaviour policy.

    Runs ``model`` over the first ``n_sequences`` sequences of one shard of a synthesised dataset (default the
    last shard; tags replaced by ``tag``, 7 = unknown as online, or kept with ``tag=None``) and returns one row
    per behaviour present: ``steps`` (labelled steps it acted), ``ce`` (mean cross entropy of the label),
    ``ce_first`` / ``ce_last`` (the same over the first / last quarter of the sequences) and ``agreement`` (how
    often the behaviour's own action equals the label). A loss that is low only where the agreement is high means
    the model predicts the label by copying competent behaviour in its context, which does not help when it acts
    itself; reading rewards shows as a falling ``ce`` along sequences of random behaviour.
    """
    import torch
    import torch.nn.functional as F

    from ..synthesis.behaviours import BEHAVIOURS
    from ..synthesis.format import load_manifest, load_shard

    man = load_manifest(dataset_dir)
    arrays = load_shard(dataset_dir, man["shards"][shard])
    ns_max, ns_data = getattr(getattr(model, "cfg", None), "ns_max", None), int(np.asarray(arrays["ns"]).max())
    if ns_max is not None and ns_data > ns_max:
        raise InputError(f"{dataset_dir}: sequences with up to {ns_data} states, but the "
                         f"model reads observation ids below ns_max {ns_max}")
    x = {k: torch.as_tensor(np.array(arrays[k][:n_sequences])).long()
         for k in ("obs", "tag", "action", "label", "behaviour")}
    reward = torch.as_tensor(np.array(arrays["reward"][:n_sequences])).float()
    tags = x["tag"] if tag is None else torch.full_like(x["tag"], int(tag))
    with torch.no_grad():
        logits = model(x["obs"], tags, x["action"], reward)[0]  # [B, T, na]
    label, na = x["label"], logits.shape[-1]
    valid = label < na  # boundary steps and masked labels carry ids >= na
    ce = F.cross_entropy(logits.reshape(-1, na).float(), label.clamp(max=na - 1).reshape(-1), reduction="none")
    ce = ce.view(label.shape)
    T = label.shape[1]
    quarter = torch.arange(T) * 4 // T  # [T] quarter of the sequence each step is in
    rows = []
    for b, name in enumerate(man.get("behaviours") or BEHAVIOURS):  # the ids the dataset was written with
        sel = valid & (x["behaviour"] == b)
        if not sel.any():
            continue
        first, last = sel & (quarter == 0), sel & (quarter == 3)
        rows.append({
            "behaviour": name,
            "steps": int(sel.sum()),
            "ce": float(ce[sel].mean()),
            "ce_first": float(ce[first].mean()) if first.any() else float("nan"),
            "ce_last": float(ce[last].mean()) if last.any() else float("nan"),
            "agreement": float((x["action"][sel] == label[sel]).float().mean()),
        })
    return rows


PROG = "python -m omnirl_core.evaluation"


class _Once(argparse.Action):
    """An option given at most once: a second value is refused rather than replacing the first."""

    def __init__(self, *args, hint: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = namespace.__dict__.setdefault("_given_once", {})
        if self.dest in given:
            parser.error(f"{option_string} given twice ({given[self.dest]!r}, then {values!r}): give it once"
                         + (f" ({self.hint})" if self.hint else ""))
        given[self.dest] = values
        setattr(namespace, self.dest, values)


def _parser() -> CliParser:
    ap = CliParser(prog=PROG, description=__doc__.split("\n\n")[0],
                   epilog=f"suites (observation ids x actions): {suites_help()}. More suites and backbones: name the "
                          f"modules that register them in {PLUGINS_ENV}=module1,module2 (docs/extending.md).")
    ap.add_argument("checkpoint", nargs="?", help="checkpoint.pt, model.safetensors or a models/<name> folder")
    ap.add_argument("--suite", default="anymdp_1", action=_Once, hint="one suite per report: run once per suite",
                    help="a suite listed below, anymdp_<ns> (ns = 1 or >= 8) or garnet_<ns> (ns >= 8); with --val "
                         "an anymdp_<ns> suite; once, a report is of one suite")
    ap.add_argument("--steps", type=int, default=400, action=_Once, help="environment steps per task (>= --bins)")
    ap.add_argument("--n-tasks", type=int, default=64, action=_Once, help="tasks (>= 1)")
    ap.add_argument("--bins", type=int, default=DEFAULT_BINS, action=_Once,
                    help=f"log-spaced bins of the run (>= 2; default {DEFAULT_BINS}: octaves, the first 1/32 alone)")
    ap.add_argument("--temperature", type=float, default=None, action=_Once,
                    help="> 0; default: the shipped model's, else 1.0")
    ap.add_argument("--tql", action="store_true", help=f"also TQL-UCB with c in {TQL_C_GRID}")
    ap.add_argument("--val", action="store_true", help="validation tasks (test-seed indices 50,000+)")
    ap.add_argument("--seed", type=int, default=0, action=_Once, help=">= 0")
    ap.add_argument("--threads", type=int, default=1, action=_Once, help="torch CPU threads (>= 1)")
    ap.add_argument("--out", default=None, action=_Once,
                    help="write the report (JSON) here: a new file, or a report written before")
    ap.add_argument("--loss-by-behaviour", metavar="DATASET", default=None, action=_Once,
                    help="instead of acting: the label loss per behaviour policy on a synthesised dataset")
    ap.add_argument("--allow-unverified", action="store_true",
                    help="accept a checkpoint without a checksum (written by an older version); says so on stderr")
    return ap


def _check_args(a) -> None:
    if a.temperature is not None and not (math.isfinite(a.temperature) and a.temperature > 0):
        raise InputError(f"--temperature {a.temperature:g}: must be a finite number > 0")
    if a.bins < 2:
        raise InputError(f"--bins {a.bins}: must be >= 2 (the gain is the last bin minus the first)")
    if a.steps < a.bins:
        raise InputError(f"--steps {a.steps}: must be >= --bins ({a.bins}): every bin holds a step at least")
    if a.n_tasks < 1:
        raise InputError(f"--n-tasks {a.n_tasks}: must be >= 1")
    if a.seed < 0:
        raise InputError(f"--seed {a.seed}: must be >= 0")
    if a.threads < 1:
        raise InputError(f"--threads {a.threads}: must be >= 1")
    if not a.loss_by_behaviour:
        check_suite_name(a.suite, a.val)
        if a.checkpoint is None and not a.tql:
            raise InputError("nothing to evaluate: name a checkpoint (checkpoint.pt, model.safetensors or a "
                             "models/<name> folder), or --tql for the TQL-UCB baseline")
        need, avail = run_memory(a.n_tasks, a.steps, a.bins), available_memory()
        if need > avail:
            raise InputError(f"--steps {a.steps} x --n-tasks {a.n_tasks}: a run needs about {need / 2**30:,.1f} GiB "
                             f"of memory ({BYTES_PER_TASK_AND_STEP + a.bins} bytes per task and step), more than "
                             f"the {avail / 2**30:,.1f} GiB available; use fewer steps or tasks")
    if a.out is not None:  # before the run: a report that cannot be written is known at once
        out = Path(a.out).expanduser()
        if out.is_dir():
            raise InputError(f"--out {a.out}: is a folder; name the report file (e.g. {out / 'gain.json'})")
        if not out.resolve().parent.is_dir():
            raise InputError(f"--out {a.out}: the folder {out.resolve().parent} does not exist")
        if not os.access(out.resolve().parent, os.W_OK):
            raise InputError(f"--out {a.out}: the folder {out.resolve().parent} is not writable")
        if out.is_file():  # only a report of this command is replaced; never weights, a config or other data
            ckpt = Path(a.checkpoint).expanduser() if a.checkpoint else None
            what = None if _is_report(out) else "is not a report of this command"
            if ckpt is not None and ckpt.is_file() and os.path.samefile(out, ckpt):
                what = "is the checkpoint being evaluated"
            if what:
                raise InputError(f"--out {a.out}: {what} and would be replaced by the report; name a new file (e.g. "
                                 f"{out.resolve().parent / 'gain.json'}) or a report written before")


def _is_report(path: Path) -> bool:
    """True for a JSON report this command wrote (a mapping with its suite, steps and task count)."""
    if path.suffix.lower() != ".json" or path.stat().st_size > 64 * 2**20:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"suite", "steps", "n_tasks"} <= data.keys()


def run_command(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line's work, returning its report (errors propagate; :func:`main` reports them)."""
    a = _parser().parse_args(argv)
    _check_args(a)
    import torch

    torch.set_num_threads(a.threads)
    if a.loss_by_behaviour:
        rows = label_loss_by_behaviour(_load_for_cli(a.checkpoint, a.allow_unverified)[0], a.loss_by_behaviour)
        print("| behaviour | labelled steps | label CE | CE, first quarter | CE, last quarter | behaviour = label |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['behaviour']} | {r['steps']} | {r['ce']:.3f} | {r['ce_first']:.3f} | {r['ce_last']:.3f} "
                  f"| {r['agreement']:.2f} |")
        return {"loss_by_behaviour": rows}
    report = gain_report(a.checkpoint, a.suite, a.steps, n_tasks=a.n_tasks, temperature=a.temperature,
                         tql=a.tql, val=a.val, seed=a.seed, bins=a.bins, allow_unverified=a.allow_unverified)
    edges = log_edges(a.steps, a.bins)
    heads = [f"{int(lo) + 1}-{int(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    print(f"{report['suite']}, {a.steps} steps per task, seed {a.seed}: mean score per bin of steps (95% CI of the "
          "gain, last bin - first)")
    print(f"| agent | tasks | mean | {' | '.join(heads)} | gain |\n|" + "---|" * (len(heads) + 4))
    for key, val in report.items():
        if isinstance(val, dict):
            print(_row(key, val))
    for key, val in report.items():
        if isinstance(val, dict) and (val.get("n_filled") or val.get("n_dropped")):
            print(f"note: {key}: {val.get('n_filled', 0)} of {a.n_tasks} runs had a bin in which no episode "
                  f"ended, scored by the episode in progress then; {val['n_dropped']} left out (that episode never "
                  "ended)")
    if a.out:
        from ..synthesis.format import write_json_atomic

        slim = {k: ({kk: vv for kk, vv in v.items() if kk != "per_task"} if isinstance(v, dict) else v)
                for k, v in report.items()}
        write_json_atomic(Path(a.out), slim)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m omnirl_core.evaluation``: exit 0 done, 2 bad input (one line on stderr), 3 the model output a
    non-finite value."""
    return run_cli(run_command, argv, prog=PROG)
