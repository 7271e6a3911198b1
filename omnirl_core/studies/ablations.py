"""The paper's ablations as data: studies of variants, each synthesised, trained and scored in context.

A study (task count, tags, data strategy, backbone, Garnet-trained, ...) is a set of variants; a variant is a
few dotted-key overrides of one base dataset (``dataset.<key>``, a :class:`~omnirl_core.workbook.DatasetConfig`)
and one base training run (``training.<key>``, a :class:`~omnirl_core.training.TrainConfig`). For every
variant :func:`run_variant`

1. synthesises its dataset, shared between variants with the same dataset configuration (a folder named by
   the configuration's hash, resumable),
2. trains its model in ``runs/<hash of the configuration>`` (resumable: an interrupted run continues from its
   last checkpoint; a finished one is reused, also by another study's variant with the same configuration),
3. measures the in-context gain online on unseen tasks (:func:`omnirl_core.evaluation.incontext.online_gain`: empty
   memory, tag 7, score in log-spaced bins of the run and last bin - first with 95% intervals),
4. scores the model the same way on the study's further suites (``also_suites``, :mod:`.cross_suite`: one file
   per suite in ``runs/<hash>/suites/``, so a changed suite list measures only the new suites),

and writes ``gain.json`` next to the model (and a copy with every suite as ``<study>/<variant>.json``).
:func:`summary_rows` puts the results beside the paper's finding for each study,
:func:`~omnirl_core.studies.cross_suite.suite_table` the variants across suites (the paper's Table 1).
Everything is configured by :class:`AblationConfig` (``params/*/05_ablations.yaml``); notebook 05 and
``python -m omnirl_core.studies PARAMS --out RUN_DIR`` both call :func:`run_studies`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.incontext import MEASURE, late
from ..evaluation.suites import SUITE_NAMES
from ..synthesis.config import DatasetConfig
from ..synthesis.format import SCHEMA_VERSION
from ..training.config import TrainConfig
from ..workbook.config import config_to_dict, load_config
from ..workbook.fields import ConfigError, Rule, _issue_text, check, param
from . import cross_suite as xs
from .archive import find_archived, restore_archived, result_key, save_archived
from .cluster_config import ClusterConfig
from .context_loss import context_loss, pool_context_loss
from .cross_suite import ANY_SUITE, eval_settings, score_on_suites, test_suite
from .seeds import pool_seeds, pool_suites, seeded_configs
from .summary import markdown_summary, plot_study, summary_rows

__all__ = ["StudyConfig", "AblationConfig", "VariantResult", "variant_configs", "run_variant", "pool_results",
           "run_studies", "summary_rows", "markdown_summary", "plot_study"]

PREFIXES = ("dataset.", "training.")
TASK_SUITE = Rule(lambda s: s in SUITE_NAMES and s.startswith(("anymdp_", "garnet_")),
                  "a registered anymdp_<ns> or garnet_<ns> suite (omnirl_core.evaluation.suites.SUITE_NAMES)")


@dataclass
class StudyConfig:
    """One ablation: variants that differ from the base in a few keys."""

    finding: str = param("")
    "The paper's finding for this study, shown beside the measured one."
    variants: dict[str, dict[str, Any]] = param({"base": {}})
    "Variant name -> overrides as dotted keys 'dataset.<key>' or 'training.<key>' ({} = the base itself)."
    eval_suite: str | None = param(None, rule=TASK_SUITE)
    "Test tasks of this study (None: the configuration's eval_suite)."
    eval_steps: int | None = param(None, ge=4)
    "Steps per test task of this study (None: the configuration's eval_steps)."
    also_suites: list[str] | None = param(None, rule=ANY_SUITE)
    "Further suites to score every variant on (None: the configuration's also_suites; [] none)."
    table: str = param("")
    ("Title of the cross-suite table (notebook 05's table1_variants.md) this study's variants join: studies with one "
     "title share a table, a variant they share one row; empty: a table of its own, titled by the study's name.")


def _default_training() -> TrainConfig:
    return TrainConfig()


@dataclass
class AblationConfig:
    """Notebook 05 and ``python -m omnirl_core.studies``: the paper's ablations at a chosen scale."""

    seed: int = param(0, ge=0)
    "Seed of the evaluation runs."
    seeds: int = param(1, ge=1)
    "Training runs per variant: seed s adds s to the training seed (and the dataset seed); rows pool the seeds."
    seed_dataset: bool = param(True)
    "Seeds also vary the dataset seed (other tasks and behaviour), not only the training seed."
    results_dir: str | None = None
    "A kept folder (e.g. under bench/results/) for each finished (variant, seed)'s small result files; reused."
    dataset: DatasetConfig = param(default_factory=DatasetConfig)
    "Base dataset of every variant (02_synthesis's dataset fields)."
    training: TrainConfig = param(default_factory=_default_training)
    "Base training run of every variant (03_training's fields; data.path is set per variant)."
    studies: dict[str, StudyConfig] = param(default_factory=lambda: {"tags": StudyConfig()})
    "Studies by name."
    run: list[str] = param(default_factory=list)
    "Studies to run (in this order); the others are only listed. Empty = all."
    eval_suite: str = param("anymdp_1", rule=TASK_SUITE)
    "Unseen test tasks for the in-context gain (an anymdp_<ns> or garnet_<ns> suite)."
    eval_tasks: int = param(32, ge=2)
    "Test tasks per variant."
    eval_steps: int = param(400, ge=4)
    "Environment steps per test task (read in log-spaced bins)."
    also_suites: list[str] = param([], rule=ANY_SUITE)
    "Further suites every variant is scored on, as on eval_suite (a model with too few observation ids skips one)."
    pendulum_samples: int = param(100, ge=1)
    "Pendulum suites: sampled states per (bin, torque) for the model behind the oracle (as notebook 04's)."
    pendulum_reference_episodes: int = param(32, ge=2)
    "Pendulum suites: Monte-Carlo episodes for R_oracle and R_random (as notebook 04's)."
    temperature: float = param(1.0, gt=0)
    "Sampling temperature of every model."
    tql: bool = param(True)
    "Also measure TQL-UCB (best c of 0.1, 0.5, 1, 2 by mean score) on the same tasks, as a reference line."
    loss_sequences: int = param(4, ge=0)
    ("DPD sequences of each study's test length (unseen tasks of its test suite's size) on which every variant's "
     "label loss is read along the context in log-spaced bins (studies.context_loss); 0: not measured.")
    reference_checkpoint: str | None = None
    "Also measure this model (relative: the run folder, e.g. notebook 03's 03_training/run/model.safetensors)."
    workers: int = param(2, ge=1)
    "Synthesis worker processes."
    devices: list[int] = param([], ge=0)
    "GPUs (CUDA indices) to spread variants over, one variant per device at a time; empty: the CPU (cpu_processes)."
    cpu_processes: int = param(1, ge=1)
    ("Without devices: processes on this machine's CPU to spread the variants over, one core each (each trains on "
     "torch_threads threads); 1: one variant after another in this process.")
    torch_threads: int = param(1, ge=1)
    "Torch CPU threads for training and evaluation."
    progress: bool = param(True)
    "Show progress bars."
    cluster: ClusterConfig = param(default_factory=ClusterConfig)
    "Where the command line runs the variants: this machine, submitit's LocalExecutor or a SLURM array (.cluster)."

    def validate(self) -> None:
        issues: list[tuple[str, str]] = []
        for name in self.run:
            if name not in self.studies:
                issues.append(("run", f"{name!r} is not one of the studies ({', '.join(self.studies)})"))
        for sname, study in self.studies.items():
            for vname in study.variants:
                try:
                    variant_configs(self, sname, vname)
                except ConfigError as exc:
                    issues.extend((f"studies.{sname}.variants.{vname}", _issue_text(k, m))
                                  for k, m in exc.issues)
        if issues:
            raise ConfigError(issues)

    @property
    def studies_to_run(self) -> list[str]:
        return list(self.run) or list(self.studies)



