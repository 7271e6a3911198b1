"""The variants of a study on further test suites: the rows and columns of the paper's Table 1.

Besides its own test suite (``eval_suite``) every variant of a study is scored on the suites of ``also_suites``
(the study's list, else the configuration's) with the same online protocol (:func:`~omnirl_core.evaluation.
incontext.online_gain`: empty memory, tag 7, the study's steps per task, the configuration's tasks, seed and
temperature). A suite whose observation count exceeds the model's ``ns_max`` (or whose action count exceeds the
model's ``na``) is skipped with a note, as notebook 04 skips a model it cannot run.

Each suite's result is a file of its own next to the variant's model, ``runs/<run>/suites/<suite>.json``, holding
the test settings (and the code of this module) it was measured under: a changed suite list measures only the
suites not measured yet (the training and the other suites are read back), a changed setting measures that suite
again.
:func:`suite_table` writes the Table-1-style report (one row per trained model, one column per suite).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..evaluation.incontext import MEASURE, late
from ..evaluation.suites import PAPER_TABLE1, SUITE_NAMES, model_fit, suite_spec
from ..workbook.fields import Rule

__all__ = ["ANY_SUITE", "eval_settings", "further_suites", "test_suite", "suite_fit", "score_on_suites",
           "saved_suites", "suites_to_measure", "suite_ident", "suite_rows", "suite_table", "table_groups",
           "VARIANT_LABELS"]

ANY_SUITE = Rule(lambda s: s in SUITE_NAMES, "a registered suite (omnirl_core.evaluation.suites.SUITE_NAMES)")

VARIANT_LABELS = {"dpd": "DPD (OmniRL)", "ad": "AD", "ad_eps": "AD-ε", "dpt": "DPT", "no_tags": "OmniRL without tags",
                  "anymdp": "trained on AnyMDP", "garnet": "trained on Garnet"}
"""Row labels of the report for the variant names of the shipped parameter files (others: study/variant)."""


def eval_settings(cfg: Any, study: str) -> tuple[str, int]:
    """(test suite, steps per test task) of a study: its own, else the configuration's."""
    st = cfg.studies[study]
    return st.eval_suite or cfg.eval_suite, st.eval_steps or cfg.eval_steps


def further_suites(cfg: Any, study: str) -> list[str]:
    """The suites a study's variants are scored on besides its test suite (its own ``also_suites``, else the
    configuration's), in order, without repeats and without the test suite itself."""
    own = cfg.studies[study].also_suites
    names = cfg.also_suites if own is None else own
    first = eval_settings(cfg, study)[0]
    return [n for i, n in enumerate(names) if n != first and n not in names[:i]]


_SUITES: dict[tuple, Any] = {}


def test_suite(cfg: Any, name: str):
    """Suite ``name`` with the configuration's task count (and Pendulum settings), built once per process."""
    from ..evaluation.suites import build_suite

    key = (name, cfg.eval_tasks, cfg.pendulum_samples, cfg.pendulum_reference_episodes)
    if key not in _SUITES:
        _SUITES[key] = build_suite(name, cfg.eval_tasks, pendulum_samples=cfg.pendulum_samples,
                                   pendulum_reference_episodes=cfg.pendulum_reference_episodes)
    return _SUITES[key]


test_suite.__test__ = False  # not a pytest test


def suite_fit(suite, ns_max: int, na: int) -> str:
    """Why a model with ``ns_max`` observation ids and ``na`` actions cannot run on ``suite`` ("" when it can; a
    suite with fewer actions is fine): :func:`omnirl_core.evaluation.suites.model_fit`."""
    return model_fit(suite, ns_max, na)


@functools.cache
def _own_code() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def suite_ident(cfg: Any, study: str, name: str) -> dict:
    """The settings a suite's result depends on beside the run (whose folder already names its data, training,
    test settings and the code up to evaluation): the suite, and this module's code."""
    ident = {"suite": name, "steps": eval_settings(cfg, study)[1], "seed": cfg.seed, "tasks": cfg.eval_tasks,
             "temperature": cfg.temperature, "code": _own_code(), "measure": MEASURE}
    if name.startswith("pendulum_"):
        ident["pendulum"] = [cfg.pendulum_samples, cfg.pendulum_reference_episodes]
    return ident


def saved_suites(cfg: Any, study: str, folder: Path) -> dict[str, dict]:
    """The further suites' results saved in ``folder/suites`` under today's settings (nothing is measured)."""
    out: dict[str, dict] = {}
    for name in further_suites(cfg, study):
        path = folder / "suites" / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("test") == suite_ident(cfg, study, name):
                out[name] = saved["result"]
    return out


def suites_to_measure(cfg: Any, study: str, folder: Path, model_cfg) -> list[str]:
    """The further suites that :func:`score_on_suites` would have to run the model on (not saved, and fitting)."""
    saved = saved_suites(cfg, study, folder)
    return [n for n in further_suites(cfg, study)
            if n not in saved and not suite_fit(suite_spec(n), model_cfg.ns_max, model_cfg.na)]


