#!/usr/bin/env python3
"""New compounds on real Hetionet: `ask` against popularity and a similar-compounds vote.

The shared split (../shared/tools/hetionet_split.py, `compounds/`) removes 20 compounds with
every edge; `new/<n>.tsv` holds one compound's edges shuffled. For k = 0, 1, 3, 10 the first k
lines are the ask's claims, and every other edge the compound heads (its outgoing edges) is a
question: `ask` predicts `COMPOUND RELATION ?` and the hidden tail's filtered rank is read from
the answer (the compound's other hidden tails of that relation are filtered, ties share their
mean position). Edges to an entity the graph lacks (another removed compound) are skipped.

It drives the real server: a model trained on `compounds/kgx` in DB, `hypograph serve` with
the model loaded once (as users run it), one `POST /api/v1/ask` per question. Answers keep at
most the 1,000 rows `ask` allows, so a tail below rank 1,000 counts as reciprocal rank 0 (at
most 0.001 too low). Beside it, on the same questions:
  popularity  the relation's tails ranked by how often each is its tail in the graph;
  vote        compounds that share a claimed edge with the new one (same relation, same other
              end, either direction), or that a claim says it resembles (CrC), vote their own
              edges of the relation; popularity breaks ties.

Usage: hetionet_compounds.py HYPOGRAPH DB SPLIT_DIR [--port 18431] [--ks 0,1,3,10]
Prints MRR and H@10 per k for each arm, the ratio to popularity, per relation at k = 3, and
the ask latency (median, p95) the server reported.
"""
import argparse, collections, json, os, subprocess, sys, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("hypograph"); ap.add_argument("db"); ap.add_argument("split")
ap.add_argument("--port", type=int, default=18431)
ap.add_argument("--ks", default="0,1,3,10")
ap.add_argument("--data-dir", default=None)
ap.add_argument("--json", default=None, help="write the figures here too")
a = ap.parse_args()
ks = [int(k) for k in a.ks.split(",")]

# The graph the model was trained on.
entities, category = set(), {}
with open(os.path.join(a.split, "compounds", "kgx", "nodes.tsv")) as f:
    next(f)
    for line in f:
        i, c, _ = line.rstrip("\n").split("\t")[:3]
        category[i] = c
graph = []
with open(os.path.join(a.split, "compounds", "kgx", "edges.tsv")) as f:
    next(f)
    for line in f:
        h, r, t = line.rstrip("\n").split("\t")[:3]
        graph.append((h, r, t))
        entities.add(h); entities.add(t)
tail_count = collections.defaultdict(collections.Counter)
out_edges = collections.defaultdict(set)   # (entity, relation) -> tails
in_edges = collections.defaultdict(set)    # (entity, relation) -> heads
for h, r, t in graph:
    tail_count[r][t] += 1
    out_edges[(h, r)].add(t)
    in_edges[(t, r)].add(h)

new_dir = os.path.join(a.split, "compounds", "new")
compounds = []
for name in sorted(os.listdir(new_dir), key=lambda s: int(s.split(".")[0])):
    rows = [tuple(l.rstrip("\n").split("\t")) for l in open(os.path.join(new_dir, name)) if l.strip()]
    heads = collections.Counter(x for h, _, t in rows for x in (h, t))
    me = heads.most_common(1)[0][0]
    usable = [x for x in rows if (x[2] if x[0] == me else x[0]) in entities]
    compounds.append((me, usable))


def filtered_rank(order, score, target, truths):
    """Mean tie position of `target` among `order` (higher score first), others in `truths` removed."""
    s = score[target]
    higher = sum(1 for c in order if c not in truths and c != target and score[c] > s)
    equal = sum(1 for c in order if c not in truths and c != target and score[c] == s)
    return 1 + higher + equal / 2


def popularity_rank(r, target, truths):
    counts = tail_count[r]
    s = counts.get(target, 0)
    higher = sum(1 for c, n in counts.items() if n > s and c not in truths and c != target)
    equal = sum(1 for c, n in counts.items() if n == s and c not in truths and c != target)
    if s == 0:
        # Every entity of the range the graph has never seen as a tail ties with it.
        rng = {c for c in entities if category.get(c) == category.get(target)}
        equal += len(rng - set(counts) - truths - {target})
    return 1 + higher + equal / 2


def vote_rank(me, claims, r, target, truths):
    voters = collections.Counter()
    for h, cr, t in claims:
        if h == me and cr == "CrC":
            voters[t] += 1
        elif t == me and cr == "CrC":
            voters[h] += 1
        elif h == me:
            for other in in_edges[(t, cr)]:
                voters[other] += 1
        else:
            for other in out_edges[(h, cr)]:
                voters[other] += 1
    votes = collections.Counter()
    for v, w in voters.items():
        if v == me:
            continue
        for t in out_edges[(v, r)]:
            votes[t] += w
    counts = tail_count[r]
    cands = set(counts) | set(votes) | {target}
    score = {c: (votes.get(c, 0), counts.get(c, 0)) for c in cands}
    rank = filtered_rank(cands, score, target, truths)
    if score[target] == (0, 0):
        rng = {c for c in entities if category.get(c) == category.get(target)}
        rank += len(rng - cands - truths) / 2
    return rank


# The server, with a reviewer's token for the ask API.
env = dict(os.environ)
base = [a.hypograph, "--db", a.db] + (["--data-dir", a.data_dir] if a.data_dir else [])
token = subprocess.run(base + ["user", "add", f"bench{os.getpid()}", "--role", "reviewer"],
                       check=True, capture_output=True, text=True, env=env).stdout.strip().split()[-1]
