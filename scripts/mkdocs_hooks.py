"""Build-time hooks of the docs site (mkdocs.yml ``hooks:``).

- Figures the project writes under ``bench/results/`` are published at ``results-data/...`` (the pages link
  them there), so a figure lives in one file, the one the run wrote.
- The docstrings' Sphinx roles (``:func:`x` ``) show as plain code in the API reference.
- ``<!-- config-reference -->`` on a page becomes the field table of every notebook's configuration class,
  from the classes' own field docs (``omnirl_core.workbook.config.describe``).
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PUBLISHED = "results-data"
CONFIG_MARKER = "<!-- config-reference -->"


def on_files(files, config):
    for path in sorted(RESULTS.rglob("*.png")):
        uri = f"{PUBLISHED}/{path.relative_to(RESULTS).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def _config_reference() -> str:
    from omnirl_core.workbook.config import describe
    from omnirl_core.workbook.registry import NOTEBOOK_CONFIGS

    parts = []
    for stem in NOTEBOOK_CONFIGS:
        cls = NOTEBOOK_CONFIGS[stem]
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        parts.append(f"## `{stem}`: `{cls.__module__}.{cls.__name__}`\n\n{doc}\n\n"
                     f"Quick values: `params/quick/{stem}.yaml`; paper values: `params/paper/{stem}.yaml`.\n\n"
                     f"{describe(cls)}\n")
    return "\n".join(parts)


def on_page_markdown(markdown, page, config, files):
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, _config_reference())
    return markdown


_ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj):(?=<code)")


def on_page_content(html, page, config, files):
    return _ROLE.sub("", html)
