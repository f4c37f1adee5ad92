#!/usr/bin/env bash
# The sweep behind `--recipe budget` (issue 22, docs/budget.md): stories260K trained for the
# same wall time under several recipes on the shared TinyStories sample (train: the four
# non-validation files; validation: the first 1000 v1 valid stories, windows of 256, the whole
# text), each evaluated with `fable eval` on the whole validation shard.
# usage: bench/budget_sweep.sh [MINUTES [NAME...]]   (default 20, every variant)
#   MINUTES short (e.g. 5) screens the variants; 20 is the issue's target. Needs a quiet machine:
#   the budget is wall time. Prints one table row per variant and leaves runs in $OUT (default
#   /tmp/fable_budget).
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-20}; shift || true
OUT=${OUT:-/tmp/fable_budget}
D=${FABLE_DATA:-../shared/data}
[ -x ./fable ] || make -j"$(nproc)" fable
mkdir -p "$OUT"
if [ ! -f "$OUT/train.bin" ]; then
  ./fable tokenize --quiet --tokenizer "$D/stories260K/tok512.model" --out "$OUT" \
    "$D"/tinystories/tinystories_subset3000.json "$D"/tinystories/tinystories_v1_train_first1000.json \
    "$D"/tinystories/tinystories_v2_sample_cs336.txt "$D"/tinystories/tinystories_v2_train_first10000lines.txt \
    --val-input "$D"/tinystories/tinystories_v1_valid_first1000.txt
fi
declare -A V=(   # each variant spelled out in full on top of the recipe (8x256, lr 3e-3 from session 18, wd 0.1)
  [base]=""                                   # the recipe as it is
  [dp2]="--batch 4 --threads 1"                # the recipe data-parallel: 2 processes x 1 thread x 4 (launcher below)
  [dp2lr3e-3]="--batch 4 --threads 1 --lr 3e-3"   # session 18, before lr 3e-3 became the recipe's
  [dp2lr2e-3]="--batch 4 --threads 1 --lr 2e-3"
  [dp2lr4e-3]="--batch 4 --threads 1 --lr 4e-3"
  [b8lr3e-3]="--lr 3e-3"
  [b8lr1.4e-3]="--lr 1.4e-3"
  [b4]="--batch 4"
  [b4lr1.4e-3]="--batch 4 --lr 1.4e-3"
  [b8floor0]="--min-lr 0"
  [b8lin0]="--schedule linear --min-lr 0"      # linear decay to zero (Bergsma et al. 2025)
  [b8lin0lr3e-3]="--schedule linear --min-lr 0 --lr 3e-3"
  [b8drop0.1]="--dropout 0.1"
  # session 10-11's variants, on the recipe of the time (32x256, wd 0.01)
  [b32wd0.01]="--batch 32 --weight-decay 0.01"
  [lr1e-3]="--batch 32 --weight-decay 0.01 --lr 1e-3"
  [lr4e-3]="--batch 32 --weight-decay 0.01 --lr 4e-3"
  [b16]="--batch 16 --weight-decay 0.01"
  [b64lr3e-3]="--batch 64 --weight-decay 0.01 --lr 3e-3"
  [wd0.1]="--batch 32"
  [wd0.1drop0.1]="--batch 32 --dropout 0.1"
  [wd0.1drop0.2]="--batch 32 --dropout 0.2"
  [drop0.1]="--batch 32 --weight-decay 0.01 --dropout 0.1"
  [wd0.1b16]="--batch 16"
  [wd0.1lr3e-3]="--batch 32 --lr 3e-3"
  [wd0.1lr1.4e-3]="--batch 32 --lr 1.4e-3"
  [wd0.1floor0]="--batch 32 --min-lr 0"
  [wd0.1b8]=""
  [wd0.1b16lr3e-3]="--batch 16 --lr 3e-3"
  [wd0.1b16lr1.4e-3]="--batch 16 --lr 1.4e-3"
  [floor0]="--batch 32 --weight-decay 0.01 --min-lr 0"
  [warm500]="--batch 32 --weight-decay 0.01 --warmup 500"
)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # Open MPI refuses root without them
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(base b8lr3e-3 b8lr1.4e-3 b4 b8floor0)
printf "| variant | flags | updates | train loss (last 100) | val loss (whole) | minutes |\n|---|---|---|---|---|---|\n"
for n in "${names[@]}"; do
  R="$OUT/$n-${MIN}m"; rm -rf "$R" "$R.jsonl"
  LAUNCH=(); case $n in dp2*) LAUNCH=(mpirun -np 2 --bind-to core) ;; esac   # dp2*: 2 processes, one update
  "${LAUNCH[@]}" ./fable train --preset stories260K --recipe budget ${V[$n]} --train "$OUT/train.bin" --val "$OUT/val.bin" \
    --time-limit $((MIN * 60)) --eval-every 500 --eval-batches 8 --ckpt-every 1000 --out "$R" \
    --log "$R.jsonl" --quiet >/dev/null
  C=$(ls "$R"/ckpt_*.bin | tail -1)
  val=$(./fable eval --ckpt "$C" --data "$OUT/val.bin" --batch 8 --seq 256 --json | sed 's/.*"loss":\([^,]*\),.*/\1/')
  /usr/bin/python3 - "$R.jsonl" "$n" "${V[$n]:-(recipe)}" "$val" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
b = [r for r in recs if r["type"] == "batch"]
end = [r for r in recs if r["type"] == "end"][-1]
tl = sum(r["loss"] for r in b[-100:]) / len(b[-100:])
print(f"| {sys.argv[2]} | `{sys.argv[3]}` | {end['step']} | {tl:.4f} | {float(sys.argv[4]):.4f} | {end['seconds']/60:.1f} |")
PY
done
