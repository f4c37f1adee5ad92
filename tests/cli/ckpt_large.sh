#!/usr/bin/env bash
# A checkpoint of a model over 4M parameters (stories15M: 15.2M) is written in 16 MB slices;
# its checksum must still be the one a reader computes over whole arrays (a per-slice
# checksum once made every stories15M-and-larger checkpoint unloadable). Save, then load it
# three ways (export, resume, a flipped byte that must be caught).
set -u
DATA=${FABLE_DATA:-../shared/data}
fail() { echo "FAIL: $*"; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
./fable tokenize --tokenizer "$DATA/tokenizer/tokenizer.model" --train-out "$W/t.bin" --val-out "$W/v.bin" \
  --val-fraction 0.1 "$DATA/tinystories/tinystories_v2_sample_cs336.txt" >/dev/null 2>&1 || fail "tokenize"
./fable train --preset stories15M --train "$W/t.bin" --batch 1 --seq 32 --steps 1 --out "$W/r" --threads 2 --quiet \
  >/dev/null 2>"$W/err" || { cat "$W/err"; fail "train exited"; }
c=$W/r/ckpt_00000001.bin
[ "$(stat -c %s "$c")" -gt $((3 * 4 * 4194304)) ] || fail "checkpoint smaller than one 16 MB slice per array"
./fable export --ckpt "$c" --out "$W/m.bin" >"$W/out" 2>&1 || { cat "$W/out"; fail "export could not load the checkpoint"; }
grep -q "15191712 parameters" "$W/out" || fail "export: $(cat "$W/out")"
./fable train --resume "$W/r" --train "$W/t.bin" --steps 2 --threads 2 --quiet >/dev/null 2>"$W/err" ||
  { cat "$W/err"; fail "resume could not load the checkpoint"; }
[ -f "$W/r/ckpt_00000002.bin" ] || fail "resume wrote no checkpoint for update 2"
# a byte flipped in the second moment (the last array) is caught by the checksum
sz=$(stat -c %s "$c")
printf '\x55' | dd of="$c" bs=1 seek=$((sz - 100)) conv=notrunc 2>/dev/null
./fable export --ckpt "$c" --out "$W/m2.bin" >"$W/out" 2>&1 && fail "a flipped byte was not caught"
grep -q "checksum mismatch" "$W/out" || fail "flipped byte: $(cat "$W/out")"
echo "ckpt_large: ok"
