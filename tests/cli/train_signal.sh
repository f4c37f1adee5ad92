#!/usr/bin/env bash
# SIGINT/SIGTERM finish the current update, save a checkpoint and exit 0; export of a
# checkpoint gives a llama2.c file that samples exactly like the checkpoint itself.
source tests/cli/lib_train.sh
./fable train $TINY --train "$W/train.bin" --val "$W/val.bin" --batch 4 --seq 64 --steps 100000 --eval-every 0 \
  --out "$W/run" --log "$W/log.jsonl" --quiet & pid=$!
for i in $(seq 1 200); do grep -q '"type":"batch"' "$W/log.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after SIGINT"
grep -q '"reason":"signal"' "$W/log.jsonl" || fail "no end record with reason signal"
ck=$(ls "$W/run"/ckpt_*.bin | tail -1); [ -n "$ck" ] || fail "no checkpoint after SIGINT"
n=$(grep '"type":"batch"' "$W/log.jsonl" | tail -1 | sed 's/.*"batch":\([0-9]*\).*/\1/')
[ "$ck" = "$(printf '%s/run/ckpt_%08d.bin' "$W" "$n")" ] || fail "checkpoint $ck is not the last finished update $n"
./fable export --ckpt "$ck" --out "$W/m.bin" --tokenizer "$DATA/stories260K/tok512.bin" >/dev/null || fail export
a=$(./fable sample --ckpt "$ck" --tokenizer "$DATA/stories260K/tok512.bin" --temperature 0 --steps 40 --prompt "Once upon a time" 2>/dev/null)
b=$(./fable sample --model "$W/m.bin" --tokenizer "$W/tokenizer.bin" --temperature 0 --steps 40 --prompt "Once upon a time" 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "exported model samples differently: '$a' vs '$b'"
cmp -s "$W/tokenizer.bin" "$DATA/stories260K/tok512.bin" || echo "note: exported tokenizer.bin differs in bytes from tok512.bin"
echo ok
