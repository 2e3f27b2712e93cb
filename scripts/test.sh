#!/usr/bin/env bash
# The test command (README; CI runs it via .ci/run): install everything, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
bash scripts/install_browser.sh || echo "warning: chromium could not be installed; browser tests will be skipped"
exec .venv/bin/python -m pytest -q "$@"
