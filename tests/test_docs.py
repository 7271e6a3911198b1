"""The README and the docs site (``mkdocs.yml``, ``docs/``, ``scripts/mkdocs_hooks.py``) tell readers the truth.

README.md stays short (15,000 characters at most); every Markdown table in README.md, docs/ and bench/results/ has
its separator row; in ```bash snippets each ``python -m`` module, repository path and project command's ``--option``
exists, and each ```python snippet exits 0 (unless ``<!-- snippet: not run -->`` precedes it); the site builds with
``mkdocs build --strict``; the results pages show the numbers of the bench/results/ files they include; two pages
look right in headless Chromium (screenshots in outputs/docs_screens/). Each checker is a plain function returning
a list of problems, with a test feeding it broken input.
"""

from __future__ import annotations

import contextlib
import functools
import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import namedtuple
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
MAX_README = 15_000
NOT_RUN = "<!-- snippet: not run -->"
SNIPPET_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TABLE_FILES = [*SNIPPET_FILES, *sorted((ROOT / "bench" / "results").rglob("*.md"))]
REPO_DIRS = ("scripts/", "bench/", "params/", "notebooks/", "models/", "tests/", "docs/")
NEW_PATH_OPTIONS = {"--out", "-o", "--out-dir", "--run-name", "--json-out"}  # may name a path not there yet
# ``python -m`` modules that are not the project's; their options are not checked (but pytest's)
OTHER_MODULES = {"pip", "pytest", "ipykernel", "jupyter", "jupyterlab", "jupytext", "papermill", "nbconvert",
                 "mkdocs", "torch.distributed.run", "torch.distributed.launch", "venv", "ensurepip", "http.server",
                 "playwright", "ruff", "tensorboard", "cProfile", "pstats", "timeit", "json.tool"}
