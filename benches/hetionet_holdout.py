#!/usr/bin/env python3
"""Hold 1% of a KGX graph's edges out (seeded) for early stopping and the popularity blend.

Usage: hetionet_holdout.py KGX_DIR OUT_DIR VALID_TSV
Writes OUT_DIR/edges.tsv (the rest, with the header) and links OUT_DIR/nodes.tsv; a held-out
edge whose end would be left without edges goes back to the graph, as the shared split does.
"""
import os, random, sys

src, out, valid_path = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
rows = open(os.path.join(src, "edges.tsv")).read().splitlines()
head, body = rows[0], [r for r in rows[1:] if r.strip()]
random.Random(1).shuffle(body)
k = len(body) // 100
seen = set()
for line in body[k:]:
    h, _, t = line.split("\t")[:3]
    seen.update((h, t))
valid = [l for l in body[:k] if l.split("\t")[0] in seen and l.split("\t")[2] in seen]
kept = set(valid)
train = body[k:] + [l for l in body[:k] if l not in kept]
with open(os.path.join(out, "edges.tsv"), "w") as f:
    f.write("\n".join([head] + train) + "\n")
with open(valid_path, "w") as f:
    f.write("\n".join(valid) + "\n")
nodes = os.path.join(out, "nodes.tsv")
if not os.path.exists(nodes):
    os.symlink(os.path.abspath(os.path.join(src, "nodes.tsv")), nodes)
print(f"held out {len(valid)} of {len(body)} edges")
