"""Run the workbook: execute the Jupytext notebooks in order with papermill, one parameter YAML each.

Command line::

    python -m omnirl_core.workbook run PARAMS_DIR [--only 01 [--only 02]] [--run-name NAME]
                                       [--output-root outputs] [--kernel omnirl] [--set 05:run=[]]
    python -m omnirl_core.workbook check PARAMS_DIR [--only 01]
    python -m omnirl_core.workbook describe

``run`` pairs every ``notebooks/NN_name.py`` with ``PARAMS_DIR/NN_name.yaml``, validates *all* the
selected YAML files against their registered configuration classes before anything executes, then
runs the notebooks in order, writing ``OUTPUT_ROOT/RUN_NAME/NN_name.ipynb``. Each notebook receives
two parameters: ``config_path`` (absolute path of its YAML) and ``run_dir`` (absolute path of
``OUTPUT_ROOT/RUN_NAME``). ``--set [NN:]key=value`` overrides a dotted key of notebook NN's parameters (of
every selected notebook without ``NN:``); the validated result is written to the run folder and the notebook
reads that file instead.

One run at a time writes a run folder: a second ``run`` into it is refused at once, naming the holder (the
package's folder lock, ``RUN_DIR/.lock``). Every file is written whole or not at all (:mod:`.runfiles`): an
executed notebook replaces ``NN_name.ipynb`` when it ends, and ``workbook_run.json`` keeps the records of the
notebooks a run did not execute. A write that fails (a full disk) names its file and leaves the previous one.

Exit codes: 0 success, 1 a notebook failed, 2 a configuration or usage problem (nothing ran).
The command line itself is :mod:`.cli`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import os
import re
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as _config
from .errors import InputError
from .locks import folder_lock, remove_stale_temp_files
from .runfiles import SUMMARY_FILE, finish_notebook, is_storage_error, named, temporary_path, write_record

NOTEBOOK_RE = re.compile(r"^(\d{2})_[A-Za-z0-9_]+\.py$")
DEFAULT_KERNEL = "omnirl"
DEFAULT_REGISTRY = "omnirl_core.workbook.registry:NOTEBOOK_CONFIGS"


class WorkbookError(InputError):
    """A problem found before execution (missing files, invalid parameters, unknown kernel)."""


class NotebookFailed(WorkbookError):
    """A notebook raised while executing; ``output`` holds the partially executed notebook."""

    def __init__(self, message: str, *, stem: str, output: Path, cell: int | None, ename: str, evalue: str):
        super().__init__(message)
        self.stem = stem
        self.output = output
        self.cell = cell
        self.ename = ename
        self.evalue = evalue


@dataclass
class NotebookJob:
    """One notebook of a run, with its validated configuration."""

    stem: str
    notebook: Path
    params: Path
    config: Any
    overridden: bool = False  # --set changed it: the notebook reads the validated copy in the run folder


@dataclass
class NotebookResult:
    stem: str
    status: str  # "ok", "failed" or "not run"
    seconds: float = 0.0
    output: Path | None = None
    error: str | None = None


@dataclass
class _Plan:
    jobs: list[NotebookJob] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Paths and discovery
# --------------------------------------------------------------------------------------------------


def _default_root() -> Path:
    root = _config.repo_root()
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def _pretty(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def discover_notebooks(notebooks_dir: str | os.PathLike) -> list[Path]:
    """The ``NN_name.py`` notebooks of a folder, in order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise WorkbookError(f"notebooks folder not found: {_pretty(folder)}")
    found = [p for p in folder.iterdir() if p.is_file() and NOTEBOOK_RE.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def _select(notebooks: list[Path], only: Sequence[str] | None) -> list[Path]:
    if not only:
        return notebooks
    wanted: list[str] = []
    for item in only:
        wanted.extend(part.strip() for part in str(item).split(",") if part.strip())
    chosen: list[Path] = []
    for want in wanted:
        key = f"{int(want):02d}" if want.isdigit() else want.removesuffix(".py")
        matches = [p for p in notebooks if p.stem == key or p.stem.split("_", 1)[0] == key]
        if not matches:
            names = ", ".join(p.stem for p in notebooks) or "none"
            raise WorkbookError(f"--only {want!r} matches no notebook; available: {names}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen, key=lambda p: p.name)


def _load_registry(spec: str | Mapping[str, type] | None) -> Mapping[str, type]:
    if spec is None:
        from .registry import NOTEBOOK_CONFIGS

        return NOTEBOOK_CONFIGS
    if isinstance(spec, Mapping):
        return spec
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        registry = getattr(module, attr or "NOTEBOOK_CONFIGS")
    except (ImportError, AttributeError) as exc:
        raise WorkbookError(f"cannot load the config registry {spec!r}: {exc}") from exc
    if not isinstance(registry, Mapping):
        raise WorkbookError(f"config registry {spec!r} is not a mapping of notebook names to classes")
    return registry


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
    except NoSuchKernel:
        available = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        raise WorkbookError(
            f"Jupyter kernel {name!r} is not installed (available: {available}). "
            "Run scripts/setup_venv.sh to register it, or pass --kernel NAME."
        ) from None


# --------------------------------------------------------------------------------------------------
# Planning: everything is checked before the first notebook runs
# --------------------------------------------------------------------------------------------------


def plan_workbook(
    params_dir: str | os.PathLike,
    *,
    notebooks_dir: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    registry: str | Mapping[str, type] | None = None,
) -> list[NotebookJob]:
    """Pair notebooks with their YAML files and validate every selected one; raises :class:`WorkbookError`."""
    return _plan(params_dir, notebooks_dir=notebooks_dir, only=only, registry=registry).jobs


def _split_overrides(entries: Sequence[str] | None, stems: Sequence[str]) -> dict[str, list[str]]:
    """``[NN:]key=value`` entries by notebook stem (no ``NN:``: every stem)."""
    out: dict[str, list[str]] = {stem: [] for stem in stems}
    for entry in entries or ():
        head, sep, rest = entry.partition(":")
        if sep and "=" not in head:
            matches = [st for st in stems if st == head or st.split("_", 1)[0] == head]
            if not matches:
                raise WorkbookError(f"--set {entry!r}: {head!r} matches no selected notebook ({', '.join(stems)})")
            for st in matches:
                out[st].append(rest)
        else:
            for st in stems:
                out[st].append(entry)
    return out


def _cross_notebook(plan: _Plan, notebooks, params: Path, configs: Mapping[str, type]) -> list[str]:
    """The rules between notebooks (:mod:`.crosscheck`); a notebook outside the selection that a selected one
    relies on is read from its parameter file alone (its own problems are reported when it is selected)."""
    from .crosscheck import cross_notebook_problems

    loaded = {job.stem: job.config for job in plan.jobs}
    for nb in notebooks:
        path = params / f"{nb.stem}.yaml"
        if nb.stem not in loaded and nb.stem in configs and path.is_file():
            try:
                loaded[nb.stem] = _config.load_config(configs[nb.stem], path)
            except _config.ConfigError:
                continue
    return cross_notebook_problems(loaded, {job.stem for job in plan.jobs})


def _plan(
    params_dir: str | os.PathLike,
    *,
    notebooks_dir: str | os.PathLike | None,
    only: Sequence[str] | None,
    registry: str | Mapping[str, type] | None,
    overrides: Sequence[str] | None = None,
) -> _Plan:
    params = Path(params_dir)
    if not params.is_dir():
        raise WorkbookError(f"parameter folder not found: {_pretty(params)}")
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else _default_root() / "notebooks"
    notebooks = discover_notebooks(nb_dir)
    if not notebooks:
        raise WorkbookError(f"no NN_name.py notebooks in {_pretty(nb_dir)}")
    selected = _select(notebooks, only)
    configs = _load_registry(registry)
    sets = _split_overrides(overrides, [nb.stem for nb in selected])

    plan = _Plan()
    problems: list[str] = []
    for nb in selected:
        yaml_path = params / f"{nb.stem}.yaml"
        if not yaml_path.is_file():
            problems.append(f"notebook {nb.stem} ({_pretty(nb)}) has no parameter file: expected {_pretty(yaml_path)}")
            continue
        cls = configs.get(nb.stem)
        if cls is None:
            known = ", ".join(sorted(configs)) or "none"
            problems.append(
                f"notebook {nb.stem} has no registered configuration class "
                f"(add it to NOTEBOOK_CONFIGS; registered: {known})"
            )
            continue
        try:
            cfg = _config.load_config(cls, yaml_path, overrides=sets[nb.stem] or None)
        except _config.ConfigError as exc:
            problems.append(f"notebook {nb.stem}: {exc}")
            continue
        plan.jobs.append(NotebookJob(stem=nb.stem, notebook=nb.resolve(), params=yaml_path.resolve(), config=cfg,
                                     overridden=bool(sets[nb.stem])))
    problems += _cross_notebook(plan, notebooks, params, configs)
    stems = {nb.stem for nb in notebooks}
    for extra in sorted(params.glob("*.yaml")):
        if extra.stem not in stems:
            plan.warnings.append(f"{_pretty(extra)} matches no notebook in {_pretty(nb_dir)}")
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise WorkbookError(
            f"{count} found in {_pretty(params)}; no notebook was run:\n" + "\n".join(f"- {p}" for p in problems)
        )
    return plan


# --------------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------------


def _first_lines(source: str, n: int = 3) -> str:
    lines = [line for line in str(source).splitlines() if line.strip()]
    text = "\n".join(f"    {line}" for line in lines[:n])
    return text + ("\n    ..." if len(lines) > n else "")


def _kernel_options() -> dict[str, Any]:
    """Ask for CurveZMQ-encrypted kernel sockets where the kernel and jupyter_client support them."""
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if not KernelManager.class_traits().get("transport_encryption"):
        return {}
    try:
        import zmq

        if not zmq.has("curve"):
            return {}
    except ImportError:
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def _import_notebook_tools() -> None:
    """Import papermill and jupytext, skipping one optional import that costs seconds.

    ``jsonschema`` (reached through ``nbformat``) imports ``rfc3987_syntax`` only if present, to check
    the "iri" string format, and that module builds a parser grammar at import time (several seconds
    on a small CPU). Notebook validation does not use that format, so this process goes without it.
    """
    if "rfc3987_syntax" not in sys.modules and "jsonschema" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # makes the optional import fail fast
    import jupytext  # noqa: F401
    import papermill  # noqa: F401


def _execute(job: NotebookJob, out_path: Path, run_dir: Path, kernel: str, root: Path, log_output: bool) -> None:
    import jupytext
    import papermill

    nb = jupytext.read(job.notebook)
    tmp = temporary_path(out_path)  # replaces out_path when the notebook ends (ok or failed)
    try:
        with warnings.catch_warnings():  # papermill warns of an output name not ending in .ipynb
            warnings.filterwarnings("ignore", "The specified file .* does not end in one of", UserWarning)
            papermill.execute_notebook(
                nb,
                str(tmp),
                parameters={"config_path": str(job.params), "run_dir": str(run_dir)},
                kernel_name=kernel,
                cwd=str(root),
                progress_bar=False,
                log_output=log_output,
                **_kernel_options(),
            )
    except BaseException as exc:
        if is_storage_error(exc):  # the executed notebook could not be written: the previous one stays
            tmp.unlink(missing_ok=True)
            raise named(exc, out_path) from exc
        finish_notebook(tmp, out_path, job.notebook, root)  # the partially executed notebook
        raise
    finish_notebook(tmp, out_path, job.notebook, root)


def run_workbook(
    params_dir: str | os.PathLike,
    *,
    only: Sequence[str] | None = None,
    run_name: str | None = None,
    output_root: str | os.PathLike | None = None,
    kernel: str = DEFAULT_KERNEL,
    notebooks_dir: str | os.PathLike | None = None,
    registry: str | Mapping[str, type] | None = None,
    root: str | os.PathLike | None = None,
    log_output: bool = False,
    echo: bool = True,
    overrides: Sequence[str] | None = None,
) -> list[NotebookResult]:
    """Validate, then execute the selected notebooks in order.

    ``registry`` maps notebook stems to config classes (default: :data:`omnirl_core.workbook.NOTEBOOK_CONFIGS`;
    a ``"module:attribute"`` string is imported). Notebooks run with ``root`` (default: the repository)
    as working directory. Raises :class:`WorkbookError` before anything runs when a check fails, and
    :class:`NotebookFailed` when a notebook raises (later notebooks are not run).
    """
    from tqdm.auto import tqdm

    plan = _plan(params_dir, notebooks_dir=notebooks_dir, only=only, registry=registry, overrides=overrides)
    name = _run_name(run_name, params_dir)
    _import_notebook_tools()
    _check_kernel(kernel)
    root_dir = Path(root).resolve() if root is not None else _default_root()
    out_root = Path(output_root).resolve() if output_root is not None else root_dir / "outputs"
    run_dir = out_root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences a debugger notice from the kernel

    def say(text: str) -> None:
        if echo:
            tqdm.write(text, file=sys.stderr)

    with folder_lock(run_dir, busy="another workbook run is writing this run folder", error=WorkbookError):
        for tmp in remove_stale_temp_files(run_dir):
            say(f"removed {_pretty(tmp)}, a temporary file left by a process that is gone")
        return _run_jobs(plan, params_dir, run_dir, name, kernel, root_dir, log_output, echo, say)


def _run_name(run_name: str | None, params_dir: str | os.PathLike) -> str:
    """``run_name`` (default: the parameter folder's name), refused unless it is a plain folder name."""
    if run_name is None:
        return Path(params_dir).resolve().name
    bad = not run_name.strip() or run_name != run_name.strip() or run_name in (".", "..") or "\0" in run_name
    if bad or any(sep and sep in run_name for sep in ("/", os.sep, os.altsep)):
        raise WorkbookError(f"--run-name {run_name!r}: must be a plain folder name (not empty, no '/' and no "
                            "spaces around it, not '.' or '..'); the run folder is OUTPUT_ROOT/NAME")
    return run_name


def _run_jobs(plan: _Plan, params_dir, run_dir: Path, name: str, kernel: str, root_dir: Path, log_output: bool,
              echo: bool, say) -> list[NotebookResult]:
    from tqdm.auto import tqdm

    for warning in plan.warnings:
        say(f"warning: {warning}")
    jobs = plan.jobs
    results = [NotebookResult(stem=j.stem, status="not run") for j in jobs]
    started = _dt.datetime.now().astimezone()
    t_start = time.perf_counter()
    failure: NotebookFailed | None = None
    error: BaseException | None = None
    say(f"Running {len(jobs)} notebook(s) with {_pretty(Path(params_dir))} -> {_pretty(run_dir)} (kernel {kernel})")
    # A live bar on a terminal; plain lines in logs (tqdm disables itself when stderr is not a TTY).
    bar = tqdm(total=len(jobs), unit="nb", desc="workbook", disable=None if echo else True, file=sys.stderr)
    try:
        for i, (job, result) in enumerate(zip(jobs, results), start=1):
            bar.set_postfix_str(job.stem)
            if bar.disable:
                say(f"[{i}/{len(jobs)}] {job.stem} ...")
            out_path = run_dir / f"{job.stem}.ipynb"
            result.output = out_path
            validated = run_dir / f"{job.stem}.config.yaml"
            try:
                _config.dump_config(job.config, validated, header=f"Validated parameters of {job.stem}")
            except OSError as exc:
                raise named(exc, validated) from exc
            if job.overridden:
                job = dataclasses.replace(job, params=Path(validated).resolve())
            t0 = time.perf_counter()
            try:
                _execute(job, out_path, run_dir, kernel, root_dir, log_output)
            except BaseException as exc:
                result.seconds = time.perf_counter() - t0
                if is_storage_error(exc):  # nothing of this run of the notebook was kept: its earlier record stays
                    say(f"[not written] {job.stem}  {result.seconds:.1f} s")
                    raise
                result.status = "failed"
                failure = _failure(job, out_path, exc)
                result.error = str(failure)
                say(f"[FAILED] {job.stem}  {result.seconds:.1f} s")
                if not isinstance(exc, Exception):
                    raise
                break
            result.seconds = time.perf_counter() - t0
            result.status = "ok"
            say(f"[ok] {job.stem}  {result.seconds:.1f} s  -> {_pretty(out_path)}")
            from .audit import audit_notebook  # how the executed notebook reads (figures, claims): said, not fatal

            for problem in audit_notebook(out_path):
                say(f"  [audit] {problem}")
            bar.update(1)
    except BaseException as exc:
        error = exc
        raise
    finally:
        bar.close()
        total = time.perf_counter() - t_start
        if echo:
            print(_summary_text(name, results, total), file=sys.stderr)
        try:
            write_record(run_dir, params_dir, kernel, started, results)
        except OSError as exc:
            if error is None:
                raise
            say(f"warning: {SUMMARY_FILE} was not updated: {exc}")  # the error above is the one reported
    if failure is not None:
        raise failure
    return results


def _failure(job: NotebookJob, out_path: Path, exc: BaseException) -> NotebookFailed:
    from papermill.exceptions import PapermillExecutionError

    where = f"notebook {job.stem} ({_pretty(job.notebook)})"
    if isinstance(exc, PapermillExecutionError):
        cell = exc.exec_count
        label = f"cell [{cell}]" if cell is not None else f"cell #{exc.cell_index}"
        message = (
            f"{where} failed in {label}: {exc.ename}: {exc.evalue}\n"
            f"  cell source:\n{_first_lines(exc.source)}\n"
            f"  partially executed notebook: {_pretty(out_path)}"
        )
        return NotebookFailed(message, stem=job.stem, output=out_path, cell=cell, ename=exc.ename, evalue=exc.evalue)
    ename = type(exc).__name__
    message = f"{where} failed: {ename}: {exc}\n  partially executed notebook: {_pretty(out_path)}"
    return NotebookFailed(message, stem=job.stem, output=out_path, cell=None, ename=ename, evalue=str(exc))


def _summary_text(name: str, results: list[NotebookResult], total: float) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "not run")}
    head = (
        f"Workbook run '{name}': {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['not run']} not run, {total:.1f} s"
    )
    width = max((len(r.stem) for r in results), default=0)
    rows = [
        f"  {r.stem:<{width}}  {r.status:<7}  {r.seconds:7.1f} s  {_pretty(r.output) if r.output else ''}"
        for r in results
    ]
    return "\n".join([head, *rows])
