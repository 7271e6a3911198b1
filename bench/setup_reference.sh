#!/usr/bin/env bash
# Create the separate virtual environment that holds the reference library (Xenoverse 0.1.14.0)
# for bench/bench_anymdp.py. It lives in bench/.ref-venv (git-ignored) so that the reference's
# dependencies (numba, pygame, ...) never enter the project's own venv.
#
# Usage: bash bench/setup_reference.sh [--force]
#   --force   delete and recreate the venv even if it already works.
# Environment: PYTHON picks the interpreter (default: python3, falling back to python).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.ref-venv"
force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
    python_bin="$(command -v python3 || command -v python || true)"
fi
if [[ -z "$python_bin" ]]; then
    echo "setup_reference.sh: no python3 found (set PYTHON=/path/to/python)" >&2
    exit 1
fi

check() {
    PYGAME_HIDE_SUPPORT_PROMPT=1 "$venv/bin/python" -c \
        'import yaml, xenoverse, xenoverse.anymdp; assert xenoverse.__version__ == "0.1.14.0", xenoverse.__version__' \
        >/dev/null 2>&1
}

if [[ $force -eq 0 && -x "$venv/bin/python" ]] && check; then
    echo "reference venv already set up: $venv"
    exit 0
fi

rm -rf "$venv"
"$python_bin" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# xenoverse declares gymnasium, numpy, Pillow, six, pygame, numba and scipy (no torch); importing
# xenoverse.anymdp also needs networkx, matplotlib and attrs, which its metadata omits. pyyaml is for
# importing omnirl_core.world (its config) in bench/reference_task_stats.py.
"$venv/bin/python" -m pip install --quiet "xenoverse==0.1.14.0" attrs networkx matplotlib numpy pyyaml

if ! check; then
    echo "setup_reference.sh: xenoverse.anymdp does not import in $venv" >&2
    PYGAME_HIDE_SUPPORT_PROMPT=1 "$venv/bin/python" -c 'import xenoverse.anymdp' || true
    exit 1
fi
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
print("reference venv ready:", ", ".join(f"{p} {md.version(p)}" for p in ("xenoverse", "numpy", "numba", "scipy")))
EOF