server = subprocess.Popen(base + ["serve", "--bind", f"127.0.0.1:{a.port}"],
                          stdout=subprocess.DEVNULL, stderr=open(a.db + ".serve.log", "w"), env=env)
try:
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{a.port}/healthz", timeout=2).read()
            break
        except Exception:
            if server.poll() is not None or time.time() > deadline:
                sys.exit(f"server did not start; see {a.db}.serve.log")
            time.sleep(0.2)

    def ask(prompt):
        req = urllib.request.Request(f"http://127.0.0.1:{a.port}/api/v1/ask",
                                     data=json.dumps(prompt).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            sys.exit(f"ask failed ({e.code}): {e.read().decode()[:500]}\nprompt: {json.dumps(prompt)[:500]}")

    ask({"entities": [{"id": "warm-up", "category": "Compound"}], "predict": [["warm-up", "CtD", "?"]], "top": 10})

    rr = {arm: collections.defaultdict(list) for arm in ("ask", "popularity", "vote")}
    by_rel = {arm: collections.defaultdict(list) for arm in ("ask", "popularity", "vote")}
    latency = []
    # Reliability by rank: do the probabilities fall with rank as the observed rate does?
    BUCKETS = [1, 3, 10, 30, 100, 1000]
    reliability = {k: [[] for _ in BUCKETS] for k in ks}
    for me, rows in compounds:
        for k in ks:
            claims, hidden = rows[:k], [x for x in rows[k:] if x[0] == me]
            by_r = collections.defaultdict(set)
            for _, r, t in hidden:
                by_r[r].add(t)
            for r, truths in sorted(by_r.items()):
                answer = ask({"entities": [{"id": me, "category": "Compound"}],
                              "edges": [list(x) for x in claims],
                              "predict": [[me, r, "?"]], "top": 1000})
                latency.append(answer["seconds"])
                order = [row["tail"] for row in answer["rows"] if row["relation"] == r]
                probs = [row["probability"] for row in answer["rows"] if row["relation"] == r]
                for i, (c, p) in enumerate(zip(order, probs)):
                    b = next(j for j, hi in enumerate(BUCKETS) if i < hi)
                    reliability[k][b].append((p, c in truths))
                score = {c: -i for i, c in enumerate(order)}
                for t in sorted(truths):
                    if t in score:
                        q = 1 / filtered_rank(order, score, t, truths)
                    else:
                        q = 0.0
                    for arm, v in (("ask", q),
                                   ("popularity", 1 / popularity_rank(r, t, truths)),
                                   ("vote", 1 / vote_rank(me, claims, r, t, truths))):
                        rr[arm][k].append(v)
                        by_rel[arm][(k, r)].append(v)
finally:
    server.terminate()
    server.wait()

mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
hits = lambda xs: sum(1 for x in xs if x >= 0.1) / len(xs) if xs else float("nan")
print(f"new compounds: {len(compounds)}, questions per k: {len(rr['ask'][ks[0]])}")
print(f"{'k':>3}  {'ask MRR':>8} {'H@10':>6}  {'pop MRR':>8} {'H@10':>6}  {'vote MRR':>8} {'H@10':>6}  ask/pop  vote/pop")
out = {"per_k": {}, "per_relation_k3": {}}
for k in ks:
    m = {arm: mean(rr[arm][k]) for arm in rr}
    h = {arm: hits(rr[arm][k]) for arm in rr}
    print(f"{k:>3}  {m['ask']:>8.4f} {h['ask']:>6.3f}  {m['popularity']:>8.4f} {h['popularity']:>6.3f}  "
          f"{m['vote']:>8.4f} {h['vote']:>6.3f}  {m['ask'] / m['popularity']:>6.2f}x  {m['vote'] / m['popularity']:>6.2f}x")
    out["per_k"][k] = {"ask": m["ask"], "popularity": m["popularity"], "vote": m["vote"],
                       "ask_h10": h["ask"], "popularity_h10": h["popularity"], "vote_h10": h["vote"],
                       "questions": len(rr["ask"][k])}
k3 = 3 if 3 in ks else ks[-1]
print(f"per relation at k = {k3} (questions: ask / popularity / vote MRR)")
for (k, r) in sorted(key for key in by_rel["ask"] if key[0] == k3):
    v = {arm: mean(by_rel[arm][(k, r)]) for arm in rr}
    flag = "  BELOW POPULARITY" if v["ask"] < v["popularity"] else ""
    print(f"  {r:<5} {len(by_rel['ask'][(k, r)]):>5}  {v['ask']:.4f} / {v['popularity']:.4f} / {v['vote']:.4f}{flag}")
    out["per_relation_k3"][r] = v
print("reliability by rank (rows of every ask; mean probability / fraction true / rows)")
out["reliability"] = {}
lo_names = ["1", "2-3", "4-10", "11-30", "31-100", "101-1000"]
print("  k  " + "  ".join(f"{n:>22}" for n in lo_names))
for k in ks:
    cells, rows_out = [], []
    for name, cell in zip(lo_names, reliability[k]):
        if cell:
            p = sum(x for x, _ in cell) / len(cell)
            o = sum(1 for _, y in cell if y) / len(cell)
            cells.append(f"{p:.3f} / {o:.3f} / {len(cell):>5}")
            rows_out.append({"ranks": name, "predicted": p, "observed": o, "rows": len(cell)})
        else:
            cells.append("-")
    print(f"{k:>3}  " + "  ".join(f"{c:>22}" for c in cells))
    out["reliability"][k] = rows_out
lat = sorted(latency)
p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.95))]
print(f"ask latency over {len(lat)} asks (server-reported): median {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
out["latency_ms"] = {"median": p50 * 1000, "p95": p95 * 1000, "asks": len(lat)}
if a.json:
    json.dump(out, open(a.json, "w"), indent=1)
