#!/usr/bin/env python3
"""Train one configuration on UMLS with PyKEEN and print JSON: test MRR, Hits@10, train time.

Used by benches/vs_pykeen.sh; the settings come as a JSON object in argv[1]:
  {"regime": "negatives"|"one-vs-all", "dim", "epochs", "batch", "lr", "optimizer",
   "negatives", "loss", "label_smoothing", "regularizer": null|"n3", "reg_weight", "seed"}
"""
import json
import sys
import time

import torch
from pykeen.datasets import UMLS
from pykeen.pipeline import pipeline
from pykeen.regularizers import LpRegularizer

cfg = json.loads(sys.argv[1])
torch.set_num_threads(2)
one_vs_all = cfg["regime"] == "one-vs-all"
dataset = UMLS(create_inverse_triples=one_vs_all)
model_kwargs = {"embedding_dim": cfg["dim"]}
if cfg.get("regularizer") == "n3":
    model_kwargs["regularizer"] = LpRegularizer
    model_kwargs["regularizer_kwargs"] = {"p": 3.0, "weight": cfg["reg_weight"]}
else:
    model_kwargs["regularizer"] = None
training_kwargs = {"num_epochs": cfg["epochs"], "batch_size": cfg["batch"]}
kwargs = {}
if one_vs_all:
    kwargs["training_loop"] = "lcwa"
    kwargs["loss"] = "crossentropy"
    training_kwargs["label_smoothing"] = cfg.get("label_smoothing", 0.0)
else:
    kwargs["training_loop"] = "slcwa"
    kwargs["loss"] = cfg["loss"]
    kwargs["negative_sampler"] = "basic"
    kwargs["negative_sampler_kwargs"] = {"num_negs_per_pos": cfg["negatives"]}
started = time.perf_counter()
result = pipeline(
    dataset=dataset,
    model="complex",
    model_kwargs=model_kwargs,
    optimizer=cfg["optimizer"],
    optimizer_kwargs={"lr": cfg["lr"]},
    training_kwargs=training_kwargs,
    evaluator_kwargs={"filtered": True},
    random_seed=cfg["seed"],
    device="cpu",
    use_tqdm=False,
    **kwargs,
)
m = result.metric_results
print(json.dumps({
    "mrr": m.get_metric("both.realistic.inverse_harmonic_mean_rank"),
    "hits_at_10": m.get_metric("both.realistic.hits_at_10"),
    "train_seconds": result.train_seconds,
    "wall_seconds": time.perf_counter() - started,
}))
