#!/usr/bin/env python
"""Put the quick run's results into the README, from the run itself (omnirl_core.workbook.results).

    python scripts/quick_results.py [RUN_DIR]   # after bash scripts/run_workbook.sh (default outputs/quick):
                                                # writes bench/results/quick_run.json and the README's block
    python scripts/quick_results.py --check     # the README's block is what bench/results/quick_run.json renders
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnirl_core.workbook.results import collect, render, replace_block  # noqa: E402

SNAPSHOT = ROOT / "bench" / "results" / "quick_run.json"
README = ROOT / "README.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", default=str(ROOT / "outputs" / "quick"))
    ap.add_argument("--check", action="store_true", help="only compare the README with the committed snapshot")
    a = ap.parse_args()
    readme = README.read_text(encoding="utf-8")
    if a.check:
        expected = replace_block(readme, render(json.loads(SNAPSHOT.read_text())))
        if expected != readme:
            print(f"{README}: the quick-run block differs from what {SNAPSHOT.relative_to(ROOT)} renders; run "
                  "python scripts/quick_results.py after the workbook", file=sys.stderr)
            return 1
        print("README's quick-run block matches", SNAPSHOT.relative_to(ROOT))
        return 0
    snapshot = collect(a.run_dir)
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1) + "\n")
    README.write_text(replace_block(readme, render(snapshot)), encoding="utf-8")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} and the README's quick-run block from {a.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