LAUNCHERS = {"torch.distributed.run", "torch.distributed.launch"}
# project shell scripts that forward their arguments to a Python command (``python ARGV... "$@"``)
FORWARDS = {"scripts/run_workbook.sh": ("-m", "omnirl_core.workbook", "run"), "scripts/run_tests.sh": ("-m", "pytest")}
PYTHON = re.compile(r"(?:^|/)python(?:3(?:\.\d+)?)?$")
FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*([^`]*)$")
SUBCOMMANDS = re.compile(r"(?<!\[)\{([\w-]+(?:,[\w-]+)+)\} \.\.\.")  # argparse's "{run,check,...} ..." in usage
SNIPPET = re.compile(r"""^[ \t]*-+8<-+[ \t]+["']([^"']+)["'][ \t]*$""", re.M)  # pymdownx.snippets includes
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "COLUMNS": "200", "NO_COLOR": "1"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENS = ROOT / "outputs" / "docs_screens"
# a fenced block: its opening and closing fences' lines (1-based), the word after the opening fence, its code, and
# whether the nonblank line before it is NOT_RUN
Block = namedtuple("Block", "line end lang code not_run")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------------ Markdown structure
def fenced_blocks(text: str) -> list[Block]:
    """The top-level fenced code blocks of Markdown text; a fence inside a block is part of that block's code."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m[1]), m[2]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = next((k for k in range(i + 1, len(lines)) if close.match(lines[k])), len(lines))
        before = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        code = "\n".join(s[indent:] if not s[:indent].strip() else s.lstrip() for s in lines[i + 1:j])
        blocks.append(Block(i + 1, j + 1, (m[3].split() or [""])[0], code, before == NOT_RUN))
        i = j + 1
    return blocks


def _cells(row: str) -> list[str]:
    """A table row's cells: split at pipes neither escaped nor in a code span."""
    row, cells, cur, code, prev = row.strip(), [], "", False, ""
    for ch in row:
        code = not code if ch == "`" else code
        if ch == "|" and not code and prev != "\\":
            cells, cur = [*cells, cur], ""
        else:
            cur += ch
        prev = ch
    cells = [*cells, cur][1 if row.startswith("|") else 0:]
    return [c.strip() for c in (cells[:-1] if row.endswith("|") and not row.endswith("\\|") else cells)]


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line, rows) of each run of consecutive lines starting with ``|`` outside fenced code blocks."""
    fenced = {k for b in fenced_blocks(text) for k in range(b.line, b.end + 1)}
    found, run = [], []
    for n, line in enumerate([*text.splitlines(), ""], 1):
        if n not in fenced and line.lstrip().startswith("|"):
            run.append((n, line))
        elif run:
            found, run = [*found, (run[0][0], [r for _, r in run])], []
    return found


def first_table(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of the first table, cells without Markdown marks; ([], []) without a table."""
    found = tables(text)
    plain = [[" ".join(re.sub(r"[*`]", "", c).replace("\\|", "|").split()) for c in _cells(r)]
             for r in (found[0][1] if found else [])]
    return (plain[0], plain[2:]) if plain else ([], [])


# ---------------------------------------------------------------------------------------------------- checkers
def length_problems(text: str, name: str, limit: int = MAX_README) -> list[str]:
    return [f"{name} has {len(text):,} characters, more than {limit:,}"] if len(text) > limit else []


def table_problems(text: str, name: str) -> list[str]:
    """file:line of each table whose second line is not a separator row with as many cells as the header."""
    problems = []
    for line, rows in tables(text):
        head, sep = _cells(rows[0]), _cells(rows[1]) if len(rows) > 1 else []
        if not sep or not all(re.fullmatch(r"[-: ]*-[-: ]*", c) for c in sep):
            problems.append(f"{name}:{line}: table without a separator row (| --- | ...) as its second line")
        elif len(sep) != len(head):
            problems.append(f"{name}:{line}: the separator row has {len(sep)} cells, the header {len(head)}")
    return problems


def _commands(code: str) -> list[tuple[int, list[str]]]:
    """(line in the block, tokens) of each simple command of a shell block: backslash-continued lines joined,
    comments dropped, split at unquoted &&, ||, | and ;."""
    out, buf, start = [], "", 0
    for k, line in enumerate([*code.splitlines(), ""]):
        start, text = (start if buf else k), buf + line
        if line.rstrip().endswith("\\") and not line.lstrip().startswith("#"):
            buf = text.rstrip()[:-1] + " "
            continue
        lex, buf, cmd = shlex.shlex(text, posix=True, punctuation_chars=True), "", []
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError:  # an unbalanced quote
            tokens = text.split("#")[0].split()
        for tok in [*tokens, ";"]:
            if tok in ("&&", "||", "|", ";", "&", ";;"):
                out, cmd = out + ([(start, cmd)] if cmd else []), []
            else:
                cmd.append(tok)
    return out


def _invocations(tokens: list[str], launched: bool = False) -> list[tuple[str, str, list[str]]]:
    """The calls in a command: ("module", name, args) for ``python -m name args``, ("script", path, args) for
    ``python path args`` or ``bash path args``; a launcher's (torchrun) call follows it."""
    for i, tok in enumerate(tokens):
        rest = tokens[i + 1:]
        if tok == "torchrun" and not launched:
            return _invocations(["python", *rest], launched=True)
        if tok in ("bash", "sh") and rest and not rest[0].startswith("-") and not launched:
            return [("script", rest[0], rest[1:])]
        if PYTHON.search(tok):
            j = next((k for k, a in enumerate(rest) if not a.startswith("-") or a in ("-m", "-c")), len(rest))
            j = next((k for k, a in enumerate(rest) if a in ("-m", "-c") or a.endswith(".py")), j) if launched else j
            if j >= len(rest) or rest[j] == "-c":
                return []
            if rest[j] != "-m":
                return [("script", rest[j], rest[j + 1:])]
            call = ("module", rest[j + 1] if j + 1 < len(rest) else "", rest[j + 2:])
            return [call, *_invocations(["python", *call[2]], True)] if call[1] in LAUNCHERS else [call]
    return []


@functools.cache
def help_text(root: str, *argv: str) -> tuple[int, str]:
    """(exit code, output) of ``python ARGV --help`` run from ``root``; once per command."""
    p = subprocess.run([sys.executable, *argv, "--help"], cwd=root, env=ENV, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout + p.stderr


def _runnable(module: str) -> bool:
    """``python -m module`` finds it: a module, or a package with a ``__main__``."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    locations = spec.submodule_search_locations if spec is not None else []
    return spec is not None and (locations is None or any((Path(p) / "__main__.py").is_file() for p in locations))


def _call_problems(kind: str, name: str, args: list[str], root: Path) -> list[str]:
    """A call's module is real, and its subcommand and --options are in its --help."""
    shown = f"python -m {name}" if kind == "module" else name
    opts = list(dict.fromkeys(a.split("=", 1)[0] for a in args if re.match(r"--[A-Za-z0-9]", a)))
    if kind == "module" and not name.startswith("omnirl_core"):
        if not any(name == m or name.startswith(m + ".") for m in OTHER_MODULES):
            return [f"python -m {name}: not a module of omnirl_core nor one allowed (OTHER_MODULES)"]
        argv = ("-m", "pytest") if name == "pytest" else None
    elif kind == "module":
        if not _runnable(name):
            return [f"python -m {name}: no such module (nor {name}.__main__)"]
        argv = ("-m", name)
    elif name.startswith(("scripts/", "bench/")) and name.endswith(".py") and (root / name).is_file():
        if "argparse" not in (root / name).read_text(encoding="utf-8"):
            return [f"{name} parses no options (no argparse) but is given {', '.join(opts)}"] if opts else []
        argv = (name,)
    else:
        argv = FORWARDS.get(name)
    if argv is None:
        return []
    rc, text = help_text(str(root), *argv)
    if rc != 0:
        return [f"`python {' '.join(argv)} --help` exited {rc}: {text.strip()[-400:]}"]
    sub = SUBCOMMANDS.search(text.split("\n\n")[0])
    first = next((a for a in args if not a.startswith("-")), None)
    if sub and first is not None:
        if first not in sub[1].split(","):
            return [f"{shown}: no subcommand {first!r} (it has {sub[1]})"]
        shown += f" {first}"
        text += help_text(str(root), *argv, first)[1]
    return [f"{shown}: no option {o} in its --help" for o in opts
            if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]


def _missing_paths(tokens: list[str], root: Path) -> list[str]:
    """Repository paths among the tokens that do not exist (but those an output option names)."""
    values = [(prev, *(tok.partition("=")[::2] if tok.startswith("--") else ("", tok)))
              for prev, tok in zip(["", *tokens], tokens)]
    paths = [v.split("::")[0].rstrip("/") for prev, opt, v in values if not {prev, opt} & NEW_PATH_OPTIONS]
    return [f"no such path {p}" for p in paths if p.startswith(REPO_DIRS) and not set("$<*{") & set(p)
            and not (root / p).exists()]


def bash_problems(text: str, root: Path = ROOT, name: str = "<text>") -> list[str]:
    """file:line: problem for each command of the ```bash/sh/shell blocks of Markdown text that names a missing
    module, path, subcommand or option."""
    problems = []
    for b in fenced_blocks(text):
        for offset, tokens in _commands(b.code) if b.lang in ("bash", "sh", "shell") else []:
            found = _missing_paths(tokens, root)
            found += [p for call in _invocations(tokens) for p in _call_problems(*call, root)]
            problems += [f"{name}:{b.line + 1 + offset}: {p}" for p in found]
    return problems


def python_problems(text: str, root: Path = ROOT, name: str = "<text>") -> list[str]:
    """file:line: problem for each ```python block of Markdown text (not marked NOT_RUN) that does not exit 0 in a
    fresh interpreter."""
    problems = []
    for b in fenced_blocks(text):
        if b.lang != "python" or b.not_run:
            continue
        try:
            p = subprocess.run([sys.executable, "-c", b.code], cwd=root, env=ENV, capture_output=True, text=True,
                               timeout=120)
        except subprocess.TimeoutExpired:
            problems.append(f"{name}:{b.line}: the python block ran past 120 s")
            continue
        if p.returncode:
            problems.append(f"{name}:{b.line}: the python block exited {p.returncode}: "
                            f"{(p.stderr or p.stdout).strip()[-600:]}")
    return problems


def missing_from_page(expected: list[str], page_html: str) -> list[str]:
    """What of ``expected`` the page's text (scripts and tags dropped, entities unescaped) lacks."""
    page_html = re.sub(r"<(script|style)\b.*?</\1>", " ", page_html, flags=re.S | re.I)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page_html)).split())
    return list(dict.fromkeys(e for e in expected if e and " ".join(e.split()) not in text))


