# Shared setup for the training CLI tests (sourced, not run by tests/run.sh).
# Makes token shards from the real TinyStories sample with the real tok512 tokenizer.
set -u
DATA=${FABLE_DATA:-../shared/data}
TOK=$DATA/stories260K/tok512.model
W=$(mktemp -d /tmp/fable_test.XXXXXX)
trap '[ -n "${KEEP_W:-}" ] || rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
./fable tokenize --quiet --tokenizer "$TOK" --train-out "$W/train.bin" --val-out "$W/val.bin" \
  "$DATA/tinystories/tinystories_v2_train_first10000lines.txt" \
  --val-input "$DATA/tinystories/tinystories_v2_sample_cs336.txt" >/dev/null || fail "tokenize"
# A tiny GQA model so that every test runs in seconds.
TINY="--dim 32 --hidden-dim 64 --n-layers 2 --n-heads 4 --n-kv-heads 2 --vocab 512 --seq-len 64"
# Loss of every micro-step in a JSON-lines log, full precision, one per line.
losses() { grep '"type":"step"' "$1" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
# The parameters of a checkpoint as a llama2.c file (bytes comparable across runs).
weights() { ./fable export --ckpt "$1" --out "$2" >/dev/null || fail "export $1"; }
