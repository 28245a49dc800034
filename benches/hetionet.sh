#!/usr/bin/env bash
# The real-data benchmark: every model kind on the shared Hetionet v1.0 split, beside the
# popularity baseline on the same filtered protocol, with training time; then new compounds
# asked about with k = 0, 1, 3, 10 claims (benches/hetionet_compounds.py); then CtD discovery
# (random, popularity, greedy, ucb). Reads ../shared (never copies it into the project).
#
#   benches/hetionet.sh [OUT]            # default OUT: target/hetionet-bench
#   KINDS="complex distmult" benches/hetionet.sh
#   PARTS="standard ctd" benches/hetionet.sh
#
# Environment: HYPOGRAPH (the binary; default: builds and uses target/release/hypograph),
# SHARED (default ../shared beside the repository), KINDS (default: complex distmult rotate),
# PARTS (default: standard compounds ctd), COMPOUNDS_KIND (the new-compound part's model,
# default complex), EPOCHS (default 30), WALK_EPOCHS (the walk model's,
# default 6), CTD_EPOCHS (EPOCHS), CTD_ROUNDS (8), CTD_BATCH (25),
# CTD_STRATEGIES (random,popularity,greedy,ucb).
# Prints one line per model (MRR, H@10, popularity's, ratio, seconds) and leaves each
# run's JSON under OUT for BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/hetionet-bench}"
shared="${SHARED:-$root/../shared}"
kinds="${KINDS:-complex distmult rotate}"
parts="${PARTS:-standard compounds ctd}"
epochs="${EPOCHS:-30}"
if [ -z "${HYPOGRAPH:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    HYPOGRAPH="$root/target/release/hypograph"
fi
mkdir -p "$out"
split="$out/split"
if [ ! -f "$split/standard/train.tsv" ]; then
    python3 "$shared/tools/hetionet_split.py" "$split"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); binary: $HYPOGRAPH"

# The configuration each kind is measured in (chosen on validation; BENCHMARKS.md says how).
args_for() {
    case "$1" in
        complex) echo "--regime negatives --loss cross-entropy --negatives 256 --batch-size 4096 --lr 0.05" ;;
        distmult) echo "--regime negatives --loss cross-entropy --negatives 256 --batch-size 4096 --lr 0.05" ;;
        rotate) echo "--regime negatives --loss adversarial --negatives 256 --batch-size 4096 --optimizer adam --lr 0.001" ;;
        # At Hetionet's size: a budget of queries per epoch, a sampled softmax over each
        # relation's range with sparse entity updates (BENCHMARKS.md, "The walk transformer on
        # the real Hetionet").
        walks) echo "--batch-size 512 --sampled-negatives 64 --context-walks 2 --layers 1 --lr 0.01 --entity-lr 0.02 --queries-per-epoch 200000" ;;
        *) echo "unknown kind $1" >&2; exit 2 ;;
    esac
}

if [[ " $parts " == *" standard "* ]]; then
    base="$out/standard.db"
    if [ ! -f "$base" ]; then
        "$HYPOGRAPH" --db "$base" import "$split/standard/train.tsv" --no-header --delimiter tab \
            --map subject=1,predicate=2,object=3,category_from_key=::
    fi
    for kind in $kinds; do
        dir="$out/standard-$kind"
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$base" "$dir/db"
        start=$(date +%s.%N)
        kind_epochs=$epochs every=10
        if [ "$kind" = walks ]; then kind_epochs=${WALK_EPOCHS:-6} every=1; fi
        # shellcheck disable=SC2046
        "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" train --cold --model "$kind" \
            $(args_for "$kind") --epochs "$kind_epochs" --eval-every "$every" --patience 2 \
            --valid "$split/standard/valid.tsv" --json >"$dir/train.json" 2>"$dir/train.log"
        seconds=$(echo "$(date +%s.%N) - $start" | bc)
        "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" eval --by-relation --json \
            --test "$split/standard/test.tsv" >"$dir/eval.json" 2>>"$dir/train.log"
        "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" eval --by-relation \
            --test "$split/standard/test.tsv" >"$dir/eval.txt" 2>>"$dir/train.log"
        python3 - "$dir/eval.json" "$kind" "$seconds" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))
m, p = e["metrics"]["both"], e["popularity"]["both"]
below = e["below_popularity"]
print(f"{sys.argv[2]:<9} MRR {m['mrr']:.4f} H@10 {m['hits_at_10']:.4f} | popularity MRR {p['mrr']:.4f} "
      f"H@10 {p['hits_at_10']:.4f} | {m['mrr'] / p['mrr']:.2f}x | train+fit {float(sys.argv[3]):.0f} s"
      + (f" | below popularity on {', '.join(below)}" if below else ""))
EOF
    done
fi

if [[ " $parts " == *" compounds "* ]]; then
    # New compounds: a model (ComplEx unless COMPOUNDS_KIND says) trained on the graph without
    # them, asked through the server.
    ckind="${COMPOUNDS_KIND:-complex}"
    dir="$out/compounds"
    if [ "$ckind" != complex ]; then dir="$out/compounds-$ckind"; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    # 1% of the graph held out for early stopping and the popularity blend, as in the standard
    # split; the questions (the removed compounds' edges) are never in it.
    python3 "$root/benches/hetionet_holdout.py" "$split/compounds/kgx" "$dir/kgx" "$dir/valid.tsv"
    "$HYPOGRAPH" --db "$dir/db" import "$dir/kgx" >/dev/null
    start=$(date +%s.%N)
    kind_epochs=$epochs every=10
    if [ "$ckind" = walks ]; then kind_epochs=${WALK_EPOCHS:-6} every=1; fi
    # shellcheck disable=SC2046
    "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" train --cold --model "$ckind" \
        $(args_for "$ckind") --epochs "$kind_epochs" --eval-every "$every" --patience 2 \
        --valid "$dir/valid.tsv" --json >"$dir/train.json" 2>"$dir/train.log"
    echo "compounds: $ckind trained in $(echo "$(date +%s.%N) - $start" | bc | cut -d. -f1) s"
    python3 "$root/benches/hetionet_compounds.py" "$HYPOGRAPH" "$dir/db" "$split" \
        --data-dir "$dir/data" --json "$dir/compounds.json"
fi

if [[ " $parts " == *" ctd "* ]]; then
    dir="$out/ctd"
    mkdir -p "$dir"
    # The transductive ComplEx configuration (loss, learning rate) when that part has run.
    config=$(ls "$out"/standard-complex/data/models/*/member-0/config.json 2>/dev/null | tail -1 || true)
    "$HYPOGRAPH" simulate "$split/ctd/kgx" --hidden "$split/ctd/truth.tsv" \
        --valid "$split/ctd/valid.tsv" --test "$split/ctd/test.tsv" --relations CtD \
        --strategies "${CTD_STRATEGIES:-random,popularity,greedy,ucb}" \
        --rounds "${CTD_ROUNDS:-8}" --batch "${CTD_BATCH:-25}" --seeds 1 --ensemble 1 \
        ${config:+--config "$config"} \
        --regime negatives --negatives 256 --batch-size 4096 --dim 128 --epochs "${CTD_EPOCHS:-$epochs}" \
        --retrain-epochs 2 --out "$dir" >"$dir/log.txt" 2>&1
    cat "$dir/summary.md"
fi
