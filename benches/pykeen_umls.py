#!/usr/bin/env python3
"""Train one configuration on UMLS with PyKEEN and print JSON: test MRR, Hits@10, train time,
and the training time at which it first reached its best test MRR.

Used by benches/vs_pykeen.sh; the settings come as a JSON object in argv[1]:
  {"model": "complex"|"rotate", "regime": "negatives"|"one-vs-all", "dim", "epochs", "batch",
   "lr", "optimizer", "negatives", "loss": "softplus"|"crossentropy"|"nssa", "margin",
   "adversarial_temperature", "label_smoothing", "regularizer": null|"n3", "reg_weight",
   "seed", "eval_every", "init": null|initializer name for entities and relations}

Every `eval_every` epochs (and after the last) a callback ranks the test split (filtered by
train + valid + test, realistic rank, both sides: what the pipeline's final evaluation does)
with the training clock stopped: `curve` holds (epoch, training seconds, test MRR), and
`seconds_to_best` is the training time at the first evaluation that reached the best MRR.
"""
import json
import sys
import time

import torch
from pykeen.datasets import UMLS
from pykeen.evaluation import RankBasedEvaluator
from pykeen.pipeline import pipeline
from pykeen.regularizers import LpRegularizer
from pykeen.training.callbacks import TrainingCallback

cfg = json.loads(sys.argv[1])
torch.set_num_threads(2)
one_vs_all = cfg["regime"] == "one-vs-all"
dataset = UMLS(create_inverse_triples=one_vs_all)
model_name = cfg.get("model", "complex")
model_kwargs = {"embedding_dim": cfg["dim"]}
if cfg.get("regularizer") == "n3":
    model_kwargs["regularizer"] = LpRegularizer
    model_kwargs["regularizer_kwargs"] = {"p": 3.0, "weight": cfg["reg_weight"]}
else:
    model_kwargs["regularizer"] = None
if cfg.get("init"):  # e.g. "xavier_normal_" in place of the model's default initializer
    model_kwargs["entity_initializer"] = cfg["init"]
    model_kwargs["relation_initializer"] = cfg["init"]
training_kwargs = {"num_epochs": cfg["epochs"], "batch_size": cfg["batch"]}
kwargs = {}
if one_vs_all:
    kwargs["training_loop"] = "lcwa"
    kwargs["loss"] = "crossentropy"
    training_kwargs["label_smoothing"] = cfg.get("label_smoothing", 0.0)
else:
    kwargs["training_loop"] = "slcwa"
    kwargs["loss"] = cfg["loss"]
    if cfg["loss"] == "nssa":
        kwargs["loss_kwargs"] = {
            "margin": cfg.get("margin", 6.0),
            "adversarial_temperature": cfg.get("adversarial_temperature", 1.0),
        }
    kwargs["negative_sampler"] = "basic"
    kwargs["negative_sampler_kwargs"] = {"num_negs_per_pos": cfg["negatives"]}


class TimedTestMRR(TrainingCallback):
    """Test MRR every `every` epochs; the time it takes is kept off the training clock."""

    def __init__(self, every: int, last: int):
        super().__init__()
        self.every, self.last = every, last
        self.started = None
        self.eval_seconds = 0.0
        self.curve = []
        self.evaluator = RankBasedEvaluator(filtered=True)

    def pre_batch(self, **kwargs) -> None:
        if self.started is None:  # the clock starts with the first batch
            self.started = time.perf_counter()

    def post_epoch(self, epoch: int, epoch_loss: float, **kwargs) -> None:
        if epoch % self.every and epoch != self.last:
            return
        now = time.perf_counter()
        train_s = now - self.started - self.eval_seconds
        result = self.evaluator.evaluate(
            self.model,
            mapped_triples=dataset.testing.mapped_triples,
            additional_filter_triples=[
                dataset.training.mapped_triples,
                dataset.validation.mapped_triples,
            ],
            batch_size=256,
            use_tqdm=False,
        )
        mrr = result.get_metric("both.realistic.inverse_harmonic_mean_rank")
        h10 = result.get_metric("both.realistic.hits_at_10")
        self.curve.append((epoch, train_s, mrr, h10))
        print(f"epoch {epoch} train {train_s:.1f}s test MRR {mrr:.4f}", file=sys.stderr, flush=True)
        self.eval_seconds += time.perf_counter() - now


timer = TimedTestMRR(cfg.get("eval_every", 10), cfg["epochs"])
training_kwargs["callbacks"] = [timer]
started = time.perf_counter()
result = pipeline(
    dataset=dataset,
    model=model_name,
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
best = max(timer.curve, key=lambda p: p[2])
print(json.dumps({
    "mrr": m.get_metric("both.realistic.inverse_harmonic_mean_rank"),
    "hits_at_10": m.get_metric("both.realistic.hits_at_10"),
    "train_seconds": result.train_seconds - timer.eval_seconds,
    "best_mrr": best[2],
    "best_epoch": best[0],
    "seconds_to_best": best[1],
    "curve": timer.curve,
    "wall_seconds": time.perf_counter() - started,
}))
