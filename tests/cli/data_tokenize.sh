#!/usr/bin/env bash
# fable tokenize end to end: shard sizes against the token counts PROVENANCE.md records
# (sentencepiece's), validation splits, thread-independence, several inputs, the
# generated corpus, and clear failures on bad input.
set -u
cd "$(dirname "$0")/../.."
[ -x ./fable ] || { echo "no ./fable binary (run make)"; exit 1; }
D="${FABLE_DATA:-../shared/data}"
S="$D/tinystories"
[ -d "$S" ] || { echo "FABLE_DATA ($D) not found"; exit 1; }
T=$(mktemp -d /tmp/fable_data_tok.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; [ -f "$T/out" ] && sed 's/^/    | /' "$T/out" | tail -15; exit 1; }
tok() { timeout 60 ./fable tokenize --quiet "$@" >"$T/out" 2>&1; }
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
L2="$D/tokenizer/tokenizer.model"
T512="$D/stories260K/tok512.model"

# 1. --val-fraction: both shards together hold every story's BOS + ids (PROVENANCE:
#    478,303 tok512 tokens in the 1000 v1 train stories); 10% of 1000 = 100 val stories
tok --tokenizer "$T512" --out "$T/a" --val-fraction 0.1 "$S/tinystories_v1_train_first1000.json" || fail "exit $?"
total=$(( $(size "$T/a/train.bin") + $(size "$T/a/val.bin") ))
[ "$total" -eq $((2 * 32 + 2 * (478303 + 1000))) ] || fail "shards hold $total bytes"
grep -q "^train: 900 stories" "$T/out" || fail "train is not 900 stories"
grep -q "^val: 100 stories" "$T/out" || fail "val is not 100 stories"
grep -q "tokens/story" "$T/out" || fail "no tokens/story"
head -c 8 "$T/a/train.bin" | grep -q FBLTOKS1 || fail "no shard header"

# 2. --val-input with the Llama 2 tokenizer (256,374 and 210,352 tokens)
tok --tokenizer "$L2" --out "$T/b" "$S/tinystories_v1_train_first1000.json" \
  --val-input "$S/tinystories_v1_valid_first1000.txt" || fail "exit $?"
[ "$(size "$T/b/train.bin")" -eq $((32 + 2 * (256374 + 1000))) ] || fail "train.bin is $(size "$T/b/train.bin") bytes"
[ "$(size "$T/b/val.bin")" -eq $((32 + 2 * (210352 + 1000))) ] || fail "val.bin is $(size "$T/b/val.bin") bytes"
grep -q "256374 tokens" "$T/out" || fail "train token count not printed"

# 3. several inputs, explicit paths; 1 thread and 2 threads give the same bytes
tok --tokenizer "$L2" --threads 1 --train-out "$T/c1.bin" "$S/tinystories_v2_sample_cs336.txt" \
  "$S/tinystories_v2_train_first10000lines.txt" || fail "exit $?"
grep -q "^train: 1733 stories, 372683 tokens" "$T/out" || fail "two inputs: wrong counts"
tok --tokenizer "$L2" --threads 2 --train-out "$T/c2.bin" --input "$S/tinystories_v2_sample_cs336.txt" \
  "$S/tinystories_v2_train_first10000lines.txt" || fail "exit $?"
cmp -s "$T/c1.bin" "$T/c2.bin" || fail "1 and 2 threads differ"
[ "$(size "$T/c1.bin")" -eq $((32 + 2 * (372683 + 1733))) ] || fail "c1.bin size"

# 4. the generated corpus tokenizes
timeout 30 ./fable data --offline --out "$T/g" --stories 200 --no-tokenizer >/dev/null 2>&1 || fail "fable data --offline"
tok --tokenizer "$T512" --out "$T/g" "$T/g/tinystories-train.txt" --val-input "$T/g/tinystories-valid.txt" || fail "exit $?"
grep -q "^train: 200 stories" "$T/out" && grep -q "^val: 20 stories" "$T/out" || fail "generated corpus counts"
# several validation files after --val-input (the cli convention: the words up to the next option)
tok --tokenizer "$T512" --out "$T/g2" --input "$S/tinystories_v2_sample_cs336.txt" --val-input \
  "$S/tinystories_v2_sample_cs336.txt" "$T/g/tinystories-valid.txt" || fail "exit $?"
grep -q "^train: 5 stories" "$T/out" && grep -q "^val: 25 stories" "$T/out" || fail "two validation files"

# 5. invalid UTF-8 is passed to the tokenizer (byte fallback), not an error
printf 'A story with bad bytes \xff\xfe here.\nAnother \xc3 one.\n' >"$T/bad.txt"
tok --tokenizer "$T512" --format lines --train-out "$T/bad.bin" "$T/bad.txt" || fail "invalid UTF-8 rejected"
grep -q "^train: 2 stories" "$T/out" || fail "invalid UTF-8: wrong story count"

# 6. bad input: clear message, non-zero exit, no output shard
printf '["one story", "two" "three"]' >"$T/broken.json"
tok --tokenizer "$T512" --out "$T/e1" "$T/broken.json" && fail "malformed JSON accepted"
grep -q "broken.json: malformed JSON at byte 20 (line 1, column 21)" "$T/out" || fail "malformed JSON: unclear message"
[ -e "$T/e1/train.bin" ] && fail "a shard was written for bad input"
printf '[{"title": "x"}]' >"$T/nostory.json"
tok --tokenizer "$T512" --out "$T/e1" "$T/nostory.json" && fail "JSON without stories accepted"
grep -q '"story"' "$T/out" || fail "no-story JSON: unclear message"
tok --tokenizer "$T512" --out "$T/e1" "$T/nope.txt" && fail "missing input accepted"
grep -q "nope.txt" "$T/out" && grep -q "No such file" "$T/out" || fail "missing input: unclear message"
tok --tokenizer "$T/nope.model" --out "$T/e1" "$S/tinystories_v2_sample_cs336.txt" && fail "missing tokenizer accepted"
tok --out "$T/e1" "$S/tinystories_v2_sample_cs336.txt" && fail "no --tokenizer accepted"
grep -q -- "--tokenizer is required" "$T/out" || fail "no --tokenizer: unclear message"
tok --tokenizer "$T512" --val-fraction 1.5 "$S/tinystories_v2_sample_cs336.txt" && fail "--val-fraction 1.5 accepted"
tok --tokenizer "$T512" --val-fraction 0.1 --val-input "$S/tinystories_v2_sample_cs336.txt" \
  "$S/tinystories_v2_sample_cs336.txt" && fail "both split options accepted"
tok --tokenizer "$T512" --format xml "$S/tinystories_v2_sample_cs336.txt" && fail "--format xml accepted"
tok --tokenizer "$T512" --bogus "$S/tinystories_v2_sample_cs336.txt" && fail "unknown option accepted"
printf '\n \n\t\n' >"$T/blank.txt"
tok --tokenizer "$T512" --out "$T/e1" "$T/blank.txt" && fail "an input without stories accepted"
grep -q "no stories" "$T/out" || fail "blank input: unclear message"
[ -e "$T/e1/train.bin" ] && fail "a shard was written for bad input"
ls "$T/e1" 2>/dev/null | grep -q tmp && fail "temp files left behind"
echo "data_tokenize: all checks passed"
