#!/usr/bin/env bash
# Faults around a training run (issue 20): one run per folder (a lock that a killed run does
# not leave stuck), damaged checkpoints (truncated at every sixteenth of their length, single
# bit flips) refused by eval and sample with the file named, a file-size limit, a full disk, a
# read-only and a vanished output folder, an address-space limit, NaN weights and moments.
# Every case checks the message, that nothing crashed, and that the last good checkpoint
# stays loadable. Needs python3 for the damaged files (skipped without it); the tmpfs cases
# need root (skipped, with a note, where mounting is not permitted).
source tests/cli/lib_train.sh
MNT=()
trap 'for m in "${MNT[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$W"' EXIT
run() { "$@" >"$W/out" 2>&1; }
crashed() { grep -q "Segmentation\|Aborted\|runtime error\|AddressSanitizer\|core dumped" "$W/out"; }
expect_fail() { # message-regex, command...
  local re=$1; shift
  if run "$@"; then cat "$W/out"; fail "succeeded: $*"; fi
  crashed && { cat "$W/out"; fail "crashed: $*"; }
  grep -Eq "$re" "$W/out" || { cat "$W/out"; fail "message does not match /$re/: $*"; }
  return 0
}
loadable() { # checkpoint: evaluates to a finite loss
  ./fable eval --ckpt "$1" --data "$W/val.bin" --batches 1 --threads 1 >"$W/eval" 2>&1 || { cat "$W/eval"; fail "$1 is not loadable"; }
  grep -q '^loss [0-9]' "$W/eval" || fail "$1: no finite loss: $(cat "$W/eval")"
}
wait_for() { # glob, seconds: wait until a file matches
  local i; for i in $(seq 1 $(($2 * 20))); do compgen -G "$1" >/dev/null && return 0; sleep 0.05; done; return 1
}
try_mount() { # dir, options: a tmpfs there, when this process may mount
  mkdir -p "$1"; [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o "$2" tmpfs "$1" 2>/dev/null && MNT+=("$1")
}
base="$TINY --train $W/train.bin --batch 2 --seq 32 --accum 1 --eval-every 0 --quiet --threads 1"
have_py=0; command -v python3 >/dev/null && have_py=1

# ---- one run per folder ------------------------------------------------------------------
./fable train $base --steps 100000 --ckpt-every 5 --out "$W/lock" --log "$W/lock.jsonl" & pid=$!
wait_for "$W/lock/ckpt_*.bin" 30 || { kill -9 $pid; fail "first trainer wrote no checkpoint"; }
expect_fail "$W/lock is in use by another run \(process $pid holds $W/lock/.lock\)" \
  ./fable train $base --steps 3 --out "$W/lock" --log "$W/lock/second.jsonl"
[ -e "$W/lock/second.jsonl" ] && fail "the refused run opened its log in the locked folder"
expect_fail "in use by another run \(process $pid" ./fable train --resume "$W/lock" --train "$W/train.bin" --quiet
kill -0 $pid 2>/dev/null || fail "the first trainer died"
kill -9 $pid; wait $pid 2>/dev/null
# a killed run leaves no stuck lock: the folder resumes at once
last=$(ls "$W/lock"/ckpt_*.bin | tail -1); u=$(basename "$last" .bin); u=$((10#${u#ckpt_}))
run ./fable train --resume "$W/lock" --train "$W/train.bin" --steps $((u + 2)) --quiet --threads 1 ||
  { cat "$W/out"; fail "resume after kill -9: the lock was left stuck"; }
[ -f "$(printf '%s/lock/ckpt_%08d.bin' "$W" $((u + 2)))" ] || fail "resume after kill -9 wrote no checkpoint"
grep -Eq "^[0-9]+$" "$W/lock/.lock" || fail "the lock file holds no pid"

# ---- damaged checkpoints: every one refused, by eval and by sample, naming the file ---------
./fable train $base --steps 4 --ckpt-every 2 --keep 5 --out "$W/r" --log "$W/r.jsonl" || fail "training run"
ck="$W/r/ckpt_00000004.bin"; len=$(stat -c %s "$ck")
refused() { # file, why
  expect_fail "$1.*(truncated|corrupt|checksum|magic|header|version)" \
    ./fable eval --ckpt "$1" --data "$W/val.bin" --threads 1
  expect_fail "$1.*(truncated|corrupt|checksum|magic|header|version)" \
    ./fable sample --ckpt "$1" --tokenizer "$DATA/stories260K/tok512.bin" --steps 8 --threads 1
}
for k in $(seq 0 15); do head -c $((len * k / 16)) "$ck" >"$W/trunc_$k.bin"; refused "$W/trunc_$k.bin"; done
if [ $have_py -eq 1 ]; then
  # 24 single-bit flips: one in the magic, one in the checksum, 22 anywhere (fixed seed)
  python3 - "$ck" "$W" <<'EOF'
import random, sys
src, out = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
rng = random.Random(20)
bits = [3, len(data) * 8 - 5] + [rng.randrange(len(data) * 8) for _ in range(22)]
for i, bit in enumerate(bits):
    b = bytearray(data); b[bit // 8] ^= 1 << (bit % 8)
    open('%s/flip_%02d_bit%d.bin' % (out, i, bit), 'wb').write(b)
EOF
  n=0; for f in "$W"/flip_*.bin; do refused "$f"; n=$((n + 1)); done
  [ $n -eq 24 ] || fail "expected 24 bit-flipped files, made $n"
else
  echo "note: no python3: bit flips skipped"
fi
loadable "$ck"

# ---- a file-size limit while checkpointing (EFBIG) -----------------------------------------
./fable train $base --steps 2 --out "$W/fsz" --log /dev/null || fail "run before the file-size limit"
cp "$W/fsz/ckpt_00000002.bin" "$W/fsz_before.bin"
expect_fail "ckpt_00000003.bin not written: .*file too large.*last good checkpoint is $W/fsz/ckpt_00000002.bin" \
  bash -c "ulimit -f $((len / 2048)); exec ./fable train --resume '$W/fsz' --train '$W/train.bin' --steps 6 --ckpt-every 1 --keep 10 --quiet --threads 1"
cmp -s "$W/fsz/ckpt_00000002.bin" "$W/fsz_before.bin" || fail "the checkpoint before the limit changed"
ls "$W/fsz" | grep -q '\.tmp\.' && fail "a partial temp file was left: $(ls "$W/fsz")"
loadable "$W/fsz/ckpt_00000002.bin"
run ./fable train --resume "$W/fsz" --train "$W/train.bin" --steps 4 --quiet --threads 1 || { cat "$W/out"; fail "resume after EFBIG"; }
loadable "$W/fsz/ckpt_00000004.bin"

# ---- a full disk while checkpointing (a tmpfs with room for two checkpoints) ---------------
if try_mount "$W/full" "size=$(((2 * len + 65536) / 1024))k"; then
  expect_fail "ckpt_00000003.bin not written: .*disk full.*last good checkpoint is $W/full/ckpt_00000002.bin" \
    ./fable train $base --steps 6 --ckpt-every 1 --keep 10 --out "$W/full"
  ls "$W/full" | grep -q '\.tmp\.' && fail "a partial temp file was left on the full disk: $(ls "$W/full")"
  loadable "$W/full/ckpt_00000002.bin"
  rm "$W/full/ckpt_00000001.bin"   # make room: the run resumes where it stopped
  run ./fable train --resume "$W/full" --train "$W/train.bin" --steps 3 --keep 1 --quiet --threads 1 ||
    { cat "$W/out"; fail "resume after freeing space"; }
  loadable "$W/full/ckpt_00000003.bin"
else
  echo "note: cannot mount a tmpfs here: disk-full case skipped"
fi

# ---- a read-only output folder ----------------------------------------------------------
if try_mount "$W/ro" "size=2m,ro"; then
  expect_fail "$W/ro.*read-only file system" ./fable train $base --steps 2 --out "$W/ro"
  # a folder that turns read-only under a finished run: resume refuses, the checkpoint stays
  try_mount "$W/ro2" "size=2m" || fail "second tmpfs"
  ./fable train $base --steps 2 --out "$W/ro2" --log /dev/null || fail "run before read-only"
  mount -o remount,ro "$W/ro2" || fail "remount read-only"
  expect_fail "$W/ro2.*read-only file system" ./fable train --resume "$W/ro2" --train "$W/train.bin" --steps 4 --quiet
  loadable "$W/ro2/ckpt_00000002.bin"
elif [ "$(id -u)" -ne 0 ]; then
  mkdir -p "$W/ro"; chmod 555 "$W/ro"
  expect_fail "$W/ro.*(Permission denied|not writable)" ./fable train $base --steps 2 --out "$W/ro"
else
  echo "note: root without mount: read-only case skipped (root ignores chmod)"
fi

# ---- the output folder vanishes during the run -------------------------------------------
./fable train $base --steps 100000 --ckpt-every 1 --out "$W/gone" --log /dev/null >"$W/gone.out" 2>&1 & pid=$!
wait_for "$W/gone/ckpt_*.bin" 30 || { kill -9 $pid; fail "no checkpoint before the folder vanished"; }
for i in $(seq 1 50); do rm -rf "$W/gone" 2>/dev/null; [ -e "$W/gone" ] || break; done
for i in $(seq 1 200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
kill -0 $pid 2>/dev/null && { kill -9 $pid; fail "the trainer kept running without its folder"; }
wait $pid && fail "the trainer succeeded without its folder"
cp "$W/gone.out" "$W/out"; crashed && { cat "$W/out"; fail "crashed when its folder vanished"; }
grep -Eq "not written: .*(its folder $W/gone is gone|the file was deleted while fable wrote it)" "$W/out" || { cat "$W/out"; fail "vanished folder: unclear message"; }

# ---- an address-space limit (ulimit -v): a clear error, not a crash --------------------------
expect_fail "cannot allocate|out of memory" bash -c "ulimit -v 400000; OPENBLAS_NUM_THREADS=1 exec timeout 60 ./fable train \
  --dim 512 --hidden-dim 1376 --n-layers 8 --n-heads 8 --vocab 512 --seq-len 256 --train '$W/train.bin' --batch 2 --seq 64 \
  --steps 1 --threads 1 --quiet --out '$W/mem'"

# ---- NaN and Inf ------------------------------------------------------------------------
# a NaN weight in an --init model: refused at load, naming the file and the parameter
weights "$ck" "$W/init.bin"
if [ $have_py -eq 1 ]; then
  python3 -c "
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read()); struct.pack_into('<f', b, 28 + 4 * 1000, float('nan'))
open(sys.argv[2], 'wb').write(b)" "$W/init.bin" "$W/nan_init.bin"
  expect_fail "nan_init.bin.*parameter 1000 is not finite" ./fable train --init "$W/nan_init.bin" --train "$W/train.bin" --steps 2 --quiet --out "$W/ni"
fi
# weights that blow up (absurd lr): stopped with the update and phase named; the checkpoint it
# names as the last good one exists and is loadable, and none was written after it
expect_fail "(loss|gradient norm) became (NaN|infinite) at update [0-9]+.*\(phase: [a-z]+.*last good checkpoint is $W/blow/ckpt_" \
  ./fable train $base --steps 30 --lr 1e7 --ckpt-every 1 --keep 50 --out "$W/blow" --log /dev/null
good=$(grep -o 'last good checkpoint is [^ ]*\.bin' "$W/out" | head -1 | sed 's/.* //'); u=$(sed -n 's/.*at update \([0-9]*\)[ ,].*/\1/p' "$W/out")
[ -n "$good" ] && [ -n "$u" ] || fail "no last good checkpoint or update named"
loadable "$good"
# the checkpoint of update u-1 holds the weights that gave the NaN at update u: named, not "good"
bad=$(printf '%s/blow/ckpt_%08d.bin' "$W" $((u - 1)))
[ "$good" = "$(printf '%s/blow/ckpt_%08d.bin' "$W" $((u - 2)))" ] || fail "last good checkpoint $good is not update $((u - 2))"
grep -q "($bad holds the weights that led to it)" "$W/out" || fail "the checkpoint with the failing weights is not named"
[ "$(ls "$W/blow" | grep '^ckpt_' | tail -1)" = "$(basename "$bad")" ] || fail "a checkpoint was written after $bad"
# with --keep 1 the good checkpoint is not pruned before the next update has used it
expect_fail "last good checkpoint is $W/blow1/ckpt_" \
  ./fable train $base --steps 30 --lr 1e7 --ckpt-every 1 --keep 1 --out "$W/blow1" --log /dev/null
loadable "$(grep -o 'last good checkpoint is [^ ]*\.bin' "$W/out" | head -1 | sed 's/.* //')"
if [ $have_py -eq 1 ]; then
  # a NaN in an Adam moment (a checkpoint with a valid checksum): the update turns a weight to
  # NaN; the save refuses to write it, names the update and phase, the checkpoint stays intact
  python3 - "$ck" "$W/nanm/ckpt_00000004.bin" <<'EOF'
import struct, sys
M = (1 << 64) - 1
def h64(h, d):
    k = 0x9E3779B97F4A7C15
    n8 = len(d) // 8 * 8
    for (w,) in struct.iter_unpack('<Q', d[:n8]):
        h = ((h ^ w) * k) & M; h ^= h >> 29
    for c in d[n8:]:
        h = ((h ^ c) * 0x100000001B3) & M
    return h ^ (h >> 32)
b = bytearray(open(sys.argv[1], 'rb').read())
hb = struct.unpack_from('<I', b, 12)[0]; n = (len(b) - hb - 8) // 12
struct.pack_into('<f', b, hb + 4 * n + 4 * 7, float('nan'))   # m[7]
h = h64(0xcbf29ce484222325, bytes(b[:hb]))
for part in range(3):                                          # one slice per part (n < 4M)
    h = h64(h, bytes(b[hb + 4 * n * part: hb + 4 * n * (part + 1)]))
struct.pack_into('<Q', b, len(b) - 8, h)
import os; os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
open(sys.argv[2], 'wb').write(b)
EOF
  cp "$W/nanm/ckpt_00000004.bin" "$W/nanm_before.bin"
  expect_fail "ckpt_00000005.bin not written: parameter 7 became NaN at update 5 \(phase: optimizer update\).*last good checkpoint is $W/nanm/ckpt_00000004.bin" \
    ./fable train --resume "$W/nanm" --train "$W/train.bin" --steps 8 --ckpt-every 1 --quiet --threads 1
  cmp -s "$W/nanm/ckpt_00000004.bin" "$W/nanm_before.bin" || fail "the resumed checkpoint changed"
  [ "$(ls "$W/nanm" | grep -c '^ckpt_')" -eq 1 ] || fail "a checkpoint with NaN was written: $(ls "$W/nanm")"
fi
echo ok
