#!/usr/bin/env bash
# Create or refresh the project virtualenv at <repo>/.venv.
#
# - Creates .venv with python3.11 (or python3, if it is >= 3.11; override with PYTHON=...).
# - Installs torch first (default torch==2.13.0, the CPU wheel on a CPU machine; override with
#   OMNIRL_TORCH_SPEC, e.g. a CUDA build on a GPU node), then this package with the [dev] (tests, notebooks, docs site) and [cql] extras,
#   [interpret] too (triton for Triton's interpreter) when torch did not bring a triton of its own (CUDA
#   builds do), then d3rlpy without its dependencies (it pins gymnasium==1.0.0; it runs on ours).
# - Registers the Jupyter kernel "omnirl" inside the venv.
# - Makes the venv's JupyterLab open Python files as notebooks on double-click (jupytext's "Jupytext Notebook"
#   viewer): a settings override in .venv/share/jupyter/lab/settings/overrides.d/. A researcher's own settings
#   still win; "Open With -> Editor" opens a file as text.
# Idempotent: a stamp in .venv holds a hash of pyproject.toml and this script; when it matches
# (and the package imports), nothing is installed (the JupyterLab override is rewritten, identically).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.omnirl-setup-stamp"
TORCH_SPEC="${OMNIRL_TORCH_SPEC:-torch==2.13.0}"

say() { echo "[setup_venv] $*" >&2; }

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    say "error: Python >= 3.11 not found (tried python3.11, python3); set PYTHON=/path/to/python"
    exit 1
}

stamp_value() {
    # Hash of what decides the install, plus where the checkout lives (editable installs record it).
    { cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_venv.sh"; echo "$ROOT"; echo "$TORCH_SPEC"; } \
        | "$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

if [[ ! -x "$VENV/bin/python" ]]; then
    PY="$(pick_python)"
    say "creating $VENV with $("$PY" --version 2>&1)"
    "$PY" -m venv "$VENV"
fi

LAB_OVERRIDES="$VENV/share/jupyter/lab/settings/overrides.d/omnirl-workbench.json"
install_lab_settings() {
    # JupyterLab reads {sys.prefix}/share/jupyter/lab/settings/overrides.d/*.json as defaults of its settings.
    mkdir -p "$(dirname "$LAB_OVERRIDES")"
    cat >"$LAB_OVERRIDES.tmp" <<'JSON'
{
  "@jupyterlab/docmanager-extension:plugin": {
    "defaultViewers": {
      "python": "Jupytext Notebook"
    }
  }
}
JSON
    mv "$LAB_OVERRIDES.tmp" "$LAB_OVERRIDES"
}

installed() {
    [[ -f "$VENV/share/jupyter/kernels/omnirl/kernel.json" ]] && "$VENV/bin/python" -c '
import importlib.util, sys
sys.exit(not all(importlib.util.find_spec(m) for m in ("omnirl_core", "papermill", "torch", "triton", "d3rlpy")))
' 2>/dev/null
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" ]] && installed; then
    install_lab_settings
    exit 0  # up to date
fi

rm -f "$STAMP"
PIP=("$VENV/bin/python" -m pip --quiet)
say "upgrading pip"
"${PIP[@]}" install --upgrade pip
say "installing $TORCH_SPEC"
"${PIP[@]}" install "$TORCH_SPEC"
EXTRAS="dev,cql"
if ! "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("triton") is None)'; then
    EXTRAS="$EXTRAS,interpret"  # fla's Triton kernels on CPU tensors in the tests (tests/test_fla_interpreter.py)
fi
say "installing omnirl-workbench[$EXTRAS] (editable)"
"${PIP[@]}" install -e "$ROOT[$EXTRAS]"
say "installing d3rlpy without its dependencies (the CQL baseline)"
"${PIP[@]}" install --no-deps "d3rlpy==2.8.1"
say "registering the Jupyter kernel 'omnirl'"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name omnirl --display-name "OmniRL (.venv)" >/dev/null
say "JupyterLab: Python files open as notebooks ($LAB_OVERRIDES)"
install_lab_settings
stamp_value > "$STAMP"
say "done: $VENV"
