#!/usr/bin/env bash
# Bad situations in training give clear errors, never a crash or silent garbage.
source tests/cli/lib_train.sh
run() { "$@" >"$W/out" 2>&1; }
expect_fail() { # message-regex, command...
  local re=$1; shift
  if run "$@"; then fail "succeeded: $*"; fi
  grep -Eq "$re" "$W/out" || { cat "$W/out"; fail "message does not match /$re/: $*"; }
  grep -q "Segmentation\|Aborted\|runtime error" "$W/out" && fail "crashed: $*"
  return 0
}
base="$TINY --train $W/train.bin --batch 2 --seq 32 --accum 1 --eval-every 0 --quiet"
# NaN/Inf loss: an absurd learning rate blows the weights up; the error names update and phase
./fable train $base --steps 2 --out "$W/ok" >/dev/null || fail "first run"
expect_fail "(NaN|infinite).*update [0-9]+.*phase" ./fable train $base --steps 20 --lr 1e30 --out "$W/nan" --ckpt-every 1
ls "$W/nan"/ckpt_*.bin >/dev/null 2>&1 && { ./fable eval --ckpt "$(ls "$W/nan"/ckpt_*.bin | tail -1)" --data "$W/val.bin" --batches 1 >/dev/null || true; }
# activations that do not fit the machine's memory: a clear error before allocating
expect_fail "needs .* GB of activations, but only .* GB of memory is available" env FABLE_MEM_AVAILABLE_MB=1 ./fable train $TINY --train "$W/train.bin" --batch 512 --seq 64 --steps 1 --out "$W/mem" --quiet
# weights + gradients + Adam moments that do not fit: named before allocating (35K params: 0.56 MB)
expect_fail "parameters need .* GB for weights, gradients and Adam moments, but only .* GB" env FABLE_MEM_AVAILABLE_MB=0.1 ./fable train $base --steps 1 --out "$W/mem2"
# unwritable checkpoint directory: caught before any training
expect_fail "not a directory|not writable|cannot create" ./fable train $base --steps 2 --out /etc/passwd/ckpts
# shard smaller than one window
head -c 80 "$W/train.bin" >"$W/small.bin"
python3 -c "import sys" 2>/dev/null
expect_fail "small|too short|truncated|tokens" ./fable train $TINY --train "$W/small.bin" --batch 1 --seq 64 --steps 1 --out "$W/s" --quiet
# a token file with ids beyond the model's vocabulary
expect_fail "vocab" ./fable train --dim 32 --hidden-dim 64 --n-layers 2 --n-heads 4 --vocab 256 --seq-len 64 --train "$W/train.bin" --steps 1 --out "$W/v" --quiet
# resume with a different model: the error names the field
./fable train $base --steps 2 --out "$W/r" >/dev/null || fail "run for resume"
expect_fail "dim" ./fable train --resume "$W/r" --train "$W/train.bin" --dim 64 --quiet
# resume on different data: says so
expect_fail "does not match the data" ./fable train --resume "$W/r" --train "$W/val.bin" --quiet
# corrupt and truncated checkpoints
cp "$W/r/ckpt_00000002.bin" "$W/corrupt.bin"; printf 'XXXX' | dd of="$W/corrupt.bin" bs=1 seek=3000 conv=notrunc 2>/dev/null
expect_fail "checksum" ./fable eval --ckpt "$W/corrupt.bin" --data "$W/val.bin"
head -c 5000 "$W/r/ckpt_00000002.bin" >"$W/trunc.bin"
expect_fail "truncated" ./fable eval --ckpt "$W/trunc.bin" --data "$W/val.bin"
# disk full while checkpointing: the previous checkpoint stays intact and loadable
mkdir -p "$W/full"
if mount -t tmpfs -o size=700k tmpfs "$W/full" 2>/dev/null; then
  trap 'umount "$W/full" 2>/dev/null; rm -rf "$W"' EXIT
  expect_fail "disk (is )?full|not enough disk space" ./fable train $base --steps 6 --ckpt-every 1 --keep 5 --out "$W/full"
  last=$(ls "$W/full"/ckpt_*.bin | tail -1)
  [ -n "$last" ] || fail "no checkpoint survived the full disk"
  ./fable eval --ckpt "$last" --data "$W/val.bin" --batches 1 >/dev/null || fail "checkpoint before the full disk is not loadable"
  # too little space for even one checkpoint: refused before training
  umount "$W/full"; mount -t tmpfs -o size=8k tmpfs "$W/full"
  expect_fail "not enough disk space" ./fable train $base --steps 2 --out "$W/full"
  umount "$W/full"
else
  echo "note: cannot mount a tmpfs here; disk-full part skipped"
fi
echo ok
