#!/usr/bin/env bash
# fable encode / decode / tokenizer train|convert|info, end to end.
# Expected ids come from sentencepiece: the two sentences published in
# ../shared/data/PROVENANCE.md, and (when Debian's spm_encode is installed) spm_encode's
# output on a whole TinyStories file. Bad tokenizer files must give a non-zero exit and a
# message naming the file.
set -u
D=${FABLE_DATA:-../shared/data}
L=$D/tokenizer; S=$D/stories260K; T=$D/tinystories
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

./fable encode --help | grep -q "usage: fable encode" || fail "encode --help"
./fable decode --help | grep -q "usage: fable decode" || fail "decode --help"
./fable tokenizer --help | grep -q "tokenizer train" || fail "tokenizer --help"

# PROVENANCE.md's sentencepiece ids
line="Once upon a time, there was a little girl named Lily."
want_l="9038 2501 263 931 29892 727 471 263 2217 7826 4257 365 2354 29889"
want_s="403 407 261 378 432 383 286 261 376 298 315 421 395 317 426"
for f in "$L/tokenizer.model" "$L/tokenizer.bin"; do
  [ "$(echo "$line" | ./fable encode --tokenizer "$f")" = "$want_l" ] || fail "Llama-2 ids with $f"
  [ "$(echo "$line" | ./fable encode --tokenizer "$f" --bos --eos)" = "1 $want_l 2" ] || fail "--bos --eos with $f"
done
for f in "$S/tok512.model" "$S/tok512.bin"; do
  [ "$(echo "$line" | ./fable encode --tokenizer "$f")" = "$want_s" ] || fail "tok512 ids with $f"
done
# one output line per input line, the empty line included; no newline at the end is fine
[ "$(printf 'a\n\nb' | ./fable encode --tokenizer "$S/tok512.model" | wc -l)" = 3 ] || fail "line count"
[ "$(printf 'a\n\nb' | ./fable encode --tokenizer "$S/tok512.model" | sed -n 2p)" = "" ] || fail "empty line"

# decode: ids → text
[ "$(echo "$want_l" | ./fable decode --tokenizer "$L/tokenizer.model")" = "$line" ] || fail "decode Llama-2"
[ "$(echo "1 $want_s 2" | ./fable decode --tokenizer "$S/tok512.bin")" = "$line" ] || fail "decode tok512 with BOS/EOS"
echo "32000" | ./fable decode --tokenizer "$L/tokenizer.model" >/dev/null 2>"$tmp/err" && fail "id 32000 accepted"
grep -q "32000" "$tmp/err" || fail "unclear decode error: $(cat "$tmp/err")"

# a whole file: threads do not change the output; decode(encode(x)) == x
./fable encode --tokenizer "$L/tokenizer.model" < "$T/tinystories_v1_valid_first1000.txt" > "$tmp/f1" || fail "encode file"
./fable encode --tokenizer "$L/tokenizer.model" --threads 2 --input "$T/tinystories_v1_valid_first1000.txt" > "$tmp/f2" || fail "encode --threads"
cmp -s "$tmp/f1" "$tmp/f2" || fail "--threads 2 changes the ids"
./fable decode --tokenizer "$L/tokenizer.bin" < "$tmp/f1" > "$tmp/dec" || fail "decode file"
cmp -s "$tmp/dec" "$T/tinystories_v1_valid_first1000.txt" || fail "decode(encode(file)) != file"
if command -v spm_encode >/dev/null; then
  for m in "$L/tokenizer.model" "$S/tok512.model"; do
    spm_encode --model "$m" --output_format=id < "$T/tinystories_v2_sample_cs336.txt" > "$tmp/s"
    ./fable encode --tokenizer "$m" < "$T/tinystories_v2_sample_cs336.txt" > "$tmp/f"
    cmp -s "$tmp/s" "$tmp/f" || fail "fable encode differs from spm_encode with $m"
  done
  spm_encode --model "$L/tokenizer.model" --output_format=id < "$T/tinystories_v1_valid_first1000.txt" > "$tmp/s"
  cmp -s "$tmp/s" "$tmp/f1" || fail "fable encode differs from spm_encode on tinystories_v1_valid_first1000.txt"
fi

# bad tokenizer files: non-zero exit, the file named
head -c 3000 /dev/urandom > "$tmp/random.bin"; : > "$tmp/empty.model"
head -c 5000 "$S/tok512.model" > "$tmp/cut.model"; head -c 3001 "$S/tok512.bin" > "$tmp/cut.bin"
for f in "$tmp/random.bin" "$tmp/empty.model" "$tmp/cut.model" "$tmp/cut.bin" "$tmp/missing.model" "$tmp"; do
  echo hi | ./fable encode --tokenizer "$f" > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "encode with $f: exit $rc"
  grep -qF "$f" "$tmp/err" || fail "error does not name $f: $(cat "$tmp/err")"
done
./fable encode > /dev/null 2>&1 && fail "encode without --tokenizer accepted"
./fable encode --tokenizer "$S/tok512.model" --bogus < /dev/null > /dev/null 2>&1 && fail "unknown option accepted"

# train: both files written; .model and .bin encode alike; convert; info
./fable tokenizer train --vocab 300 --input "$T/tinystories_v2_sample_cs336.txt" --out "$tmp/tk" --quiet || fail "train"
[ -s "$tmp/tk.model" ] && [ -s "$tmp/tk.bin" ] || fail "train outputs"
./fable encode --tokenizer "$tmp/tk.model" < "$T/tinystories_v2_sample_cs336.txt" > "$tmp/a" || fail "encode trained .model"
./fable encode --tokenizer "$tmp/tk.bin" < "$T/tinystories_v2_sample_cs336.txt" > "$tmp/b" || fail "encode trained .bin"
cmp -s "$tmp/a" "$tmp/b" || fail "trained .model and .bin encode differently"
./fable tokenizer info --tokenizer "$tmp/tk.model" | grep -q "vocab_size: 300" || fail "info"
./fable tokenizer convert --tokenizer "$L/tokenizer.model" --out "$tmp/conv.bin" || fail "convert"
cmp -s "$tmp/conv.bin" "$L/tokenizer.bin" || fail "tokenizer.model converted to .bin differs from llama2.c's tokenizer.bin"
./fable tokenizer train --vocab 100 --input "$T/tinystories_v2_sample_cs336.txt" --out "$tmp/x" 2> "$tmp/err" && fail "vocab 100 accepted"
grep -q "too small" "$tmp/err" || fail "unclear train error: $(cat "$tmp/err")"
echo ok