def variant_configs(cfg: AblationConfig, study: str, variant: str,
                    seed: int = 0) -> tuple[DatasetConfig, TrainConfig]:
    """The dataset and training configurations of one variant (base + its overrides) for its seed ``seed``
    (:func:`~omnirl_core.studies.seeds.seeded_configs`; 0: the variant itself), validated."""
    overrides = cfg.studies[study].variants[variant] or {}
    ds, tr = {}, {}
    for key, value in overrides.items():
        if not key.startswith(PREFIXES):
            raise ConfigError([(key, f"an override must start with {' or '.join(PREFIXES)}; got {key!r}")])
        (ds if key.startswith("dataset.") else tr)[key.split(".", 1)[1]] = value
    dataset = load_config(DatasetConfig, config_to_dict(cfg.dataset), overrides=ds)
    training = load_config(TrainConfig, config_to_dict(cfg.training), overrides=tr)
    dataset, training = seeded_configs(dataset, training, seed, cfg.seed_dataset)
    model = training.model
    check((dataset.ns_max or dataset.ns) <= model.ns_max, "training.model.ns_max", model.ns_max,
          f">= the dataset's largest ns ({dataset.ns_max or dataset.ns})")
    check(dataset.na == model.na, "training.model.na", model.na, f"the dataset's na ({dataset.na})")
    suite_name, _ = eval_settings(cfg, study)
    suite_ns = int(suite_name.split("_")[1])
    check(suite_ns <= model.ns_max, "training.model.ns_max", model.ns_max,
          f">= the states of the test suite {suite_name} ({suite_ns})")
    seq_len = training.data.seq_len
    check(seq_len is None or seq_len <= dataset.seq_len, "training.data.seq_len", seq_len,
          f"<= the dataset's dataset.seq_len ({dataset.seq_len}), or null")
    return dataset, training


