#!/usr/bin/env bash
# Loss-for-loss parity of `fable train --init MODEL.bin --sampler sequential` with PyTorch
# running the same recipe (tests/ref/train_ref.py), against the committed expectations in
# tests/fixtures/train/*.json: every micro-step's loss ("type":"step" records, field loss),
# every update's grad_norm and lr ("type":"batch" records), relative tolerance 1e-4
# (FABLE_TRAIN_PARITY_TOL). No torch needed here:
# - the init model is rebuilt from the fixture's shape and seed by train_ref.py --make-init
#   (stdlib-only generator, byte-identical everywhere) and its sha256 checked;
# - the token shard is made from the real text with the real tok512 tokenizer, by the command
#   stored in the fixture, and its sha256 checked before anything is compared.
# Regenerate the fixtures: /usr/bin/python3 tests/ref/train_ref.py --regen (docs/testing.md).
set -u
cd "$(dirname "$0")/../.." || exit 1
[ -x ./fable ] || { echo "no ./fable binary (run make)"; exit 1; }
PY=${FABLE_PYTHON:-}
if [ -z "$PY" ]; then
  for p in /usr/bin/python3 python3; do command -v "$p" >/dev/null 2>&1 && { PY=$p; break; }; done
fi
[ -n "$PY" ] || { echo "skip: no python3 (the fixture tools need Python's standard library)"; exit 77; }
DATA=${FABLE_DATA:-../shared/data}
TOL=${FABLE_TRAIN_PARITY_TOL:-1e-4}
REF=tests/ref/train_ref.py
W=$(mktemp -d /tmp/fable_train_parity.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
get() { "$PY" "$REF" --get "$1" "$2" || fail "cannot read $2 from $1"; }

fixtures=$(ls tests/fixtures/train/*.json 2>/dev/null)
[ -n "$fixtures" ] || fail "no fixtures in tests/fixtures/train"
rc=0
for fx in $fixtures; do
  name=$(basename "$fx" .json)
  # the shard, made exactly as the fixture's was
  src=$(get "$fx" shard.source); tok=$(get "$fx" shard.tokenizer)
  src=${src//\$FABLE_DATA/$DATA}; tok=${tok//\$FABLE_DATA/$DATA}
  [ -f "$src" ] && [ -f "$tok" ] || fail "$name: data not found ($src, $tok): set FABLE_DATA"
  ./fable tokenize --quiet --tokenizer "$tok" --train-out "$W/$name.shard" "$src" >/dev/null ||
    fail "$name: fable tokenize $src"
  want=$(get "$fx" shard.sha256); have=$(sha "$W/$name.shard")
  [ "$want" = "$have" ] || fail "$name: the shard from '$(get "$fx" shard.command)' has sha256 $have, but
  the fixture was computed on a shard with sha256 $want: fable tokenize's output (or the data or the
  tokenizer) changed, so the expected losses no longer apply. If the change is intended, regenerate
  the fixtures with: /usr/bin/python3 tests/ref/train_ref.py --regen"
  # the init model, rebuilt from its seed (checks the sha256 itself)
  "$PY" "$REF" --make-init "$W/$name.bin" --like "$fx" --quiet || fail "$name: init model"
  args=$(get "$fx" fable_args)
  # shellcheck disable=SC2086  # $args is a list of flags
  ./fable train --init "$W/$name.bin" --train "$W/$name.shard" $args --eval-every 0 --quiet \
    --log "$W/$name.jsonl" --threads 1 --out "$W/$name.out" >"$W/$name.stdout" 2>&1 ||
    { tail -5 "$W/$name.stdout"; fail "$name: fable train $args"; }
  "$PY" "$REF" --compare "$W/$name.jsonl" --expect "$fx" --tol "$TOL" || rc=1
done
[ $rc -eq 0 ] || fail "fable train differs from PyTorch beyond $TOL relative"
echo ok
