#!/usr/bin/env python3
"""Writes a synthetic graph (synth_kg.py output: nodes.tsv, triples.tsv, hidden.tsv) in the
published graphs' formats, at the graph's size, for the import benchmark (BENCHMARKS.md,
"Importing the published graphs"):

    python3 ../shared/tools/synth_kg.py --out target/synth2 --scale 2 --seed 1
    python3 benches/formats_at_scale.py target/synth2 target/formats2

hetionet/ : hetionet-v1.0-nodes.tsv + hetionet-v1.0-edges.sif.gz (metaedge abbreviations)
primekg/  : kg.csv with both directions of every edge, as PrimeKG lists them (quoted names)
drkg/     : drkg.tsv (headerless Type::ID relation Type::ID) in drkg.tar.gz
"""
import csv, gzip, io, os, sys, tarfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "formats"))
from make import KIND, METAEDGES, PREFIX  # noqa: E402


def main(src, out):
    nodes = {}
    for line in open(os.path.join(src, "nodes.tsv")).read().splitlines()[1:]:
        key, cat, name = line.split("\t")
        nodes[key] = (cat, name)
    triples = []
    for f in ("triples.tsv", "hidden.tsv"):
        for line in open(os.path.join(src, f)):
            triples.append(line.rstrip("\n").split("\t"))

    def hid(key):
        cat = nodes[key][0]
        return f"{KIND.get(cat, cat)}::{PREFIX[cat].format(int(key.split('::')[1]) + 1)}"

    d = os.path.join(out, "hetionet")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hetionet-v1.0-nodes.tsv"), "w") as f:
        f.write("id\tname\tkind\n")
        for key, (cat, name) in nodes.items():
            f.write(f"{hid(key)}\t{name.title()}\t{KIND.get(cat, cat)}\n")
    with gzip.open(os.path.join(d, "hetionet-v1.0-edges.sif.gz"), "wt", compresslevel=6) as f:
        f.write("source\tmetaedge\ttarget\n")
        for h, r, t in triples:
            m = METAEDGES[(h.split("::")[0], r.split("_")[0], t.split("::")[0])]
            f.write(f"{hid(h)}\t{m}\t{hid(t)}\n")

    d = os.path.join(out, "primekg")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "kg.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["relation", "display_relation", "x_index", "x_id", "x_type", "x_name",
                    "x_source", "y_index", "y_id", "y_type", "y_name", "y_source"])
        index = {k: i for i, k in enumerate(nodes)}

        def end(key):
            cat, name = nodes[key]
            return [index[key], key.split("::")[1], cat.lower(), f"{name}, synthetic", cat.upper()]

        for h, r, t in triples:
            w.writerow([r, r.split("_")[0]] + end(h) + end(t))
            w.writerow([r, r.split("_")[0]] + end(t) + end(h))

    d = os.path.join(out, "drkg")
    os.makedirs(d, exist_ok=True)
    body = io.StringIO()
    for h, r, t in triples:
        body.write(f"{h}\tSYNTH::{r}::{h.split('::')[0]}:{t.split('::')[0]}\t{t}\n")
    data = body.getvalue().encode()
    with tarfile.open(os.path.join(d, "drkg.tar.gz"), "w:gz") as tar:
        info = tarfile.TarInfo("drkg.tsv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    print(f"{len(nodes)} nodes, {len(triples)} triples -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