@functools.cache
def code_version(*subpackages: str) -> str:
    """A hash of the source of these subpackages of ``omnirl_core``: a cached result keyed on it is recomputed,
    not reused, once the code that produced it changes."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in subpackages:
        for path in sorted((root / name).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


DATA_CODE = ("world", "synthesis")  # the code that decides a dataset's bytes
RUN_CODE = ("world", "synthesis", "model", "training", "evaluation")  # ... and a variant's result


def dataset_key(dataset: DatasetConfig) -> str:
    """Folder name of a dataset: a hash of its configuration, the dataset schema and the code that writes it
    (variants with equal data share it)."""
    ident = {"config": config_to_dict(dataset), "schema": SCHEMA_VERSION, "code": code_version(*DATA_CODE)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def run_key(cfg: AblationConfig, study: str, dataset: DatasetConfig, training: TrainConfig) -> str:
    """Folder name of a variant's run: a hash of everything that decides its result (data, training, test, the
    schema and the code)."""
    ident = _run_ident(cfg, study, dataset, training)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def archive_key(cfg: AblationConfig, study: str, dataset: DatasetConfig, training: TrainConfig) -> str:
    """Key of a finished result in ``results_dir``: the run's identity without the code, and each configuration by
    its non-default values (:func:`.archive.result_key`: a field added later at its default keeps the key)."""
    defaults = {"dataset": config_to_dict(DatasetConfig()), "training": config_to_dict(_default_training())}
    return result_key(_run_ident(cfg, study, dataset, training), defaults)


def _run_ident(cfg: AblationConfig, study: str, dataset: DatasetConfig, training: TrainConfig) -> dict:
    train_dict = config_to_dict(training)
    train_dict["data"]["path"] = None  # set per run to the dataset folder, which the dataset part already names
    train_dict.pop("torch_threads", None)  # speed only, not the result
    test = {k: getattr(cfg, k) for k in ("seed", "eval_tasks", "temperature")}
    test["eval_suite"], test["eval_steps"] = eval_settings(cfg, study)
    test["measure"] = MEASURE
    return {"dataset": config_to_dict(dataset), "training": train_dict, "test": test, "schema": SCHEMA_VERSION,
            "code": code_version(*RUN_CODE)}


@dataclass
class VariantResult:
    """A trained and measured variant."""

    study: str
    variant: str
    gain: dict  # online_gain summary (q1..q4, gain, mean, n_tasks, ...)
    final_loss: float
    train_seconds: float
    env_steps_trained: int
    folder: Path
    info: dict = field(default_factory=dict)
    suites: dict = field(default_factory=dict)  # further suite -> {"gain": summary} or {"skipped": why}
    seed: int | None = 0  # the seed of this run; None: the pool of ``runs`` (:func:`pool_results`)
    runs: list[VariantResult] = field(default_factory=list)  # the seeds' runs behind a pooled result
    context_loss: dict | None = None  # label loss along the context (:mod:`.context_loss`), None: not measured


def _suite(cfg: AblationConfig, study: str | None = None):
    """The test suite of a study (built once per process)."""
    return test_suite(cfg, eval_settings(cfg, study)[0] if study is not None else cfg.eval_suite)


def run_variant(cfg: AblationConfig, study: str, variant: str, root: str | Path, suite=None,
                log: Callable[[str], None] | None = print, seed: int = 0,
                reuse_only: bool = False) -> VariantResult | None:
    """Synthesise, train and measure one variant's seed ``seed`` under ``root`` (resumable; finished work is
    reused, also from ``cfg.results_dir``), then score it on the study's further suites (each read back when
    measured before under the same settings). ``reuse_only``: train and measure nothing; None when not finished."""
    import torch

    from ..evaluation.agents import OmniRLAgent
    from ..evaluation.incontext import online_gain
    from ..evaluation.models import load_model
    from ..synthesis import synthesize, write_json_atomic
    from ..training import read_metrics, train

    def write_json_atomic_parents(path: Path, obj: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, obj)

    log = log or (lambda _m: None)
    root = Path(root)
    dataset, training = variant_configs(cfg, study, variant, seed)
    data_dir = root / "data" / dataset_key(dataset)
    key = run_key(cfg, study, dataset, training)
    folder = root / "runs" / key  # variants of different studies with equal configurations share a run
    gain_path = folder / "gain.json"
    name = run_label(study, variant, seed)
    pointer = root / study / (f"{variant}.json" if seed == 0 else f"{variant}.seed{seed}.json")
    kept = archive_key(cfg, study, dataset, training)
    if not gain_path.is_file() and cfg.results_dir:
        record = find_archived(cfg.results_dir, kept)
        if record is not None:
            restore_archived(record, folder, lambda n: xs.suite_ident(cfg, study, n))
            log(f"{name}: archived result of {record.get('measured_at', '?')} (code {record.get('code', '?')}) "
                f"from {cfg.results_dir}")

    def further(get_model: Callable[[], Any]) -> dict[str, dict]:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.torch_threads)
        try:
            return score_on_suites(cfg, study, name, folder, training.model, get_model, log)
        finally:
            torch.set_num_threads(old_threads)

    def finish(record: dict, suites: dict) -> None:
        write_json_atomic_parents(pointer, {**record, "run": key, "suites": suites})
        if cfg.results_dir:
            files = {n: json.loads((folder / "suites" / f"{n}.json").read_text()) for n in suites
                     if (folder / "suites" / f"{n}.json").is_file()}
            save_archived(cfg.results_dir, study, variant, seed, {**record, "archive_key": kept, "run": key,
                                                                  "study": study, "variant": variant, "seed": seed,
                                                                  "suite_files": files}, folder / "metrics.csv")

    model_path = folder / "model.safetensors"
    if gain_path.is_file():
        saved = json.loads(gain_path.read_text())
        if reuse_only:
            suites = xs.saved_suites(cfg, study, folder)
        elif model_path.is_file() or not xs.suites_to_measure(cfg, study, folder, training.model):
            log(f"{name}: reusing {gain_path}")
            device = "cpu" if training.device == "cpu" or not torch.cuda.is_available() else "cuda"
            suites = further(functools.cache(lambda: load_model(model_path, device=device)))
            finish({k: v for k, v in saved.items() if k not in ("run", "suites")}, suites)
        else:  # an archived result without its model, and a suite to measure: train again
            log(f"{name}: {', '.join(xs.suites_to_measure(cfg, study, folder, training.model))} not measured and "
                "the model is not kept: training it again")
            saved = None
        if saved is not None:
            curve = saved.get("context_loss")
            if (curve or {}).get("sequences", 0) != cfg.loss_sequences and model_path.is_file():
                curve = context_loss(cfg, study, load_model(model_path), training.chunk_len)  # new, or measured
                write_json_atomic(gain_path, {**saved, "context_loss": curve})  # with other settings or older code
            return VariantResult(study, variant, saved["gain"], saved["final_loss"], saved["train_seconds"],
                                 saved["env_steps_trained"], folder, saved.get("info", {}), suites, seed,
                                 context_loss=curve)
    if reuse_only:
        return None
    t0 = time.perf_counter()
    synthesize(dataset, data_dir, workers=cfg.workers, progress=cfg.progress)
    log(f"{name}: data {data_dir.name} ready ({time.perf_counter() - t0:.1f} s)")
    training.data.path = str(data_dir.resolve())
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        t1 = time.perf_counter()
        result = train(training, folder, resume=(folder / "checkpoint.pt").is_file(), hooks=[], progress=cfg.progress)
        train_seconds = time.perf_counter() - t1
        rows = read_metrics(folder)
        final_loss = float(rows[-1]["loss"]) if rows else float("nan")
        suite = _suite(cfg, study) if suite is None else suite
        steps = eval_settings(cfg, study)[1]
        device = str(next(result.model.parameters()).device)
        with torch.no_grad():  # per-task scores kept in the gain: the seeds of a variant are pooled from them
            gain = online_gain(suite, OmniRLAgent(result.model.eval(), temperature=cfg.temperature, device=device),
                               steps, seed=cfg.seed)
        curve = context_loss(cfg, study, result.model, training.chunk_len)
    finally:
        torch.set_num_threads(old_threads)
    seq_len = training.data.seq_len or dataset.seq_len
    env_steps = int(training.steps * training.data.batch_size * min(seq_len, dataset.seq_len))
    out = VariantResult(study, variant, gain, final_loss, train_seconds, env_steps, folder, seed=seed,
                        context_loss=curve)
    record = {"gain": gain, "final_loss": final_loss, "train_seconds": train_seconds, "env_steps_trained": env_steps,
              "context_loss": curve,
              "dataset": config_to_dict(dataset), "training": config_to_dict(training), "info": out.info,
              "seed": seed, "code": code_version(*RUN_CODE),
              "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_json_atomic(gain_path, record)
    g = gain["gain"]
    log(f"{name}: trained {train_seconds:.0f} s, loss {final_loss:.3f}; online first bin {gain['q1'][0]:.3f} "
        f"-> last bin {late(gain)[0]:.3f}, gain {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]")
    out.suites = further(lambda: result.model)
    finish(record, out.suites)
    return out


def pool_results(runs: Sequence[VariantResult]) -> VariantResult:
    """One result of a variant's seeds (:func:`~omnirl_core.studies.seeds.pool_seeds`): the gain and every further
    suite pooled over seeds and tasks, the mean final loss, the summed training time; the folder (a study's row
    identity) is the first seed's. A single seed 0 is returned as it is."""
    if len(runs) == 1 and runs[0].seed == 0:
        return runs[0]
    seeds = [r.seed for r in runs]
    first = runs[0]
    return VariantResult(first.study, first.variant, pool_seeds([r.gain for r in runs], seeds),
                         float(sum(r.final_loss for r in runs) / len(runs)), float(sum(r.train_seconds for r in runs)),
                         first.env_steps_trained, first.folder, first.info,
                         pool_suites([r.suites for r in runs], seeds), None, list(runs),
                         pool_context_loss([r.context_loss for r in runs]))


