#!/usr/bin/env bash
# Loss-for-loss parity of `fable train --init M.bin --sampler sequential` with PyTorch
# (tests/ref/train_ref.py) on a model shape, seed and recipe that are NOT in the repository:
# makes a random llama2.c init model, tokenizes real text into a shard, trains both, and
# compares every micro-step loss and every update's grad norm and lr (relative tolerance).
#
#   tests/ref/check_train_parity.sh [options]
#   e.g. tests/ref/check_train_parity.sh --dim 64 --hidden 172 --layers 5 --heads 8 --kv-heads 4 \
#            --seq-len 256 --seed 11 --batch 2 --seq 128 --accum 3 --steps 12
#        tests/ref/check_train_parity.sh --untied --recipe ane --optimizer adam --lr 1e-3 --accum 4
#
# Model (train_ref.py --make-init; vocab comes from the tokenizer):
#   --dim 48 --hidden 128 --layers 3 --heads 6 --kv-heads 2 --seq-len 128 [--untied]
#   --seed S (default: random, printed) --init-std 0.02 --norm-noise 0
# Recipe (given as is to both fable train and train_ref.py, which mirrors fable's recipe
# defaults): --recipe --batch --seq --accum --steps --lr --min-lr --warmup --schedule
#   --optimizer --beta1 --beta2 --eps --weight-decay --grad-clip.
#   Defaults here: --batch 4 --seq 64 --accum 2 --steps 10, and when --recipe is not given
#   --recipe llama2c --warmup 2 --lr 3e-3 (the rest from the recipe).
# Data: --text FILE (default $FABLE_DATA/tinystories/tinystories_v1_valid_first1000.txt)
#   --tokenizer MODEL (default $FABLE_DATA/stories260K/tok512.model); --threads N for fable (1).
# Environment: FABLE_PYTHON (default /usr/bin/python3, which has torch), FABLE_DATA (default
#   ../shared/data), FABLE_TRAIN_PARITY_TOL (default 1e-4), KEEP=1 keeps the work directory.
# Exit status: 0 when every value is within the tolerance.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${FABLE_PYTHON:-/usr/bin/python3}
DATA=${FABLE_DATA:-../shared/data}
tol=${FABLE_TRAIN_PARITY_TOL:-1e-4}
text=$DATA/tinystories/tinystories_v1_valid_first1000.txt
tok=$DATA/stories260K/tok512.model
threads=1
declare -A init=([--dim]=48 [--hidden]=128 [--layers]=3 [--heads]=6 [--kv-heads]=2 [--seq-len]=128
                 [--seed]=$(( (RANDOM << 15 | RANDOM) % 1000000 )) [--init-std]=0.02 [--norm-noise]=0)
declare -A rec=([--batch]=4 [--seq]=64 [--accum]=2 [--steps]=10)
untied=()
recipe_given=0
while [ $# -gt 0 ]; do
  case $1 in
    --dim|--hidden|--layers|--heads|--kv-heads|--seq-len|--seed|--init-std|--norm-noise)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; init[$1]=$2; shift 2 ;;
    --untied) untied=(--untied); shift ;;
    --recipe|--batch|--seq|--accum|--steps|--lr|--min-lr|--warmup|--schedule|--optimizer|--beta1|--beta2|--eps|--weight-decay|--grad-clip)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      rec[$1]=$2; [ "$1" = --recipe ] && recipe_given=1; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --tokenizer) tok=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ $recipe_given = 0 ]; then
  rec[--recipe]=llama2c
  [ -n "${rec[--warmup]:-}" ] || rec[--warmup]=2
  [ -n "${rec[--lr]:-}" ] || rec[--lr]=3e-3
fi
"$py" -c "import torch, numpy" 2>/dev/null || { echo "$py lacks torch/numpy (set FABLE_PYTHON)" >&2; exit 2; }
[ -f "$text" ] && [ -f "$tok" ] || { echo "text $text or tokenizer $tok not found (set FABLE_DATA)" >&2; exit 2; }
make -s fable
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fable-train-parity.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi

./fable tokenize --quiet --tokenizer "$tok" --train-out "$tmp/shard.bin" "$text" >/dev/null
vocab=$(od -An -t u4 -j 12 -N 4 "$tmp/shard.bin" | tr -d ' ')
init_args=(--vocab "$vocab" "${untied[@]}")
for k in "${!init[@]}"; do init_args+=("$k" "${init[$k]}"); done
rec_args=()
for k in "${!rec[@]}"; do rec_args+=("$k" "${rec[$k]}"); done
echo "model: ${init_args[*]}"
echo "recipe: ${rec_args[*]} --sampler sequential; data: $text ($tok)"
"$py" tests/ref/train_ref.py --make-init "$tmp/init.bin" "${init_args[@]}"
"$py" tests/ref/train_ref.py --init "$tmp/init.bin" --train "$tmp/shard.bin" "${rec_args[@]}" \
  --out "$tmp/ref.json" --quiet
./fable train --init "$tmp/init.bin" --train "$tmp/shard.bin" "${rec_args[@]}" --sampler sequential \
  --eval-every 0 --quiet --log "$tmp/fable.jsonl" --threads "$threads" --out "$tmp/ckpt" >/dev/null
"$py" tests/ref/train_ref.py --compare "$tmp/fable.jsonl" --expect "$tmp/ref.json" --tol "$tol"