def measured_numbers(claims_md: str) -> list[str]:
    """The leading signed number (``+0.195``) of the "measured" cell of each row of a claims table."""
    head, rows = first_table(claims_md)
    col = head.index("measured") if "measured" in head else None
    return [m[0] for r in rows if col is not None and col < len(r)
            and (m := re.match(r"[+-]?\d[\d,]*(?:\.\d+)?", r[col]))]


def build_site(site_dir: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``root``'s mkdocs.yml into ``site_dir``."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                          cwd=root, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True,
                          timeout=600)


# ---------------------------------------------------------------------------------------------- the checks
def test_readme_is_short():
    problems = length_problems((ROOT / "README.md").read_text(encoding="utf-8"), "README.md")
    assert not problems, problems[0] + ": move the details to the docs site"


def test_length_checker_reports_a_long_readme():
    assert length_problems("x" * MAX_README, "README.md") == []
    assert length_problems("é" * (MAX_README + 1), "README.md")


def test_tables_have_separator_rows():
    problems = [p for f in TABLE_FILES for p in table_problems(f.read_text(encoding="utf-8"), _rel(f))]
    assert not problems, "tables that will not render:\n" + "\n".join(problems)


def test_table_checker_reports_a_missing_separator_and_ignores_fences():
    text = "intro\n\n| a | b |\n| 1 | 2 |\n| 3 | 4 |\n\n```\n| x | y |\n| 1 | 2 |\n```\n\n| a | b |\n|---|\n\n" \
           "| ok | `a|b` |\n| :-- | --: |\n| 1 | 2 |\n"
    assert table_problems(text, "t.md") == ["t.md:3: table without a separator row (| --- | ...) as its second line",
                                            "t.md:12: the separator row has 1 cells, the header 2"]