def score_on_suites(cfg: Any, study: str, label: str, folder: Path, model_cfg, get_model: Callable[[], Any],
                    log: Callable[[str], None]) -> dict[str, dict]:
    """Suite -> ``{"gain": online_gain summary}`` or ``{"skipped": why}`` for every suite of
    :func:`further_suites`, measured or read back from ``folder/suites``. ``model_cfg``: the run's model
    configuration (decides a skip without loading the model); ``get_model()``: the trained model, called only
    when some suite has to be measured."""
    import torch

    from ..evaluation.agents import OmniRLAgent
    from ..evaluation.incontext import online_gain
    from ..synthesis import write_json_atomic

    out: dict[str, dict] = {}
    steps = eval_settings(cfg, study)[1]
    for name in further_suites(cfg, study):
        path = folder / "suites" / f"{name}.json"
        ident = suite_ident(cfg, study, name)
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("test") == ident:
                out[name] = saved["result"]
                continue
        suite = test_suite(cfg, name)
        why = suite_fit(suite, model_cfg.ns_max, model_cfg.na)
        if not why:
            model = get_model()
            device = str(next(model.parameters()).device)
            try:
                with torch.no_grad():
                    gain = online_gain(suite, OmniRLAgent(model.eval(), temperature=cfg.temperature, device=device),
                                       steps, seed=cfg.seed)
            except ValueError as exc:  # e.g. no run ended an episode in every quarter of the steps
                why = f"not scored: {exc}"
        if why:
            result = {"skipped": why}
            log(f"{label}: {name} skipped ({why})")
        else:  # per-task scores kept: several seeds of a variant are pooled from them (.seeds)
            result = {"gain": gain}
            g = gain["gain"]
            log(f"{label}: {name} last bin {late(gain)[0]:.3f}, gain {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"test": ident, "result": result})
        out[name] = result
    return out


# ---------------------------------------------------------------------------------------------- report
def table_groups(cfg: Any, studies: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Title -> the studies of ``studies`` (default: all, in the file's order) whose variants share a cross-suite
    table (:class:`~.ablations.StudyConfig` ``table``; a study without one has a table of its own)."""
    groups: dict[str, list[str]] = {}
    for name in cfg.studies if studies is None else studies:
        groups.setdefault(cfg.studies[name].table or name, []).append(name)
    return groups


def suite_rows(cfg: Any, results: dict[str, Sequence[Any]], studies: Sequence[str]) -> tuple[list[str], list[dict]]:
    """(suites, rows) of the report over the variants of ``studies`` that are in ``results``: the suites are every
    study's test suite, then its further suites, in order; one row per trained model (a variant shared by two
    studies, e.g. DPD in ``tags`` and ``data_strategy``, is one row), each ``{"label", "studies", "suites":
    {suite: {"gain": ...} | {"skipped": why}}}``."""
    suites: list[str] = []
    rows: dict[Path, dict] = {}
    for study in studies:
        if study not in results:
            continue
        first = eval_settings(cfg, study)[0]
        for name in [first, *further_suites(cfg, study)]:
            if name not in suites:
                suites.append(name)
        for r in results[study]:
            row = rows.setdefault(r.folder, {"label": VARIANT_LABELS.get(r.variant, f"{study}/{r.variant}"),
                                             "studies": [], "suites": {}})
            row["studies"].append(study)
            row["suites"].setdefault(first, {"gain": r.gain})
            for name, res in r.suites.items():
                row["suites"].setdefault(name, res)
    return suites, list(rows.values())


def _cell(res: dict | None, key: str, signed: bool) -> str:
    if res is None:
        return "not measured"
    if "skipped" in res:
        return "skipped"
    m, lo, hi = late(res["gain"]) if key == "late" else res["gain"][key]
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def suite_table(cfg: Any, results: dict[str, Sequence[Any]], studies: Sequence[str]) -> str | None:
    """Markdown: the last bin's score and the in-context gain (last bin - first), each with its 95% interval over
    tasks, of every model of ``studies`` (rows) on every suite (columns), the paper's OmniRL score (Table 1) below
    them as another measure, then why cells were skipped and the paper's findings. None when none of ``studies`` ran."""
    suites, rows = suite_rows(cfg, results, studies)
    if not rows:
        return None
    ran = [s for s in studies if s in results]
    steps: dict[int, list[str]] = {}
    for s in ran:
        steps.setdefault(eval_settings(cfg, s)[1], []).append(s)
    head = "| model | " + " | ".join(suites) + " |"
    rule = "|---|" + "---|" * len(suites)
    lines = [f"Online from an empty memory (tag 7), {cfg.eval_tasks} unseen tasks per suite, temperature "
             f"{cfg.temperature:g}, " + ", ".join(f"{n} steps per task ({', '.join(v)})" for n, v in steps.items())
             + "; 95% intervals over tasks.", "",
             "Mean normalised score in the last log-spaced bin of the run (the last half of its steps):", "", head,
             rule]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(_cell(row["suites"].get(n), "late", False) for n in suites)
                     + " |")
    paper = [f"{n} {PAPER_TABLE1[n]['OmniRL'][0]:.3f}" for n in suites if n in PAPER_TABLE1]
    if paper:
        lines += ["", "Not the same measure, for scale only: the paper's OmniRL best score within 10,000 episodes "
                  "(Table 1): " + ", ".join(paper) + "."]
    lines += ["", "In-context gain, last bin - first bin (the first 1/32 of the steps):", "", head, rule]
    for row in rows:
        lines.append(f"| {row['label']} | " + " | ".join(_cell(row["suites"].get(n), "gain", True) for n in suites)
                     + " |")
    notes: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for name, res in row["suites"].items():
            if "skipped" in res:
                notes.setdefault((name, res["skipped"]), []).append(row["label"])
    if notes:
        lines += ["", "Skipped:", ""]
        lines += [f"- {name}, {', '.join(labels)}: {why}" for (name, why), labels in notes.items()]
    lines += ["", "The paper's findings:", ""]
    lines += [f"- {s}: {cfg.studies[s].finding or '-'}" for s in ran]
    return "\n".join(lines)
