#!/usr/bin/env bash
# Run the test suite. Extra arguments go to pytest, e.g.:  bash scripts/run_tests.sh -m "not slow"
# Two worker processes (pytest-xdist), each test file kept on one worker (--dist loadfile: a file's module
# fixtures, such as the docs site's build and the Triton-interpreter comparison, run once); -n 0 runs serially,
# -n N with N workers. OMNIRL_TEST_WORKERS sets the default.
# Also installs Debian's chromium (used by the browser test) when it is missing and we can.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_venv.sh

if [[ ! -x /usr/bin/chromium && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[run_tests] installing Debian chromium for the browser test" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >/tmp/omnirl-apt.log 2>&1; then
        echo "[run_tests] warning: could not install chromium (see /tmp/omnirl-apt.log); browser tests will skip" >&2
    fi
fi

set +e
.venv/bin/python -m pytest -n "${OMNIRL_TEST_WORKERS:-2}" --dist loadfile "$@"
status=$?
set -e
exit "$status"