@pytest.mark.slow
@pytest.mark.parametrize("path", SNIPPET_FILES, ids=_rel)
def test_bash_snippets_name_real_things(path):
    problems = bash_problems(path.read_text(encoding="utf-8"), ROOT, _rel(path))
    assert not problems, "bash snippets naming what is not there:\n" + "\n".join(problems)


@pytest.mark.slow
def test_bash_checker_reports_a_missing_module_path_and_option():
    text = ("```bash\n.venv/bin/python -m omnirl_core.nosuch --out outputs/x\nbash scripts/nosuch.sh  # a comment\n"
            "OMP_NUM_THREADS=1 python -m omnirl_core.evaluation models/omnirl-tiny-bandit \\\n  --nosuch-option 3 "
            "--steps 40 && python -m omnirl_core.workbook nosuch\n```\n\n```text\nbash scripts/nosuch_too.sh\n```\n")
    assert bash_problems(text, ROOT, "t.md") == [
        "t.md:2: python -m omnirl_core.nosuch: no such module (nor omnirl_core.nosuch.__main__)",
        "t.md:3: no such path scripts/nosuch.sh",
        "t.md:4: python -m omnirl_core.evaluation: no option --nosuch-option in its --help",
        "t.md:4: python -m omnirl_core.workbook: no subcommand 'nosuch' (it has run,check,audit,describe)"]
    assert bash_problems("```sh\npython3 -m omnirl_core.workbook run params/quick --nosuch --only 01\n```\n") == [
        "<text>:2: python -m omnirl_core.workbook run: no option --nosuch in its --help"]
    assert bash_problems("```shell\nbash scripts/run_workbook.sh --only 01 --out-root x; python -m nosuch\n```") == [
        "<text>:2: scripts/run_workbook.sh: no option --out-root in its --help",
        "<text>:2: python -m nosuch: not a module of omnirl_core nor one allowed (OTHER_MODULES)"]
    launched = "```bash\ntorchrun --nnodes 2 -m omnirl_core.training params/quick/03_training.yaml --nosuch-flag\n```"
    assert bash_problems(launched) == ["<text>:2: python -m omnirl_core.training: no option --nosuch-flag in its "
                                       "--help"]


