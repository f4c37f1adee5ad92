#!/usr/bin/env bash
# Make small, valid seed files for every fuzz target with ./fable itself (no copy of
# ../shared/data): fable's own generated stories, a 300-piece tokenizer trained on them
# (.model and tokenizer.bin), a token shard, a checkpoint of a tiny model after 2 updates,
# its llama2.c export, its JSON-lines log, and hand-written JSON corpora and edge cases.
# usage: fuzz/make_seeds.sh OUTDIR   (writes OUTDIR/<target>/...)
set -euo pipefail
cd "$(dirname "$0")/.."
O=$1
W=$(mktemp -d /tmp/fable_seeds.XXXXXX)
trap 'rm -rf "$W"' EXIT
F=./fable
for t in ckpt llama2c tok_bin spm_model shard corpus_json corpus_text jsonl encode; do mkdir -p "$O/$t"; done

"$F" data --offline --stories 12 --seed 3 --out "$W/d" --no-tokenizer --quiet >/dev/null 2>&1
head -c 1500 "$W/d/tinystories-train.txt" > "$W/stories.txt"
"$F" tokenizer train --vocab 300 --input "$W/d/tinystories-train.txt" --out "$W/tok" --quiet >/dev/null
cp "$W/tok.model" "$O/spm_model/tok300.model"
cp "$W/tok.bin" "$O/tok_bin/tok300.bin"
"$F" tokenize --quiet --tokenizer "$W/tok.model" --train-out "$W/train.bin" --val-out "$W/val.bin" \
  "$W/d/tinystories-train.txt" --val-input "$W/d/tinystories-valid.txt" >/dev/null
# a shard of the first ~200 tokens: header with n_tokens patched, then the ids
n=200
{ head -c 16 "$W/val.bin"; printf "$(printf '\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00\\x00' $n)";
  tail -c +25 "$W/val.bin" | head -c $((8 + 2 * n)); } > "$O/shard/val200.tok"
tail -c +33 "$O/shard/val200.tok" | head -c 64 > "$O/shard/raw32.bin"   # headerless uint16 ids
# a tiny model (D 4, 2 heads of 2, 1 kv head, F 8, 1 layer, T 8), 2 updates; then an untied one
"$F" train --train "$W/train.bin" --dim 4 --hidden-dim 8 --n-layers 1 --n-heads 2 --n-kv-heads 1 \
  --vocab 300 --seq-len 8 --batch 2 --seq 8 --accum 1 --steps 2 --ckpt-every 2 --eval-every 0 \
  --threads 1 --out "$W/run" --log "$W/train.jsonl" --quiet >/dev/null 2>&1
cp "$W"/run/ckpt_*.bin "$O/ckpt/tiny_tied.ckpt"
"$F" export --ckpt "$O/ckpt/tiny_tied.ckpt" --out "$W/tiny.bin" >/dev/null
cp "$W/tiny.bin" "$O/llama2c/tiny_tied.bin"
"$F" train --train "$W/train.bin" --dim 4 --hidden-dim 8 --n-layers 1 --n-heads 2 --n-kv-heads 2 \
  --vocab 300 --seq-len 4 --untied --batch 1 --seq 4 --accum 2 --steps 2 --ckpt-every 2 --eval-every 0 \
  --threads 1 --out "$W/run2" --log "$W/train2.jsonl" --quiet >/dev/null 2>&1
cp "$W"/run2/ckpt_*.bin "$O/ckpt/tiny_untied.ckpt"
"$F" export --ckpt "$O/ckpt/tiny_untied.ckpt" --out "$O/llama2c/tiny_untied.bin" >/dev/null
# JSON lines: the training logs
cat "$W/train.jsonl" "$W/train2.jsonl" > "$O/jsonl/train.jsonl"
printf '{"type":"step","step":1,"loss":5.5e0,"s":"\\u00e9\\ud83d\\ude00\\n\\"","a":[1,-2.5,true,false,null,{}]}\n[]\n"x"\n' \
  > "$O/jsonl/shapes.jsonl"
# text corpora: <|endoftext|> text, lines, and JSON in each accepted shape
cp "$W/stories.txt" "$O/corpus_text/eot.txt"
printf ' a story\n\n  another one \r\n\tthird\n' > "$O/corpus_text/lines.txt"
printf 'one<|endoftext|>two\n<|endoftext|>\n<|endoftext|> three ' > "$O/corpus_text/eot_edges.txt"
printf '["Once upon a time.", " padded \\n", ""]' > "$O/corpus_json/strings.json"
printf '[{"story":"A dog.","instruction":{"words":["a"]}},{"text":"B \\u00e9"}]' > "$O/corpus_json/objects.json"
printf '{"texts":["x","y"]}' > "$O/corpus_json/texts.json"
printf '{"stories":["\\ud83d\\ude00 z"]}' > "$O/corpus_json/stories.json"
# encode: first byte picks the tokenizer and BOS/EOS, the rest is text
printf '\x00%s' "$(head -c 300 "$W/stories.txt")" > "$O/encode/story"
printf '\x31  two  spaces\ttab\n\xc3\xa9\xe2\x96\x81\xf0\x9f\x98\x80 \xff\xfe 123' > "$O/encode/mixed"
printf '\x05caf\xc3\xa9 <s> </s> <unk> \xe2\x81\x87' > "$O/encode/specials"
ls "$O"/* | wc -l >/dev/null
