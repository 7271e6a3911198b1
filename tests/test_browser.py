"""End to end in a real browser: notebook 01 in JupyterLab, opened by a double-click in the file browser, run all
cells, use the task explorer, save.

Needs Debian's chromium at /usr/bin/chromium (``apt-get install -y chromium``) and the ``omnirl`` kernel
(``python -m ipykernel install --sys-prefix --name omnirl``); skipped with the reason when either is
missing. Saves a screenshot of the explorer to ``outputs/browser/explorer.png``.

A cell's failure can look like any other stderr output in the page (JupyterLab renders an error and a stream to
stderr both as ``application/vnd.jupyter.stderr``), so :func:`cell_problems` reads every output of the notebook:
its type in the notebook model (an ``error``) and its text (a traceback or an exception's name on stderr).
``test_the_detector_finds_a_broken_cell`` shows it on a copy of the notebook broken on purpose.
"""

from __future__ import annotations

import json
import os
import re
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

pytestmark = [pytest.mark.timeout(480), pytest.mark.slow]

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
PARAMETERS_CELL = re.compile(r'^# %% tags=\["parameters"\]\n.*?(?=^# %%)', re.M | re.S)
STDERR = "application/vnd.jupyter.stderr"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# an exception's name at the start of a line: ValueError, KeyboardInterrupt, SystemExit, omnirl's MissingArtefact
ERROR_NAME = re.compile(r"^\s*(?:[A-Za-z_]\w*\.)*(?:[A-Z]\w*(?:Error|Exception|Interrupt|Exit)|MissingArtefact|"
                        r"RunStopped|NotebookFailed)\b(?::|$)", re.M)
BROKEN_CELLS = '''# %%
import sys
import warnings

print("[omnirl kernels] a harmless note on stderr", file=sys.stderr)
warnings.warn("a harmless warning", stacklevel=1)

# %%
print("Traceback (most recent call last):\\n  File \\"<cell>\\", line 1, in <module>\\nKeyboardInterrupt",
      file=sys.stderr)

# %%
raise RuntimeError("broken on purpose")

'''
# Every output of the current notebook: its cell, its type in the notebook model (when JupyterLab exposes its
# application: --LabApp.expose_app_in_browser), the mime type it is rendered with and its text.
OUTPUTS_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return [];
  const app = window.jupyterapp;
  const current = app && app.shell.currentWidget;
  const model = current && current.content && current.content.model;
  const found = [];
  panel.querySelectorAll('.jp-Cell').forEach((cell, i) => {
    const cm = model && i < model.cells.length ? model.cells.get(i) : null;
    const outs = cm && cm.outputs ? cm.outputs : null;
    cell.querySelectorAll('.jp-OutputArea-output').forEach((el, j) => {
      const om = outs && j < outs.length ? outs.get(j) : null;
      found.push({cell: i, type: om ? om.type : null, mime: el.getAttribute('data-mime-type') || '',
                  text: el.innerText || ''});
    });
    if (outs) {
      for (let j = 0; j < outs.length; j++) {
        const om = outs.get(j);
        if (om.type === 'error') {
          found.push({cell: i, type: 'error', mime: 'model', text: String((om.data || {})[
            'application/vnd.jupyter.stderr'] || JSON.stringify(om.toJSON ? om.toJSON() : {})).slice(0, 2000)});
        }
      }
    }
  });
  return found;
}"""


def cell_problems(outputs: list[dict]) -> list[str]:
    """The outputs that show a failed cell, one line each: an ``error`` output of the notebook model, an output
    rendered with an error mime type, or stderr text holding a traceback or an exception's name."""
    problems = []
    for out in outputs:
        text, mime = ANSI.sub("", out.get("text") or ""), out.get("mime") or ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # the exception's line (a traceback's last), then where the output starts
        summary = (lines[-1] + (f" [{lines[0]}]" if len(lines) > 1 else ""))[:400] if lines else "(no text)"
        if out.get("type") == "error" or "error" in mime:
            problems.append(f"cell {out.get('cell')} raised: {summary}")
        elif mime == STDERR and ("Traceback (most recent call last)" in text or ERROR_NAME.search(text)):
            problems.append(f"cell {out.get('cell')} wrote an error to stderr: {summary}")
    return list(dict.fromkeys(problems))