@pytest.mark.slow
@pytest.mark.parametrize("path", SNIPPET_FILES, ids=_rel)
def test_python_snippets_run(path):
    problems = python_problems(path.read_text(encoding="utf-8"), ROOT, _rel(path))
    assert not problems, f"python blocks that fail (put {NOT_RUN} before one not meant to run):\n" + "\n".join(problems)


def test_python_checker_reports_a_failing_block():
    text = ("```python\nraise SystemExit(1)\n```\n\n" + NOT_RUN + "\n\n```python\nraise SystemExit(2)\n```\n"
            "```py\nraise SystemExit(3)\n```\n````markdown\n```python\nraise SystemExit(4)\n```\n````\n"
            "```python\nimport os\nassert os.environ['OMP_NUM_THREADS'] == '1'\n```\n")
    problems = python_problems(text, ROOT, "t.md")
    assert len(problems) == 1 and problems[0].startswith("t.md:1: the python block exited 1"), problems


# ---------------------------------------------------------------------------------------------- the built site
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out, start = tmp_path_factory.mktemp("docs") / "site", time.monotonic()
    proc = build_site(out)
    return SimpleNamespace(dir=out, proc=proc, seconds=time.monotonic() - start,
                           output=(proc.stdout + proc.stderr)[-6000:])


def _built(site, page: str) -> str:
    if not (site.dir / page).is_file():
        pytest.fail(f"{page} was not built (mkdocs exited {site.proc.returncode}):\n{site.output}")
    return (site.dir / page).read_text(encoding="utf-8")


@pytest.mark.slow
def test_site_builds_strict(site):
    print(f"mkdocs build --strict took {site.seconds:.1f} s")
    assert site.proc.returncode == 0, f"mkdocs build --strict failed:\n{site.output}"


