"""The workbook runner's refusals and its run folder's records, through its command line on throwaway notebooks:
one writer per run folder, a run record that keeps the notebooks a partial rerun did not run, a full disk named
by its file with nothing half-written left, and run names that are folder names."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workbook import CONFIG_MODULE, NOTEBOOK, _cli, _kernel  # noqa: E402

from omnirl_core.workbook import cli as workbook_cli  # noqa: E402

HOLD_CELL = """
# %%
import os
import time

if os.environ.get("TINY_HOLD"):  # the first run waits here, holding its run folder, until the test releases it
    Path(run_dir, "started").touch()
    t0 = time.time()
    while not Path(run_dir, "release").exists() and time.time() - t0 < 120:
        time.sleep(0.05)
"""


def _make_workspace(root: Path) -> Path:
    """Two tiny notebooks with their parameters, and a module registering their config class (as test_workbook)."""
    (root / "cfgmod").mkdir()
    (root / "cfgmod" / "tinycfg.py").write_text(CONFIG_MODULE)
    (root / "notebooks").mkdir()
    (root / "params" / "quick").mkdir(parents=True)
    for stem, value in (("01_first", 5), ("02_second", 7)):
        (root / "notebooks" / f"{stem}.py").write_text(NOTEBOOK.format(stem=stem))
        (root / "params" / "quick" / f"{stem}.yaml").write_text(f"# test parameters\nvalue: {value}\n")
    return root


@pytest.fixture
def workspace(tmp_path):
    return _make_workspace(tmp_path)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "workbook_run.json").read_text())


def _records(run_dir: Path) -> dict[str, dict]:
    return {nb["stem"]: nb for nb in _summary(run_dir)["notebooks"]}


def _temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name)


# ---------------------------------------------------------------------------------------------- one writer
def test_a_second_run_into_a_running_run_folder_is_refused_and_the_first_keeps_its_parameters(workspace):
    nb = workspace / "notebooks" / "01_first.py"
    nb.write_text(nb.read_text() + HOLD_CELL)
    env = {**os.environ, "TINY_HOLD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(workspace / "cfgmod"), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "omnirl_core.workbook", "run", "params/quick", "--set", "02:value=11",
           "--notebooks-dir", str(workspace / "notebooks"), "--registry", "tinycfg:REGISTRY",
           "--output-root", str(workspace / "out"), "--kernel", _kernel()]
    run_dir = workspace / "out" / "quick"
    first = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "started").exists() and first.poll() is None:
            time.sleep(0.05)
        assert (run_dir / "started").exists(), "the first run never reached its notebook"
        t0 = time.perf_counter()
        second = _cli(workspace, "run", "params/quick")
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert str(run_dir) in lines[0] and f"pid {first.pid}" in lines[0] and "Traceback" not in lines[0]
        assert "another workbook run is writing this run folder" in lines[0]
        assert time.perf_counter() - t0 < 60  # refused at once, not after the first run ends
        assert first.poll() is None, "the first run died"
    finally:
        (run_dir / "release").touch()
        _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    lines = (run_dir / "order.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["01_first", "5"], ["02_second", "11"]]  # its own --set
    # the holder is gone: the folder is free again
    assert _cli(workspace, "run", "params/quick", "--only", "01").returncode == 0


# ---------------------------------------------------------------------------------------------- the run record
def test_a_partial_rerun_keeps_the_record_of_the_notebooks_it_did_not_run(workspace):
    res = _cli(workspace, "run", "params/quick")
    assert res.returncode == 0, res.stderr
    run_dir = workspace / "out" / "quick"
    before = _records(run_dir)
    res = _cli(workspace, "run", "params/quick", "--only", "02")
    assert res.returncode == 0, res.stderr
    after = _records(run_dir)
    assert list(after) == ["01_first", "02_second"], after
    assert after["01_first"] == before["01_first"]  # kept as it was
    assert after["02_second"]["status"] == "ok" and after["02_second"] != before["02_second"]  # the rerun's
    total = _summary(run_dir)["seconds"]
    assert total >= after["01_first"]["seconds"] + after["02_second"]["seconds"] - 1e-3


# ---------------------------------------------------------------------------------------------- a full disk
class _FullFile:
    """A file whose writes store half their data, then fail as a full disk does (no file name in the error)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _full_disk(monkeypatch, run_dir: Path, which) -> None:
    """Make the first write matching ``which(file name, calling module)`` under ``run_dir`` fail with ENOSPC."""
    real_open = io.open
    done = []

    def open_(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "os":  # os.fdopen: who called it
            caller = sys._getframe(2).f_globals.get("__name__", "")
        if (not done and any(c in mode for c in "wax") and Path(path).resolve().is_relative_to(run_dir)
                and which(Path(path).name, caller)):
            done.append(path)
            return _FullFile(fh)
        return fh

    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(builtins, "open", open_)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A workspace with a complete run of both notebooks in out/quick."""
    ws = _make_workspace(tmp_path_factory.mktemp("ws"))
    res = _cli(ws, "run", "params/quick")
    assert res.returncode == 0, res.stderr
    return ws


WRITES = {  # the file named in the error, and which write fails (file name, the module that opens it)
    "validated config": ("01_first.config.yaml", lambda name, by: "01_first.config.yaml" in name),
    "executed notebook": ("01_first.ipynb", lambda name, by: "01_first.ipynb" in name and "papermill" in by),
    "notebook metadata": ("01_first.ipynb", lambda name, by: "01_first.ipynb" in name and "papermill" not in by),
    "run record": ("workbook_run.json", lambda name, by: "workbook_run.json" in name),
}


@pytest.mark.parametrize("what", list(WRITES))
def test_a_full_disk_names_the_file_and_leaves_the_previous_files(good_run, tmp_path, capsys, monkeypatch, what):
    ws = tmp_path / "ws"
    shutil.copytree(good_run, ws)
    run_dir = (ws / "out" / "quick").resolve()
    monkeypatch.syspath_prepend(str(ws / "cfgmod"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ws / "cfgmod"), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(ws)
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "order.txt"}
    records = _records(run_dir)
    target, which = WRITES[what]
    _full_disk(monkeypatch, run_dir, which)
    code = workbook_cli.main(["run", "params/quick", "--only", "01", "--notebooks-dir", str(ws / "notebooks"),
                              "--registry", "tinycfg:REGISTRY", "--output-root", str(ws / "out"),
                              "--kernel", _kernel()])
    monkeypatch.undo()
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": error: " in line]
    assert code == 2 and len(err) == 1, (code, err)
    assert f"{run_dir / target}: No space left on device" in err[0] and "Traceback" not in err[0]
    assert _temporaries(run_dir) == []
    if what == "run record":  # 01 ran and was written; the record could not be
        kept = ["02_second.ipynb", "02_second.config.yaml", "workbook_run.json"]
        assert json.loads((run_dir / "01_first.ipynb").read_text())["cells"]
    else:  # nothing of 01's rerun was kept: its earlier files and record stay
        kept = ["01_first.ipynb", "02_second.ipynb", "01_first.config.yaml", "02_second.config.yaml"]
        assert _records(run_dir) == records
    for name in kept:
        assert (run_dir / name).read_bytes() == files[name], name


# ---------------------------------------------------------------------------------------------- run names
@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "../escape", "/tmp/x"])
def test_a_run_name_that_is_not_a_folder_name_is_refused(workspace, name):
    res = _cli(workspace, "run", "params/quick", "--run-name", name)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert f"--run-name {name!r}" in lines[0] and "plain folder name" in lines[0], lines
    assert not (workspace / "out").exists() and not (workspace / "escape").exists()
