#!/usr/bin/env python3
"""A runnable example for hypograph's `command` plugin: triage by the model's own numbers.

Reads one JSON hypothesis per line on stdin, writes one JSON verdict per line on stdout:
confirmed when the model is confident (score >= 0.5 and spread <= 0.2), refuted when it is
confidently low (score < 0.1), inconclusive otherwise. Anything on stderr becomes part of the
failure reason if the program dies.
"""

import json
import sys

for line in sys.stdin:
    if not line.strip():
        continue
    h = json.loads(line)
    score, spread = h.get("score", 0.0), h.get("spread", 1.0)
    if score >= 0.5 and spread <= 0.2:
        verdict = "confirmed"
    elif score < 0.1:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    print(json.dumps({
        "key": h["key"],
        "verdict": verdict,
        "confidence": 0.6,
        "evidence": {"rule": "score/spread thresholds", "score": score, "spread": spread},
    }), flush=True)