def test_build_reports_a_broken_site(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [the missing page](nope.md).\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: broken\nnav:\n  - index.md\n")
    proc = build_site(tmp_path / "site", tmp_path)
    assert proc.returncode != 0 and "nope.md" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


RESULTS_PAGES = {"table1": ("bench/results/table1_baselines.md", "results/table1-baselines/index.html"),
                 "ablations": ("bench/results/ablations_quick_3seeds/table.md", "results/ablations/index.html")}


@pytest.mark.slow
@pytest.mark.parametrize("source, page", RESULTS_PAGES.values(), ids=RESULTS_PAGES.keys())
def test_results_page_shows_the_files_numbers(site, source, page):
    _, rows = first_table((ROOT / source).read_text(encoding="utf-8"))
    assert rows, f"{source} has no table"
    missing = missing_from_page([c for r in rows for c in r], _built(site, page))
    assert not missing, f"{page} lacks {len(missing)} cells of {source} (is the file included?): {missing[:15]}"


@pytest.mark.slow
def test_quick_run_page_shows_the_claims(site):
    numbers = {_rel(f): measured_numbers(f.read_text(encoding="utf-8"))
               for f in sorted((ROOT / "bench" / "results" / "quick").glob("*/claims.md"))}
    assert numbers and all(numbers.values()), f"claims.md files without measured numbers: {numbers}"
    page = _built(site, "results/quick-run/index.html")
    missing = [f"{f}: {n}" for f, found in numbers.items() for n in missing_from_page(found, page)]
    assert not missing, f"results/quick-run/index.html lacks measured numbers: {missing}"


def test_results_checker_reports_a_missing_number():
    claims = "Run `quick`.\n\n| claim | measured | verdict |\n|---|---|---|\n| x | +0.195 (gain) | **holds** |\n" \
             "| y | -1.5 | **not shown** |\n| z | nan | - |\n"
    assert measured_numbers(claims) == ["+0.195", "-1.5"]
    page = "<table><tr><td>x</td><td>+0.195 <em>(gain)</em></td></tr><tr><td>AD-&epsilon;</td></tr></table>"
    assert missing_from_page(["+0.195", "-1.5", "AD-ε", "0.067 [-0.018, 0.084]"], page) == \
        ["-1.5", "0.067 [-0.018, 0.084]"]


# ---------------------------------------------------------------------------------------------- in a browser
PAGE_JS = """async () => {
  for (const i of document.images) i.loading = 'eager';
  const loads = [...document.images].filter(i => !i.complete).map(i => new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); }));
  await Promise.race([Promise.all(loads), new Promise(r => setTimeout(r, 20000))]);
  const nav = document.querySelector('.md-sidebar--primary nav.md-nav--primary');
  return {h1: document.querySelectorAll('h1').length,
          navLinks: nav && nav.getBoundingClientRect().width > 0 ? nav.querySelectorAll('a').length : 0,
          tables: [...document.querySelectorAll('table')].filter(t => t.getBoundingClientRect().width > 0).length,
          broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)};
}"""


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` over HTTP on a free port, from a thread: yields the base URL."""
    handler = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    pw = sync_api.sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise
    yield browser
    browser.close()
    pw.stop()


def page_problems(browser, url: str, screenshot: Path, *, expect_table: bool) -> list[str]:
    """Open ``url`` and save a full-page screenshot; then: an h1, the navigation sidebar, a table rendered if
    ``expect_table``, every image loaded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.set_default_timeout(60_000)
        response = page.goto(url, wait_until="load")
        found = page.evaluate(PAGE_JS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    checks = {f"HTTP {response and response.status}": response is not None and response.ok, "no h1": found["h1"],
              "no navigation sidebar": found["navLinks"] >= 2,
              "its Markdown has a table but no table is rendered": found["tables"] or not expect_table}
    return [f"{url}: {p}" for p, ok in checks.items() if not ok] + [f"{url}: image not loaded: {src}"
                                                                   for src in found["broken"]]


def _has_table(md: Path) -> bool:
    """The page's Markdown, its snippet includes expanded, has a table."""
    text = SNIPPET.sub(lambda m: (ROOT / m[1]).read_text() if (ROOT / m[1]).is_file() else "", md.read_text())
    return bool(tables(text))


BROWSER_PAGES = {"index": "index.md", "notebooks-04-evaluation": "notebooks/04-evaluation.md"}


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("shot, source", BROWSER_PAGES.items(), ids=BROWSER_PAGES.keys())
def test_page_in_browser(site, chromium, shot, source):
    built = "index.html" if source == "index.md" else source.removesuffix(".md") + "/index.html"
    _built(site, built)
    with serve(site.dir) as base:
        problems = page_problems(chromium, f"{base}/{built}", SCREENS / f"{shot}.png",
                                 expect_table=_has_table(ROOT / "docs" / source))
    assert not problems, f"see {SCREENS / shot}.png:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.browser
def test_page_checker_reports_a_broken_page(chromium, tmp_path):
    (tmp_path / "broken.html").write_text("<html><body><p>no heading</p><img src='missing.png'></body></html>")
    with serve(tmp_path) as base:
        problems = page_problems(chromium, f"{base}/broken.html", tmp_path / "broken.png", expect_table=True)
    for part in ("no h1", "no navigation sidebar", "no table is rendered", "missing.png"):
        assert any(part in p for p in problems), (part, problems)
