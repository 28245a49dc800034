#!/usr/bin/env python3
"""Runs ULTRA's reference PyTorch model (../shared/models/ultra/reference) for parity with
hypograph's Rust implementation (model::gnn). Benchmark tooling only: it needs a virtual
environment with `pip install torch torch-geometric`, never a test dependency.

Two modes, both on a graph given as `head<TAB>relation<TAB>tail` lines (inverse edges are
added as ULTRA does: relation r + R):

  logits  --graph G --queries Q --out F.json
      every entity's logit as the tail of each `head<TAB>relation` query of Q (a relation
      written `inv:NAME` asks for heads), keyed by entity name: the fixture hypograph's tests
      compare against.
  eval    --graph G --test T [--filter F ...] --out F.json
      zero-shot filtered MRR / Hits@1,3,10 over both directions of T, every entity of the
      graph a candidate (ULTRA's protocol on GraIL's inductive graphs).

Two changes make the reference run on a CPU without compiled extensions: `torch_scatter` is
a stand-in over `torch_geometric.utils.scatter`, and the convolution takes PyG's message +
aggregate path instead of the fused rspmm kernel. The two paths do NOT compute the same sums:
the kernel (which the published checkpoints were trained with, on GPUs) adds
`relation[type] * input[edge_index[1]]` into `edge_index[0]`, while PyG's default flow sends
`edge_index[0]`'s state to `edge_index[1]`. So the fallback is given the flipped edge index,
which makes it compute the kernel's sums. Without the flip the checkpoints answer a different
question: zero-shot MRR on GraIL's fb237_v1 falls from 0.499 (the paper's figure) to 0.194.
"""
import argparse
import json
import os
import sys
import time
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "models", "ultra", "reference"))


def install_scatter_standin():
    from torch_geometric.utils import scatter as pyg_scatter

    mod = types.ModuleType("torch_scatter")

    def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
        return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)

    def scatter_add(src, index, dim=-1, out=None, dim_size=None):
        return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce="sum")

    def scatter_mean(src, index, dim=-1, out=None, dim_size=None):
        return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce="mean")

    mod.scatter = scatter
    mod.scatter_add = scatter_add
    mod.scatter_mean = scatter_mean
    sys.modules["torch_scatter"] = mod


def load_model(checkpoint):
    install_scatter_standin()
    sys.path.insert(0, REFERENCE)
    from torch_geometric.nn.conv import MessagePassing
    from ultra import layers, models

    # PyG's message + aggregate path (no C++ extension) over the flipped edge index: the
    # fused kernel aggregates into edge_index[0] from edge_index[1], PyG the other way round.
    def propagate(self, edge_index, size=None, **kwargs):
        return MessagePassing.propagate(self, edge_index.flip(0), size, **kwargs)

    layers.GeneralizedRelationalConv.propagate = propagate
    cfg = dict(input_dim=64, hidden_dims=[64] * 6, message_func="distmult",
               aggregate_func="sum", short_cut=True, layer_norm=True)
    model = models.Ultra(dict(cfg, **{"class": "RelNBFNet"}), dict(cfg, **{"class": "EntityNBFNet"}))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return model


