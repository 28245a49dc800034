#!/usr/bin/env bash
# ULTRA zero-shot on GraIL's inductive graphs (issue 26): hypograph's Rust implementation
# through the real binary (import the inference graph, `train --model ultra --epochs 0`, `eval`
# on the inductive valid + test splits merged, as ULTRA's GraIL datasets do, filtered over all
# of them, every entity a candidate), beside the reference PyTorch
# run of the same checkpoint (benches/ultra_reference.py) when a virtual environment with
# torch and torch-geometric is given, and beside the ULTRA paper's figures.
#
#   benches/grail.sh [OUT]                    # default OUT: target/grail-bench
#   VENV=/path/to/venv benches/grail.sh       # also the reference run
#   GRAPHS="fb237_v1 WN18RR_v1" CHECKPOINT=../shared/models/ultra/ultra_3g.pth benches/grail.sh
#
# LIMIT=N evaluates a fixed random sample of N test triples (both implementations the same).
# Both sides rank realistically (an answer tied with others sits in the middle of its ties);
# the reference also reports ULTRA's own pessimistic rank (ties count against the answer).
# Environment: HYPOGRAPH (the binary; default: builds and uses target/release/hypograph),
# SHARED (default ../shared beside the repository), CHECKPOINT (default: the embedded
# ultra_4g weights for hypograph, the same file for the reference).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/grail-bench}"
shared="${SHARED:-$root/../shared}"
data="$shared/datasets/grail-inductive"
checkpoint="${CHECKPOINT:-$shared/models/ultra/ultra_4g.pth}"
graphs="${GRAPHS:-fb237_v1 fb237_v2 fb237_v3 fb237_v4 WN18RR_v1 WN18RR_v2 WN18RR_v3 WN18RR_v4 nell_v1 nell_v2 nell_v3 nell_v4}"
if [ -z "${HYPOGRAPH:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    HYPOGRAPH="$root/target/release/hypograph"
fi
mkdir -p "$out"
echo "machine: $(nproc) cores; binary: $HYPOGRAPH; checkpoint: $checkpoint"
printf '%-12s %8s %8s %8s %8s %8s %8s %7s %7s\n' graph MRR H@10 ref-MRR ref-H@10 "|dMRR|" "|dH@10|" secs ref-secs
for g in $graphs; do
    dir="$out/$g"
    rm -rf "$dir"
    mkdir -p "$dir"
    ind="$data/${g}_ind"
    # ULTRA's GraIL protocol: the inductive valid and test splits merged as the test set.
    cat "$ind/valid.txt" "$ind/test.txt" >"$dir/test.txt"
    if [ -n "${LIMIT:-}" ]; then
        # A fixed random sample of LIMIT test triples, the same for both implementations.
        python3 -c 'import random, sys; p, k = sys.argv[1], int(sys.argv[2]); l = open(p).readlines(); keep = sorted(random.Random(0).sample(range(len(l)), min(k, len(l)))); open(p, "w").writelines(l[i] for i in keep)' "$dir/test.txt" "$LIMIT"
    fi
    "$HYPOGRAPH" --db "$dir/db" import "$ind/train.txt" --no-header --delimiter tab \
        --map subject=1,predicate=2,object=3 >/dev/null
    start=$(date +%s.%N)
    "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" train --model ultra --epochs 0 \
        --weights "$checkpoint" --popularity-prior false >"$dir/train.txt" 2>"$dir/train.log"
    "$HYPOGRAPH" --db "$dir/db" --data-dir "$dir/data" eval --json --no-calibration --test "$dir/test.txt" \
        >"$dir/eval.json" 2>>"$dir/train.log"
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    ref="{}"
    if [ -n "${VENV:-}" ]; then
        "$VENV/bin/python" "$root/benches/ultra_reference.py" eval --checkpoint "$checkpoint" \
            --graph "$ind/train.txt" --test "$dir/test.txt" \
            --out "$dir/reference.json" >/dev/null 2>"$dir/reference.log"
        ref="$dir/reference.json"
    fi
    python3 - "$dir/eval.json" "$ref" "$g" "$secs" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))["metrics"]["both"]
r = json.load(open(sys.argv[2])) if sys.argv[2] != "{}" else {}
rm, rh = r.get("mrr"), r.get("hits@10")
f = lambda x: f"{x:.4f}" if x is not None else "-"
print(f"{sys.argv[3]:<12} {e['mrr']:.4f}   {e['hits_at_10']:.4f}   {f(rm):>8} {f(rh):>8} "
      f"{f(abs(e['mrr'] - rm) if rm is not None else None):>8} {f(abs(e['hits_at_10'] - rh) if rh is not None else None):>8} "
      f"{float(sys.argv[4]):7.1f} {r.get('seconds', 0):7.1f}")
EOF
done
