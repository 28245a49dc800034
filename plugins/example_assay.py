#!/usr/bin/env python3
"""A runnable example assay service for hypograph's `http` plugin (standard library only).

    python3 plugins/example_assay.py --port 8765 [--mode instant|poll|callback] [--truth FILE]
                                     [--delay SECONDS] [--token-env ASSAY_CALLBACK_TOKEN]

POST /assay takes {"stage", "callback_url", "hypotheses": [{"key", "head", "relation", "tail",
...}]} and answers {"results": [...]}:
  instant   a verdict for every hypothesis at once;
  poll      a job id for each; POST /poll {"jobs": [...]} answers those whose assay (--delay
            seconds) is done;
  callback  202 with job ids; after --delay it POSTs {"results": [{"key", "verdict", ...}]}
            to callback_url with the bearer token from --token-env.
A hypothesis is confirmed when the triple is in --truth (a head<TAB>relation<TAB>tail file),
else by a stable hash of its key (about 30% confirmed). Repeated keys get the same job and
the same answer: the service is idempotent, as hypograph's idempotency keys expect.
"""

import argparse
import hashlib
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
TRUTH = set()
JOBS = {}  # job id -> (ready_at, result)
LOCK = threading.Lock()


def judge(h):
    triple = (h["head"], h["relation"], h["tail"])
    if TRUTH:
        confirmed = triple in TRUTH
    else:
        digest = hashlib.sha256(h["key"].encode()).digest()
        confirmed = digest[0] < 77
    return {
        "key": h["key"],
        "verdict": "confirmed" if confirmed else "refuted",
        "confidence": 0.95,
        "evidence": {"assay": "example", "readout": 1.0 if confirmed else 0.0},
    }


def callback(url, results):
    token = os.environ.get(ARGS.token_env, "")
    time.sleep(ARGS.delay)
    body = json.dumps({"results": results}).encode()
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    for attempt in range(5):
        try:
            urllib.request.urlopen(req, timeout=10).read()
            return
        except Exception as e:  # retried: the callback endpoint is idempotent
            print(f"callback failed ({e}), retrying", flush=True)
            time.sleep(0.5 * 2 ** attempt)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, {"ok": True}) if self.path == "/healthz" else self.reply(404, {})

    def do_POST(self):
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            return self.reply(400, {"error": "invalid JSON"})
        if self.path == "/assay":
            hypotheses = request.get("hypotheses", [])
            if ARGS.mode == "instant":
                return self.reply(200, {"results": [judge(h) for h in hypotheses]})
            ready = time.time() + ARGS.delay
            with LOCK:
                for h in hypotheses:
                    JOBS.setdefault(h["key"], (ready, judge(h)))
            if ARGS.mode == "callback" and request.get("callback_url"):
                results = [JOBS[h["key"]][1] for h in hypotheses]
                threading.Thread(
                    target=callback, args=(request["callback_url"], results), daemon=True
                ).start()
            return self.reply(202, {"results": [{"key": h["key"], "job": h["key"]} for h in hypotheses]})
        if self.path == "/poll":
            now = time.time()
            out = []
            with LOCK:
                for job in request.get("jobs", []):
                    if job in JOBS and JOBS[job][0] <= now:
                        out.append(dict(JOBS[job][1], job=job))
            return self.reply(200, {"results": out})
        self.reply(404, {"error": "unknown path"})


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--mode", choices=["instant", "poll", "callback"], default="poll")
    p.add_argument("--truth")
    p.add_argument("--delay", type=float, default=1.0)
    p.add_argument("--token-env", default="ASSAY_CALLBACK_TOKEN")
    ARGS = p.parse_args()
    if ARGS.truth:
        with open(ARGS.truth) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 3:
                    TRUTH.add(tuple(parts))
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"example assay on http://127.0.0.1:{server.server_address[1]} ({ARGS.mode})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