def tql_reference(cfg: AblationConfig, study: str | None = None) -> dict:
    """TQL-UCB on a study's test tasks, as the line a learner should beat: ``c`` of
    :data:`~omnirl_core.evaluation.incontext.TQL_C_GRID` chosen by the one tuning rule
    (:func:`~omnirl_core.evaluation.tuning.pick_best`) on the mean score, the study's measure."""
    from ..evaluation.agents import TQLAgent
    from ..evaluation.incontext import TQL_C_GRID, online_gain
    from ..evaluation.tuning import pick_best

    suite = _suite(cfg, study)
    steps = eval_settings(cfg, study)[1] if study is not None else cfg.eval_steps
    best, run, _ = pick_best(TQL_C_GRID, lambda c: online_gain(suite, TQLAgent(c=c), steps, seed=cfg.seed),
                             lambda r: r["mean"])
    out = dict(run)
    out.pop("per_task", None)
    out["c"] = best
    return out


def model_reference(cfg: AblationConfig, study: str, model, temperature: float | None = None) -> dict:
    """A trained model (e.g. notebook 03's) on a study's test tasks, measured as the variants are."""
    import torch

    from ..evaluation.agents import OmniRLAgent
    from ..evaluation.incontext import online_gain

    suite = _suite(cfg, study)
    why = xs.suite_fit(suite, model.cfg.ns_max, model.cfg.na)
    if why:
        raise ValueError(f"{why} (the test suite of {study}, {suite.name})")
    with torch.no_grad():
        out = online_gain(suite, OmniRLAgent(model.eval(), temperature=temperature or cfg.temperature),
                          eval_settings(cfg, study)[1], seed=cfg.seed)
    out.pop("per_task", None)
    return out


