#!/usr/bin/env bash
# Time to quality on UMLS: PyKEEN 1.11.1 (CPU torch, 2 threads) and hypograph train the same
# configurations (PyKEEN's RotatE recipe with 64 negatives per positive; a 1-vs-all ComplEx),
# plus hypograph's default, in one run; prints each side's test MRR and the training seconds
# (evaluation off the clock) to reach PyKEEN's best test MRR. About 20 minutes on 2 idle cores.
# VS_PYKEEN_ONLY=rotate|complex for one configuration; VS_PYKEEN_EPOCHS=N to shorten (then not
# the reference configurations). Installs PyKEEN into target/pykeen-venv on first use (~6 GB:
# PyPI's torch brings CUDA libs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pykeen-venv
if ! "$venv/bin/python" -c "import pykeen, torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --no-cache-dir pykeen==1.11.1 torch
fi
PYKEEN_PYTHON="$venv/bin/python" cargo bench --bench vs_pykeen
