#!/usr/bin/env bash
# The real trained stories260K model must generate, greedily, exactly the text that
# llama2.c's run.c prints (../shared/data/stories260K/expected_*.txt, produced by run.c),
# and with temperature 1.0, top-p 0.9, seed 133742 the same sampled text.
set -u
D=${FABLE_DATA:-../shared/data}/stories260K
out=$(mktemp); trap 'rm -f "$out"' EXIT
./fable sample --model "$D/stories260K.bin" --tokenizer "$D/tok512.bin" --temperature 0 --steps 256 >"$out" 2>/dev/null || { echo "sample failed"; exit 1; }
cmp "$out" "$D/expected_t0.0_n256.txt" || { echo "greedy text differs from run.c's"; diff <(cat "$out") "$D/expected_t0.0_n256.txt" | head; exit 1; }
./fable sample --model "$D/stories260K.bin" --tokenizer "$D/tok512.bin" --temperature 1.0 --topp 0.9 --seed 133742 --steps 256 >"$out" 2>/dev/null || exit 1
cmp "$out" "$D/expected_t1.0_p0.9_s133742_n256.txt" || { echo "top-p sample differs from run.c's"; diff "$out" "$D/expected_t1.0_p0.9_s133742_n256.txt" | head; exit 1; }
# mismatched tokenizer: the Llama-2 vocabulary (32000) with a 512-vocab model is an error naming both
if ./fable sample --model "$D/stories260K.bin" --tokenizer "$D/../tokenizer/tokenizer.bin" --steps 8 >"$out" 2>&1; then
  echo "vocab mismatch accepted"; exit 1; fi
grep -q "tokenizer.bin" "$out" && grep -q "512" "$out" || { echo "unclear error: $(cat "$out")"; exit 1; }
# truncated model file
tmp=$(mktemp); head -c 1000 "$D/stories260K.bin" >"$tmp"
if ./fable sample --model "$tmp" --tokenizer "$D/tok512.bin" >"$out" 2>&1; then echo "truncated model accepted"; rm -f "$tmp"; exit 1; fi
grep -q "truncated" "$out" && grep -q "$tmp" "$out" || { echo "unclear error: $(cat "$out")"; rm -f "$tmp"; exit 1; }
rm -f "$tmp"
echo ok