def run_studies(cfg: AblationConfig, root: str | Path, studies: Sequence[str] | None = None,
                log: Callable[[str], None] | None = print,
                reuse_only: bool = False) -> dict[str, list[VariantResult]]:
    """Run every variant of the chosen studies (default: ``cfg.run``, or all) under ``cfg.seeds`` seeds, one study
    after another and within a study seed by seed (every variant's seed 0, then seed 1, ...: a study's comparison
    is complete at every seed count); one pooled result per variant (:func:`pool_results`). ``reuse_only``: train
    nothing, pool the finished seeds (variants with none are left out)."""
    out: dict[str, list[VariantResult]] = {}
    for name in studies or cfg.studies_to_run:
        runs: dict[str, list[VariantResult]] = {v: [] for v in cfg.studies[name].variants}
        for seed in range(cfg.seeds):
            for variant, done in runs.items():
                result = run_variant(cfg, name, variant, root, log=log, seed=seed, reuse_only=reuse_only)
                if result is not None:
                    done.append(result)
        out[name] = [pool_results(done) for done in runs.values() if done]
    return out


def spread_variants(cfg: AblationConfig, config_path: str | Path | None, root: str | Path,
                    studies: Sequence[str] | None = None, log: Callable[[str], None] | None = print) -> None:
    """Train and measure the variants of ``studies`` in parallel processes, one per device of ``cfg.devices`` or,
    without devices, one per CPU slot of ``cfg.cpu_processes`` (:func:`~omnirl_core.workbook.devices.run_on_devices`),
    each ``python -m omnirl_core.studies CONFIG --study S --variant V`` with its output in ``ROOT/logs/``; CONFIG is
    ``config_path``, or None: ``cfg`` written to ``ROOT/ablations.config.yaml``.

    Datasets are synthesised here first (variants share them), and variants with equal runs go once; the results
    land in the cache that :func:`run_studies` then reads back. A failing variant raises with the end of its log."""
    import sys

    from ..workbook.devices import run_on_devices, slots

    log = log or (lambda _m: None)
    root = Path(root)
    if config_path is None:
        from ..workbook import dump_config

        root.mkdir(parents=True, exist_ok=True)
        config_path = dump_config(cfg, root / "ablations.config.yaml")
    jobs: dict[str, tuple[str, str, int]] = {}
    for name in studies or cfg.studies_to_run:
        for seed in range(cfg.seeds):
            for variant in cfg.studies[name].variants:
                dataset, training = variant_configs(cfg, name, variant, seed)
                jobs.setdefault(run_key(cfg, name, dataset, training), (name, variant, seed))
    synthesize_for(cfg, root, list(jobs.values()), log=None)  # here first: variants share datasets
    extra = ["--results", str(cfg.results_dir)] if cfg.results_dir else []
    commands = [(run_label(name, variant, seed),
                 [sys.executable, "-m", "omnirl_core.studies", str(config_path), "--study", name, "--variant", variant,
                  "--seed", str(seed), "--out", str(root), *extra],
                 root / "logs" / (f"{name}.{variant}.log" if seed == 0 else f"{name}.{variant}.seed{seed}.log"))
                for name, variant, seed in jobs.values()]
    run_on_devices(commands, slots(cfg.devices, cfg.cpu_processes), log=log)


def synthesize_for(cfg, root: str | Path, runs: Sequence[tuple[str, str, int]],
                   log: Callable[[str], None] | None = print) -> None:
    """Synthesise (or verify) the datasets of ``runs`` under ``root/data``, each once."""
    from ..synthesis import synthesize

    done: set[Path] = set()
    for study, variant, seed in runs:
        dataset, _ = variant_configs(cfg, study, variant, seed)
        data_dir = Path(root) / "data" / dataset_key(dataset)
        if data_dir not in done:
            t0 = time.perf_counter()
            synthesize(dataset, data_dir, workers=cfg.workers, progress=cfg.progress)
            done.add(data_dir)
            if log:
                log(f"data {data_dir.name} ready ({time.perf_counter() - t0:.1f} s)")


def run_label(study: str, variant: str, seed: int) -> str:
    """``study/variant``, with `` seed s`` for a seed other than 0: how logs and errors name a run."""
    return f"{study}/{variant}" + (f" seed {seed}" if seed else "")
