#!/usr/bin/env bash
# `fable sample` against llama2.c's run.c (issue 21 item 3): greedy tokens/s on 1 and 2
# threads, and whether the text is the same, on stories260K (the real model) and on
# stories15M- and stories110M-shaped models exported by fable.
# usage: bench/sample_vs_runc.sh RUNC [ROUNDS]
#   RUNC: a run.c binary you built, e.g. gcc -O3 -march=native -fopenmp run.c -o run -lm
#         (llama2.c is not part of fable). ROUNDS (default 3) alternate run.c and fable.
# The 15M/110M models: 2 updates of 1×64 on the shared TinyStories sample tokenized with the
# Llama-2 tokenizer, then `fable export` (cached in $FABLE_BENCH_DIR, default
# /tmp/fable_sample_bench). Speed does not depend on what the weights learned.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNC=${1:?usage: bench/sample_vs_runc.sh RUNC [ROUNDS]}; R=${2:-3}
DATA=${FABLE_DATA:-../shared/data}
W=${FABLE_BENCH_DIR:-/tmp/fable_sample_bench}; mkdir -p "$W"
[ -x ./fable ] || make -j"$(nproc)" fable
if [ ! -f "$W/l2.bin" ]; then
  ./fable tokenize --tokenizer "$DATA/tokenizer/tokenizer.model" --train-out "$W/l2.bin" \
    --val-out "$W/l2_val.bin" --val-fraction 0.1 "$DATA/tinystories/tinystories_v2_train_first10000lines.txt" >/dev/null
fi
for p in stories15M stories110M; do
  [ -f "$W/$p.bin" ] && continue
  rm -rf "$W/$p"
  ./fable train --preset "$p" --train "$W/l2.bin" --batch 1 --seq 64 --steps 2 --out "$W/$p" --quiet >/dev/null
  ./fable export --ckpt "$(ls "$W/$p"/ckpt_*.bin | tail -1)" --out "$W/$p.bin" --tokenizer "$DATA/tokenizer/tokenizer.model" \
    --tokenizer-out "$W/tok32000.bin" >/dev/null
done
models=("$DATA/stories260K/stories260K.bin:$DATA/stories260K/tok512.bin" "$W/stories15M.bin:$W/tok32000.bin"
        "$W/stories110M.bin:$W/tok32000.bin")
rate() { grep -o 'achieved tok/s: [0-9.]*' | grep -o '[0-9.]*$'; }
out=$(mktemp)
for ((r = 1; r <= R; r++)); do
  for m in "${models[@]}"; do
    model=${m%%:*}; tok=${m##*:}; name=$(basename "$model" .bin)
    for th in 1 2; do
      a=$(OMP_NUM_THREADS=$th "$RUNC" "$model" -z "$tok" -t 0 -n 256 2>"$W/runc.err" >"$W/runc.txt"; rate <"$W/runc.err")
      b=$(./fable sample --model "$model" --tokenizer "$tok" --temperature 0 --steps 256 --threads $th \
            2>"$W/fable.err" >"$W/fable.txt"; rate <"$W/fable.err")
      same=$(cmp -s "$W/runc.txt" "$W/fable.txt" && echo same || echo DIFFERENT)
      echo "$name $th $a $b $same" | tee -a "$out"
    done
  done
done
/usr/bin/python3 - "$out" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, th, a, b, same = line.split()
    d[(name, th)].append((float(a), float(b), same))
print("\nmodel         threads  run.c tok/s  fable tok/s  fable/run.c  text")
for (name, th), v in d.items():
    a = statistics.median(x[0] for x in v); b = statistics.median(x[1] for x in v)
    r = statistics.median(x[1] / x[0] for x in v)
    print(f"{name:13s} {th:>7s} {a:12.0f} {b:12.0f} {r:11.2f}x  {'same' if all(x[2] == 'same' for x in v) else 'DIFFERENT'}")
PY
rm -f "$out"
