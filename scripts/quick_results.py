#!/usr/bin/env python
"""Put the quick run's results into the README and the docs, from the run itself (omnirl_core.workbook.results).

    python scripts/quick_results.py [RUN_DIR]   # after bash scripts/run_workbook.sh (default outputs/quick):
                                                # writes bench/results/quick_run.json, bench/results/quick/
                                                # (key figures, tables, claims per notebook) and the README's block
    python scripts/quick_results.py --check     # the README's block and the claims tables are what
                                                # bench/results/quick_run.json renders
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnirl_core.workbook.results import (  # noqa: E402
    BLOCK_SUMMARY,
    KEY_ARTEFACTS,
    claims_file,
    collect,
    publish,
    render_summary,
    replace_block,
)

SNAPSHOT = ROOT / "bench" / "results" / "quick_run.json"
ARTEFACTS = ROOT / "bench" / "results" / "quick"
README = ROOT / "README.md"


def check() -> list[str]:
    """What differs between the committed snapshot and the files rendered from it."""
    snapshot = json.loads(SNAPSHOT.read_text())
    readme = README.read_text(encoding="utf-8")
    problems = []
    if replace_block(readme, render_summary(snapshot), BLOCK_SUMMARY) != readme:
        problems.append(f"{README.name}: the block '{BLOCK_SUMMARY}' is not what {SNAPSHOT.name} renders")
    for stem in snapshot["notebooks"]:
        claims = ARTEFACTS / stem / "claims.md"
        if not claims.is_file() or claims.read_text(encoding="utf-8") != claims_file(snapshot, stem):
            problems.append(f"{claims.relative_to(ROOT)}: not what {SNAPSHOT.name} renders")
        problems += [f"{(ARTEFACTS / stem / name).relative_to(ROOT)}: missing"
                     for name in KEY_ARTEFACTS.get(stem, ()) if not (ARTEFACTS / stem / name).is_file()]
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", default=str(ROOT / "outputs" / "quick"))
    ap.add_argument("--check", action="store_true", help="only compare the README and the claims tables with "
                                                         "the committed snapshot")
    a = ap.parse_args()
    if a.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run python scripts/quick_results.py after the workbook", file=sys.stderr)
            return 1
        print("README's quick-run block and bench/results/quick/ match", SNAPSHOT.relative_to(ROOT))
        return 0
    snapshot = collect(a.run_dir)
    files = publish(a.run_dir, ARTEFACTS, snapshot)
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1) + "\n")
    README.write_text(replace_block(README.read_text(encoding="utf-8"), render_summary(snapshot), BLOCK_SUMMARY),
                      encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}, {len(files)} files under {ARTEFACTS.relative_to(ROOT)}/ and the "
          f"README's block from {a.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
