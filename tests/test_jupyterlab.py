"""The notebooks as a researcher steps through them in JupyterLab, without a browser.

A JupyterLab server (the project's, with jupytext's contents manager) runs on a temporary copy of the notebooks.
Opening a notebook and saving it is what the browser does through the server's contents API: GET the notebook
model, change what the frontend changes (the running kernel's spec, ``language_info``), PUT it back. Jupytext then
rewrites the ``.py`` file; the file's bytes must not change, or every notebook opened in JupyterLab shows up as
modified in git. The server's settings must also make a double-click open a ``.py`` file as a notebook (the
override ``scripts/setup_venv.sh`` installs), and a notebook run out of order must name the notebook to open.
"""

from __future__ import annotations

import difflib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
LAB_OVERRIDES = Path("share", "jupyter", "lab", "settings", "overrides.d", "omnirl-workbench.json")
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
# A notebook with the header as it was committed before: kernelspec keys in another order than jupytext writes
# them, and no filter for jupytext's version line. Saving it in JupyterLab rewrites it.
REWRITTEN_HEADER = """\
# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     name: omnirl
#     display_name: OmniRL (.venv)
#     language: python
# ---

# %% [markdown]
# # A notebook

# %%
x = 1
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on ``root`` (its own settings, workspaces and runtime folders), stopped by :meth:`stop`."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        self.port, self.token = _free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        env.update(JUPYTERLAB_SETTINGS_DIR=str(scratch / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(scratch / "workspaces"), JUPYTER_RUNTIME_DIR=str(scratch / "runtime"))
        cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={self.port}",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.port_retries=0", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = scratch / "lab.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.request("GET", "/api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"jupyter lab did not answer within 90 s:\n{self.log_tail()}") from None
                time.sleep(0.5)

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

    def request(self, method: str, path: str, body: dict | None = None, **query) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")

    def open_and_save(self, relpath: str, kernelspec: dict | None = None) -> None:
        """What JupyterLab does to a notebook it opens, connects to a kernel and saves."""
        api = "/api/contents/" + urllib.parse.quote(relpath)
        model = self.request("GET", api, type="notebook", content=1)
        assert model["type"] == "notebook", f"{relpath} is not served as a notebook: {model['type']}"
        nb = model["content"]
        if kernelspec is not None:  # the frontend records the kernel it started
            nb["metadata"]["kernelspec"] = dict(kernelspec)
        nb["metadata"]["language_info"] = {
            "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py", "mimetype": "text/x-python",
            "name": "python", "nbconvert_exporter": "python", "pygments_lexer": "ipython3",
            "version": ".".join(map(str, sys.version_info[:3]))}
        self.request("PUT", api, {"type": "notebook", "format": "json", "content": nb})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down and exits (SIGINT only asks)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyter (jupyterlab) is not installed in this environment")
    pytest.importorskip("jupytext", reason="jupytext is not installed")
    root = tmp_path_factory.mktemp("lab_root")
    (root / "notebooks").mkdir()
    server = Lab(root, tmp_path_factory.mktemp("lab_scratch"))
    yield server
    server.stop()


def _registered_kernelspec(name: str = "omnirl") -> dict | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return None
    return {"name": name, "display_name": spec.display_name, "language": spec.language}


def roundtrip_diff(lab: Lab, source: Path, relpath: str, kernelspec: dict | None = None) -> str:
    """Copy ``source`` into the server's root as ``relpath``, open and save it there; the unified diff of what the
    save changed (empty: the file's bytes are unchanged)."""
    target = lab.root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    before = source.read_bytes()
    target.write_bytes(before)
    lab.open_and_save(relpath, kernelspec)
    after = target.read_bytes()
    if after == before:
        return ""
    diff = difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines(), f"{relpath} (committed)",
                                f"{relpath} (saved in JupyterLab)", lineterm="", n=1)
    return "\n".join(list(diff)[:40]) or "(the bytes differ, the lines do not: line endings?)"


def test_five_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"], NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_opening_and_saving_a_notebook_leaves_its_file_unchanged(lab, notebook):
    diff = roundtrip_diff(lab, notebook, f"notebooks/{notebook.name}", _registered_kernelspec())
    assert not diff, (f"saving notebooks/{notebook.name} in JupyterLab rewrites it (git shows it modified); commit "
                      f"the header jupytext writes:\n{diff}")


def test_the_check_sees_a_header_that_jupytext_rewrites(lab, tmp_path):
    old = tmp_path / "old_header.py"
    old.write_text(REWRITTEN_HEADER)
    diff = roundtrip_diff(lab, old, "notebooks/old_header.py")
    assert "+#       jupytext_version:" in diff and "-#     name: omnirl" in diff, diff


def test_a_library_module_opened_as_a_notebook_is_left_unchanged(lab):
    # a double-click opens every .py file as a notebook, modules of the package included
    for module in ("omnirl_core/workbook/artefacts.py", "omnirl_core/views/explorer.py"):
        assert not roundtrip_diff(lab, ROOT / module, module), module


def test_a_double_click_opens_python_files_as_notebooks(lab):
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not the project's venv ({sys.prefix}): scripts/setup_venv.sh installs the setting there")
    installed = Path(sys.prefix) / LAB_OVERRIDES
    assert installed.is_file(), f"{installed} is missing: run bash scripts/setup_venv.sh"
    # the server's own view of the setting: the override is the default the frontend starts from
    settings = lab.request("GET", f"/lab/api/settings/{DOCMANAGER}")
    viewers = settings["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers.get("python") == "Jupytext Notebook", viewers
    # and jupytext's JupyterLab extension registers a viewer of that name
    static = Path(sys.prefix, "share", "jupyter", "labextensions", "jupyterlab-jupytext", "static")
    assert any('"Jupytext Notebook"' in p.read_text(errors="replace") for p in static.glob("*.js")), static


def test_a_notebook_run_out_of_order_names_the_notebook_to_open_and_the_command(tmp_path):
    from omnirl_core.workbook import MissingArtefact, repo_path, run_artefact

    run_dir = (tmp_path / "runs" / "fresh").resolve()
    run_dir.mkdir(parents=True)
    (run_dir / "03_training.config.yaml").write_text(
        f"# Parameters notebook 03_training ran with: {repo_path('params/quick/03_training.yaml')}\nseed: 0\n")
    with pytest.raises(MissingArtefact) as info:
        run_artefact(run_dir, "data/dpd_bandit", key="data.path", made_by="02_synthesis")
    (line,) = info.value._render_traceback_()
    assert line.startswith("MissingArtefact: data.path: data/dpd_bandit is not in the run folder ")
    assert f"Open notebooks/02_synthesis.py and run it with run_dir = '{run_dir}'" in line
    assert (f"run: .venv/bin/python -m omnirl_core.workbook run params/quick --only 02 --run-name fresh "
            f"--output-root {run_dir.parent}") in line
    # the quick run folder of the repository: the workbook script
    with pytest.raises(MissingArtefact, match=r"Open notebooks/03_training\.py and run it with run_dir = "
                                              r"'outputs/quick', or run: bash scripts/run_workbook\.sh --only 03 "
                                              r"--run-name quick, or set checkpoint to an existing path"):
        run_artefact("outputs/quick", "03_training/run/no-such-model.safetensors", key="checkpoint",
                     made_by="03_training")
