#!/usr/bin/env bash
# Trains the same ComplEx configurations on UMLS with PyKEEN 1.11.1 (CPU torch, 2 threads) and
# with hypograph in one run, and prints both test MRRs and the ratio of training times.
# Installs PyKEEN into target/pykeen-venv on first use (a few GB: PyPI's torch brings CUDA libs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pykeen-venv
if ! "$venv/bin/python" -c "import pykeen, torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pykeen==1.11.1 torch
fi
PYKEEN_PYTHON="$venv/bin/python" cargo bench --bench vs_pykeen