def test_cell_problems_reads_errors_and_stderr_tracebacks_not_warnings():
    assert cell_problems([{"cell": 3, "type": "error", "mime": STDERR, "text": "MissingArtefact: data.path: ..."}])
    assert cell_problems([{"cell": 3, "type": None, "mime": STDERR, "text": "MissingArtefact: data.path: x"}])
    assert cell_problems([{"cell": 1, "type": None, "mime": STDERR,
                           "text": "Traceback (most recent call last):\n  File 'x'\nKeyboardInterrupt"}])
    assert cell_problems([{"cell": 1, "type": None, "mime": STDERR, "text": "\nKeyboardInterrupt\n"}])
    assert cell_problems([{"cell": 2, "type": None, "mime": "application/vnd.jupyter.error", "text": "x"}])
    assert cell_problems([{"cell": 2, "type": None, "mime": STDERR, "text": "torch.OutOfMemoryError: CUDA"}])
    harmless = [
        {"cell": 0, "type": "stream", "mime": STDERR, "text": "[omnirl kernels] RWKV-7: the PyTorch kernels"},
        {"cell": 0, "type": "stream", "mime": STDERR, "text": "/x/y.py:3: UserWarning: careful\n  warn()"},
        {"cell": 0, "type": "stream", "mime": STDERR, "text": "sampling: 100%|##########| 3/3 [00:01<00:00]"},
        {"cell": 0, "type": "execute_result", "mime": "text/plain", "text": "ValueError: a value shown"},
        {"cell": 0, "type": "stream", "mime": "application/vnd.jupyter.stdout", "text": "KeyError: printed"},
    ]
    assert cell_problems(harmless) == []


# ---------------------------------------------------------------------------------------------- the browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kernel_registered(name: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True,
                         text=True, timeout=60)
    return out.returncode == 0 and name in json.loads(out.stdout).get("kernelspecs", {})


def _prepare_notebook(folder: Path, name: str, *, extra_cells: str = "") -> tuple[Path, bytes]:
    """Notebook 01's file as ``folder/name``, byte for byte but for its parameters cell (a small config and a run
    folder in ``folder``), and ``extra_cells`` (percent-format cells) right after that cell; (path, its bytes)."""
    import yaml

    cfg_path = folder / f"{Path(name).stem}_small.yaml"
    cfg_path.write_text(yaml.safe_dump(SMALL_CONFIG))
    text = NOTEBOOK.read_text()
    cells = PARAMETERS_CELL.findall(text)
    assert len(cells) == 1, "notebook 01 needs exactly one parameters cell"
    params = (f'# %% tags=["parameters"]\nconfig_path = {str(cfg_path)!r}\n'
              f"run_dir = {str(folder / 'outputs')!r}\n\n")
    out = folder / name
    out.write_text(PARAMETERS_CELL.sub(lambda _m: params + extra_cells, text, count=1))
    return out, out.read_bytes()


def _start_lab(root: Path, scratch: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(scratch / "workspaces")
    env["JUPYTER_RUNTIME_DIR"] = str(scratch / "runtime")
    # Render every cell: with JupyterLab's windowing, cells scrolled out of view after "Run All" count as hidden.
    # The user settings here say nothing of viewers: a double-click opens what the environment's settings say.
    settings = scratch / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text('{"windowingMode": "none"}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["MPLBACKEND"] = "Agg"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [
        str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the notebook model's output types
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(scratch / "lab.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _log_tail(scratch: Path, n: int = 3000) -> str:
    path = scratch / "lab.log"
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _wait_for_server(port: int, token: str, proc: subprocess.Popen, scratch: Path, timeout: float = 60.0) -> None:
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}:\n{_log_tail(scratch)}")
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
        proc.terminate()  # the server shuts its kernels down and exits (SIGINT only asks for a confirmation)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    try:  # kernels left behind in the server's own session
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


class Lab:
    """A JupyterLab server on ``root`` and a headless Chromium; :meth:`page` opens a fresh JupyterLab page."""

    def __init__(self, root: Path, scratch: Path, sync_api) -> None:
        self.root, self.scratch = root, scratch
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.proc = _start_lab(root, scratch, self.port, self.token)
        self.pw = self.browser = None
        try:
            _wait_for_server(self.port, self.token, self.proc, scratch)
            self.pw = sync_api.sync_playwright().start()
            self.browser = self.pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except BaseException:
            self.close()
            raise

    def page(self):
        page = self.browser.new_page(viewport={"width": 1400, "height": 1700})
        page.set_default_timeout(60_000)
        page.goto(f"http://127.0.0.1:{self.port}/lab?reset&token={self.token}")
        return page

    def log_tail(self) -> str:
        return _log_tail(self.scratch)

    def close(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
            if self.pw is not None:
                self.pw.stop()
        finally:
            _stop(self.proc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyter (jupyterlab) is not installed in this environment")
    if not _kernel_registered("omnirl"):
        pytest.skip("kernel 'omnirl' not registered: python -m ipykernel install --sys-prefix --name omnirl")
    server = Lab(tmp_path_factory.mktemp("lab_root"), tmp_path_factory.mktemp("lab_scratch"), sync_api)
    yield server
    server.close()


def _double_click_open(page, name: str) -> None:
    """Open ``name`` from the file browser with a double-click, as a researcher does; it must open as a notebook."""
    item = page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=name)).first
    item.wait_for(state="visible", timeout=90_000)
    item.dblclick()
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell, .jp-FileEditor", timeout=90_000)
    editors = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .jp-FileEditor")
    assert editors.count() == 0, (f"a double-click opened {name} in a text editor, not as a notebook: the venv "
                                  "lacks JupyterLab's default viewer setting (bash scripts/setup_venv.sh)")


def _run_all_and_wait(page, timeout_ms: int) -> None:
    page.wait_for_function(  # the notebook's kernel (omnirl) must be up before running
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar *')]"
        ".some(e => /OmniRL/.test(e.textContent || ''))",
        timeout=90_000,
    )
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first.click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')];"
        " return p.length > 0 && !p.some(e => e.textContent.includes('[*]')); }",
        timeout=timeout_ms,
    )


def _failure_screenshot(page, name: str) -> None:
    if page is None:
        return
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(SCREENSHOT.with_name(name)), full_page=True)
    except Exception:  # the original failure matters more
        pass