def read_triples(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                out.append(tuple(parts))
    return out


def build_graph(triples, entities, relations):
    from torch_geometric.data import Data
    sys.path.insert(0, REFERENCE)
    from ultra import tasks

    R = len(relations)
    h = torch.tensor([entities[t[0]] for t in triples])
    r = torch.tensor([relations[t[1]] for t in triples])
    t = torch.tensor([entities[t[2]] for t in triples])
    edge_index = torch.stack([torch.cat([h, t]), torch.cat([t, h])])
    edge_type = torch.cat([r, r + R])
    data = Data(edge_index=edge_index, edge_type=edge_type, num_nodes=len(entities),
                num_relations=2 * R)
    return tasks.build_relation_graph(data)


def vocab(triples, extra=()):
    entities, relations = {}, {}
    for h, r, t in list(triples) + list(extra):
        entities.setdefault(h, len(entities))
        entities.setdefault(t, len(entities))
        relations.setdefault(r, len(relations))
    return entities, relations


@torch.no_grad()
def tail_logits(model, data, heads, rels):
    """Every node's logit as the tail of (head, rel) for a batch: [batch, nodes]. A relation
    id at or beyond R (an inverse) asks for heads of the direct relation, built as ULTRA's
    test builds a head batch (`tasks.all_negative`): the model turns it into a tail query
    itself, with the relation graph conditioned on the direct relation."""
    n = data.num_nodes
    R = data.num_relations // 2
    rows = []
    for h, r in zip(heads, rels):
        batch = torch.zeros(1, n, 3, dtype=torch.long)
        if r < R:
            batch[:, :, 0] = h
            batch[:, :, 1] = torch.arange(n)
            batch[:, :, 2] = r
        else:
            batch[:, :, 0] = torch.arange(n)
            batch[:, :, 1] = h
            batch[:, :, 2] = r - R
        rows.append(model(data, batch)[0])
    return torch.stack(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["logits", "eval"])
    ap.add_argument("--checkpoint", default=os.path.join(REFERENCE, "..", "ultra_4g.pth"))
    ap.add_argument("--graph", required=True)
    ap.add_argument("--queries")
    ap.add_argument("--test")
    ap.add_argument("--filter", action="append", default=[])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    model = load_model(args.checkpoint)
    graph = read_triples(args.graph)
    if args.mode == "logits":
        entities, relations = vocab(graph)
        data = build_graph(graph, entities, relations)
        R = len(relations)
        names = sorted(entities, key=entities.get)
        out = []
        with open(args.queries) as f:
            qs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        for h, r in qs:
            rid = relations[r[4:]] + R if r.startswith("inv:") else relations[r]
            logits = tail_logits(model, data, [entities[h]], [rid])[0]
            out.append({"head": h, "relation": r,
                        "logits": {names[i]: float(logits[i]) for i in range(len(names))}})
        json.dump(out, open(args.out, "w"), indent=1)
        return
    test = read_triples(args.test)
    filters = [t for p in args.filter for t in read_triples(p)]
    entities, relations = vocab(graph, test + filters)
    data = build_graph(graph, entities, relations)
    R = len(relations)
    known_t, known_h = {}, {}
    for h, r, t in graph + test + filters:
        known_t.setdefault((entities[h], relations[r]), set()).add(entities[t])
        known_h.setdefault((entities[t], relations[r]), set()).add(entities[h])
    if args.limit:
        test = test[: args.limit]
    # Both directions: tails of (h, r), heads as tails of (t, r^-1).
    queries = []
    for h, r, t in test:
        hi, ri, ti = entities[h], relations[r], entities[t]
        queries.append((hi, ri, ti, known_t[(hi, ri)]))
        queries.append((ti, ri + R, hi, known_h[(ti, ri)]))
    ranks, pessimistic = [], []
    start = time.time()
    for i in range(0, len(queries), args.batch):
        chunk = queries[i: i + args.batch]
        logits = tail_logits(model, data, [q[0] for q in chunk], [q[1] for q in chunk])
        for row, (h, r, target, known) in zip(logits, chunk):
            mask = torch.ones_like(row, dtype=torch.bool)
            mask[list(known)] = False
            # ULTRA's compute_ranking counts ties against the answer; hypograph's realistic
            # rank (PyKEEN's) puts the answer in the middle of its ties. Both are kept: on
            # small graphs with symmetric neighbourhoods exact ties are common.
            worst = int(((row >= row[target]) & mask).sum()) + 1
            best = int(((row > row[target]) & mask).sum()) + 1
            pessimistic.append(worst)
            ranks.append((worst + best) / 2)
    seconds = time.time() - start
    ranks_t = torch.tensor(ranks, dtype=torch.float)
    pess_t = torch.tensor(pessimistic, dtype=torch.float)
    result = {
        "graph": args.graph, "test": args.test, "queries": len(ranks),
        "mrr": float((1 / ranks_t).mean()),
        "mrr_pessimistic": float((1 / pess_t).mean()),
        "hits@10_pessimistic": float((pess_t <= 10).float().mean()),
        "hits@1": float((ranks_t <= 1).float().mean()),
        "hits@3": float((ranks_t <= 3).float().mean()),
        "hits@10": float((ranks_t <= 10).float().mean()),
        "seconds": seconds,
    }
    json.dump(result, open(args.out, "w"), indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
