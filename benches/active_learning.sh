#!/usr/bin/env bash
# Active learning on UMLS (issue 14): the walk transformer and ComplEx as the model of the same
# simulation (half of the training triples hidden as the oracle's truth, 10 rounds x 50,
# 3 seeds, greedy and ucb, 3-member ensembles), one after the other in one run.
#   benches/active_learning.sh [BIN]      (default: target/release/hypograph)
# Epochs differ by model (each its usual budget): ComplEx dim 64 40 + 5 per round (the
# simulate defaults); the walk model 20 + 2 per round (its epochs cost ~50x ComplEx's).
set -euo pipefail
bin=${1:-target/release/hypograph}
out=${OUT:-target/active-learning}
common=(data/umls/train.txt --test data/umls/test.txt --valid data/umls/valid.txt
        --hide 0.5 --rounds 10 --batch 50 --seeds 3 --ensemble 3 --strategies greedy,ucb)
run() {
    local name=$1; shift
    local start=$SECONDS
    "$bin" simulate "${common[@]}" --out "$out/$name" "$@" > "$out/$name.txt"
    echo "## $name ($((SECONDS - start)) s)"
    cat "$out/$name.txt"
}
mkdir -p "$out"
run walks --model walks --epochs "${WALK_EPOCHS:-20}" --retrain-epochs "${WALK_RETRAIN:-2}"
run complex --model complex --dim 64 --epochs 40 --retrain-epochs 5
