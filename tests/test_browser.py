"""End to end in a real browser: notebook 01 in JupyterLab, run all cells, use the task explorer.

Needs Debian's chromium at /usr/bin/chromium (``apt-get install -y chromium``) and the ``omnirl`` kernel
(``python -m ipykernel install --sys-prefix --name omnirl``); skipped with the reason when either is
missing. Saves a screenshot of the explorer to ``outputs/browser/explorer.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_tasks.py"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "outputs" / "browser" / "explorer.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SMALL_CONFIG = {
    "seed": 0,
    "na": 5,
    "example_ns": [16],
    "stats_ns": [1, 16],
    "stats_tasks_per_ns": 3,
    "explorer_ns": 16,
    "timing_ns": [16],
    "timing_repeats": 1,
    "play_steps": 60,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kernel_registered(name: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True,
                         text=True, timeout=60)
    return out.returncode == 0 and name in json.loads(out.stdout).get("kernelspecs", {})


def _prepare_notebook(tmp: Path) -> Path:
    """The notebook as .ipynb in ``tmp`` with its parameters pointing at a small config."""
    import jupytext
    import yaml

    cfg_path = tmp / "01_tasks_small.yaml"
    cfg_path.write_text(yaml.safe_dump(SMALL_CONFIG))
    nb = jupytext.read(NOTEBOOK)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "notebook 01 needs exactly one parameters cell"
    params[0].source = f"config_path = {str(cfg_path)!r}\nrun_dir = {str(tmp / 'outputs')!r}"
    nb.metadata.pop("jupytext", None)  # a plain .ipynb: no pairing with the .py it came from
    out = tmp / "01_tasks.ipynb"
    jupytext.write(nb, out)
    return out


def _start_lab(tmp: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp / "workspaces")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    # Render every cell: with JupyterLab's windowing, cells scrolled out of view after "Run All" count as hidden.
    settings = tmp / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text('{"windowingMode": "none"}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["MPLBACKEND"] = "Agg"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [
        str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp}", "--ServerApp.port_retries=0",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "lab.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _log_tail(tmp: Path, n: int = 3000) -> str:
    path = tmp / "lab.log"
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _wait_for_server(port: int, token: str, proc: subprocess.Popen, tmp: Path, timeout: float = 60.0) -> None:
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}:\n{_log_tail(tmp)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer on port {port} within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server started here (its kernels are shut down with it), then its process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    try:  # kernels left behind in the server's own session
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def test_explorer_in_jupyterlab(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyter (jupyterlab) is not installed in this environment")
    if not _kernel_registered("omnirl"):
        pytest.skip("kernel 'omnirl' not registered: python -m ipykernel install --sys-prefix --name omnirl")

    nb_path = _prepare_notebook(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    proc = _start_lab(tmp_path, port, token)
    try:
        _wait_for_server(port, token, proc, tmp_path)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = None
            step = "open a page"
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1700})
                page.set_default_timeout(60_000)
                step = "open the notebook in JupyterLab"
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{nb_path.name}?token={token}&reset")
                page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
                step = "wait for the omnirl kernel"
                # the notebook's kernel (omnirl) must be up before running
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Toolbar *')]"
                    ".some(e => /OmniRL/.test(e.textContent || ''))",
                    timeout=90_000,
                )
                step = "run all cells from the Run menu"
                page.locator(".jp-NotebookPanel").first.click()
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

                step = "wait for the explorer and its graph image"
                explorer = page.locator(".omnirl-explorer").first
                graph = explorer.locator(".omnirl-graph")
                # "attached", not "visible": a later cell (play_and_show) switches the explorer to its
                # play tab, and on a fast machine that happens before this wait starts
                graph.wait_for(state="attached", timeout=150_000)
                page.wait_for_function(
                    "() => { const i = document.querySelector('.omnirl-explorer .omnirl-graph');"
                    " return i && i.complete && i.naturalWidth > 100; }",
                    timeout=60_000,
                )
                step = "wait for all cells to finish"
                # let every cell finish so the kernel is free for the widget's messages
                page.wait_for_function(
                    "() => { const p = [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')];"
                    " return p.length > 0 && !p.some(e => e.textContent.includes('[*]')); }",
                    timeout=150_000,
                )
                errors = page.locator(".jp-NotebookPanel .jp-OutputArea-output[data-mime-type*='error']")
                assert errors.count() == 0, "a notebook cell raised: " + errors.first.inner_text()[:2000]

                step = "switch to the graph tab"
                # the notebook's last explorer call showed the "play" tab: go back to the graph
                play_tab = explorer.locator(".lm-TabBar-tab", has_text="play").first
                assert "lm-mod-current" in (play_tab.get_attribute("class") or "")
                explorer.locator(".lm-TabBar-tab", has_text="graph").first.click()
                graph.wait_for(state="visible", timeout=30_000)
                graph.scroll_into_view_if_needed()
                src_before = graph.get_attribute("src")
                png_before = graph.screenshot()

                step = "change the seed and wait for a new graph"
                seed_input = explorer.locator(".widget-inline-hbox", has_text="seed").locator("input").first
                seed_input.fill("7")
                seed_input.press("Enter")
                page.wait_for_function(
                    "(before) => { const i = document.querySelector('.omnirl-explorer .omnirl-graph');"
                    " return i && i.getAttribute('src') !== before && i.complete && i.naturalWidth > 100; }",
                    arg=src_before,
                    timeout=90_000,
                )
                page.wait_for_timeout(500)
                png_after = graph.screenshot()
                assert png_after != png_before, "the graph image did not change after a new seed"
                status = explorer.locator(".widget-html", has_text="sampled ns=16").first
                assert "seed=7" in status.inner_text()

                step = "change the threshold and wait for a new graph"
                # a view control redraws too: raise the probability threshold
                src_mid = graph.get_attribute("src")
                slider_text = explorer.locator(".widget-inline-hbox", has_text="P threshold").locator(
                    ".widget-readout").first
                slider_text.click()
                page.keyboard.press("Control+A")
                page.keyboard.type("0.30")
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "(before) => { const i = document.querySelector('.omnirl-explorer .omnirl-graph');"
                    " return i && i.getAttribute('src') !== before; }",
                    arg=src_mid,
                    timeout=90_000,
                )

                step = "save the screenshot"
                # JupyterLab may ask about news notifications: answer the toast so it does not cover the widget
                no_news = page.locator(".jp-toast-button", has_text="No")
                if no_news.count():
                    no_news.first.click()
                explorer.scroll_into_view_if_needed()
                page.wait_for_timeout(300)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                explorer.screenshot(path=str(SCREENSHOT))
                assert SCREENSHOT.stat().st_size > 10_000
            except Exception as exc:
                if page is not None:  # keep what the browser showed for diagnosis
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        page.screenshot(path=str(SCREENSHOT.with_name("failure.png")), full_page=True)
                    except Exception:  # the original failure matters more
                        pass
                raise AssertionError(f"browser test failed at step '{step}': {exc}\n--- jupyter log ---\n"
                                     f"{_log_tail(tmp_path)}") from exc
            finally:
                browser.close()
    finally:
        _stop(proc)