@pytest.mark.browser
def test_the_detector_finds_a_broken_cell(lab):
    """A copy of notebook 01 broken on purpose: a traceback on stderr, then a cell that raises."""
    path, _ = _prepare_notebook(lab.root, "01_tasks_broken.py", extra_cells=BROKEN_CELLS)
    page, step = None, "open a page"
    try:
        page = lab.page()
        step = "open the broken copy with a double-click"
        _double_click_open(page, path.name)
        step = "run all cells"
        _run_all_and_wait(page, 120_000)
        step = "read the outputs"
        page.wait_for_function("() => !!window.jupyterapp", timeout=10_000)
        outputs = page.evaluate(OUTPUTS_JS)
        problems = cell_problems(outputs)
        assert any("raised" in p and "RuntimeError: broken on purpose" in p for p in problems), (problems, outputs)
        assert any("to stderr" in p and "KeyboardInterrupt" in p for p in problems), (problems, outputs)
        assert not any("harmless" in p for p in problems), problems
        # the page alone, without the notebook model, finds both too
        dom_only = cell_problems([{**o, "type": None} for o in outputs if o["mime"] != "model"])
        assert any("broken on purpose" in p for p in dom_only) and any("KeyboardInterrupt" in p for p in dom_only)
    except Exception as exc:
        _failure_screenshot(page, "failure_broken.png")
        raise AssertionError(f"browser test failed at step '{step}': {exc}\n--- jupyter log ---\n"
                             f"{lab.log_tail()}") from exc
    finally:
        if page is not None:
            page.close()


@pytest.mark.browser
def test_explorer_in_jupyterlab(lab):
    path, committed = _prepare_notebook(lab.root, "01_tasks.py")
    page, step = None, "open a page"
    try:
        page = lab.page()
        step = "open the notebook with a double-click in the file browser"
        _double_click_open(page, path.name)
        step = "run all cells from the Run menu"
        _run_all_and_wait(page, 300_000)

        step = "check every cell's outputs"
        outputs = page.evaluate(OUTPUTS_JS)
        assert outputs, "no cell output at all"
        problems = cell_problems(outputs)
        assert not problems, "a notebook cell failed:\n" + "\n".join(problems)

        step = "wait for the explorer and its graph image"
        explorer = page.locator(".omnirl-explorer").first
        graph = explorer.locator(".omnirl-graph")
        # "attached", not "visible": a later cell (play_and_show) switches the explorer to its play tab
        graph.wait_for(state="attached", timeout=60_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('.omnirl-explorer .omnirl-graph');"
            " return i && i.complete && i.naturalWidth > 100; }",
            timeout=60_000,
        )

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

        step = "switch to 32 states and press Play"
        # no shipped model covers 32 states: the policy control offers what can play, and Play plays it
        explorer.locator(".widget-dropdown", has_text="ns (states)").locator("select").first.select_option("32")
        explorer.locator(".widget-html", has_text="sampled ns=32").first.wait_for(timeout=90_000)
        note = explorer.locator(".omnirl-policy-note").first
        assert "no shipped model covers tasks with 32 states" in note.inner_text()
        explorer.locator("button", has_text="Play").first.click()
        played = explorer.locator(".widget-html", has_text="played").first
        played.wait_for(timeout=90_000)
        play_text = explorer.locator(".widget-html", has_text="return over").first.inner_text()
        assert "error" not in played.inner_text().lower() and "nan" not in play_text.lower(), play_text
        explorer.locator(".lm-TabBar-tab", has_text="graph").first.click()

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

        step = "save the notebook and compare its file"
        before = path.stat().st_mtime_ns
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while path.stat().st_mtime_ns == before:  # jupytext writes the file on every save
            assert time.monotonic() < deadline, "Ctrl+S did not save the notebook within 30 s"
            time.sleep(0.2)
        time.sleep(0.5)
        assert path.read_bytes() == committed, (
            "saving the notebook in JupyterLab rewrote its file (git would show it modified); first lines now:\n"
            + "\n".join(path.read_text().splitlines()[:16]))
    except Exception as exc:
        _failure_screenshot(page, "failure.png")
        raise AssertionError(f"browser test failed at step '{step}': {exc}\n--- jupyter log ---\n"
                             f"{lab.log_tail()}") from exc
    finally:
        if page is not None:
            page.close()
