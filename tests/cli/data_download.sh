#!/usr/bin/env bash
# fable data against a loopback HTTP server (tests/cli/data_http_server.py): downloads
# checked with coreutils sha256sum and the digest PROVENANCE.md records, resume of a
# .part (the server logs the Range header), servers that ignore ranges or cut the
# transfer, a wrong sha256, 404, unreachable hosts, local files, and the offline fallback.
set -u
cd "$(dirname "$0")/../.."
[ -x ./fable ] || { echo "no ./fable binary (run make)"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "skip: $PY not found"; exit 77; }
D="${FABLE_DATA:-../shared/data}"
[ -d "$D/tinystories" ] || { echo "FABLE_DATA ($D) not found"; exit 1; }
T=$(mktemp -d /tmp/fable_data_dl.XXXXXX)
SRV=
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$T/out" ] && sed 's/^/    | /' "$T/out" | tail -15; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
run() { timeout 60 ./fable data "$@" >"$T/out" 2>&1; }   # bounded: never hangs the suite

mkdir "$T/www"
cp "$D/tinystories/tinystories_v1_valid_first1000.txt" "$T/www/TinyStoriesV2-GPT4-valid.txt"
cp "$D/tinystories/tinystories_v2_train_first10000lines.txt" "$T/www/TinyStoriesV2-GPT4-train.txt"
cp "$D/tokenizer/tokenizer.model" "$T/www/tokenizer.model"
cp "$T/www/TinyStoriesV2-GPT4-valid.txt" "$T/www/wrong.txt"
printf 'x' >>"$T/www/wrong.txt"
TOK_SHA=9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347   # PROVENANCE.md
TRAIN_SHA=$(sha "$T/www/TinyStoriesV2-GPT4-train.txt")
VALID_SHA=$(sha "$T/www/TinyStoriesV2-GPT4-valid.txt")
TRAIN_SIZE=$(stat -c %s "$T/www/TinyStoriesV2-GPT4-train.txt")

timeout 120 "$PY" tests/cli/data_http_server.py "$T/www" "$T/port" "$T/log" &
SRV=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || fail "the test HTTP server did not start"
URL="http://127.0.0.1:$(cat "$T/port")"

# 1. default file set from a mirror: valid, train, tokenizer; all checked
run --out "$T/d1" --mirror "$URL" --quiet || fail "mirror download exited $?"
[ "$(sha "$T/d1/tinystories-valid.txt")" = "$VALID_SHA" ] || fail "valid file differs"
[ "$(sha "$T/d1/tinystories-train.txt")" = "$TRAIN_SHA" ] || fail "train file differs"
[ "$(sha "$T/d1/tokenizer.model")" = "$TOK_SHA" ] || fail "tokenizer differs"
grep -q "generator" "$T/out" && fail "fell back although the mirror works"
grep -q "Llama 2 tokenizer" "$T/out" || fail "tokenizer not identified"
grep -q "$URL/TinyStoriesV2-GPT4-train.txt" "$T/d1/SOURCES.txt" || fail "SOURCES.txt lacks the train URL"
ls "$T/d1"/*.part >/dev/null 2>&1 && fail ".part files left behind"
# running again does not download again
: >"$T/log"
run --out "$T/d1" --mirror "$URL" --quiet || fail "second run exited $?"
[ -s "$T/log" ] && fail "second run downloaded again: $(cat "$T/log")"
grep -q "already downloaded" "$T/out" || fail "second run does not say the files are there"

# 2. resume: a .part with the first 300000 bytes; the server must see Range: bytes=300000-
mkdir "$T/d2"
head -c 300000 "$T/www/TinyStoriesV2-GPT4-train.txt" >"$T/d2/tinystories-train.txt.part"
: >"$T/log"
run --out "$T/d2" --tinystories "$URL/TinyStoriesV2-GPT4-train.txt" --sha256 "$TRAIN_SHA" --no-tokenizer \
  || fail "resume exited $?"
grep -q "^/TinyStoriesV2-GPT4-train.txt bytes=300000-$" "$T/log" || fail "no Range request: $(cat "$T/log")"
grep -q "resuming at byte 300000" "$T/out" || fail "resume not reported"
[ "$(sha "$T/d2/tinystories-train.txt")" = "$TRAIN_SHA" ] || fail "resumed file differs"
[ -e "$T/d2/tinystories-train.txt.part" ] && fail ".part left after resume"

# 3. a transfer cut in the middle keeps the .part and says so; the next run resumes it
mkdir "$T/d3"
run --out "$T/d3" --tinystories "$URL/truncate/TinyStoriesV2-GPT4-train.txt" --no-tokenizer \
  && fail "a truncated transfer succeeded"
grep -q "run again to resume" "$T/out" || fail "no resume hint"
[ -e "$T/d3/tinystories-train.txt" ] && fail "a partial file was renamed into place"
PART=$(stat -c %s "$T/d3/tinystories-train.txt.part" 2>/dev/null || echo 0)
[ "$PART" -eq $((TRAIN_SIZE / 2)) ] || fail ".part holds $PART bytes, expected $((TRAIN_SIZE / 2))"
: >"$T/log"
run --out "$T/d3" --tinystories "$URL/TinyStoriesV2-GPT4-train.txt" --sha256 "$TRAIN_SHA" --no-tokenizer \
  || fail "resume after a cut exited $?"
grep -q "bytes=$PART-" "$T/log" || fail "did not resume from $PART: $(cat "$T/log")"
[ "$(sha "$T/d3/tinystories-train.txt")" = "$TRAIN_SHA" ] || fail "file differs after resume"

# 4. a server that ignores Range: fable starts over and still gets the right file
mkdir "$T/d4"
head -c 1000 "$T/www/TinyStoriesV2-GPT4-train.txt" >"$T/d4/tinystories-train.txt.part"
: >"$T/log"
run --out "$T/d4" --tinystories "$URL/norange/TinyStoriesV2-GPT4-train.txt" --sha256 "$TRAIN_SHA" --no-tokenizer \
  || fail "no-range server exited $?"
grep -q "cannot resume" "$T/out" || fail "restart not reported"
[ "$(sha "$T/d4/tinystories-train.txt")" = "$TRAIN_SHA" ] || fail "file differs after restart"

# 5. wrong sha256: non-zero, says so, leaves neither the file nor a .part
run --out "$T/d5" --tinystories "$URL/wrong.txt" --sha256 "$VALID_SHA" --no-tokenizer && fail "wrong sha256 accepted"
grep -q "sha256 mismatch" "$T/out" || fail "no mismatch message"
ls "$T/d5" | grep -q "tinystories-train" && fail "a file with the wrong sha256 was kept"
# a corrupt .part prefix is caught by the checksum too
mkdir "$T/d5b"
printf 'garbage' >"$T/d5b/tinystories-train.txt.part"
run --out "$T/d5b" --tinystories "$URL/TinyStoriesV2-GPT4-train.txt" --sha256 "$TRAIN_SHA" --no-tokenizer \
  && fail "a corrupt resume was accepted"
grep -q "sha256 mismatch" "$T/out" || fail "corrupt resume: no mismatch message"
# a tokenizer that is not the expected one
run --out "$T/d5c" --offline --tokenizer "$T/www/wrong.txt" --tokenizer-sha256 "$TOK_SHA" && fail "wrong tokenizer accepted"
grep -q "sha256 mismatch" "$T/out" || fail "tokenizer: no mismatch message"

# 6. HTTP 404 and an unreachable host, named explicitly: fail, no fallback
run --out "$T/d6" --tinystories "$URL/missing.txt" --no-tokenizer && fail "404 accepted"
grep -q "404" "$T/out" || fail "404 not reported"
grep -q "generator" "$T/out" && fail "explicit source fell back to the generator"
run --out "$T/d6" --tinystories "http://127.0.0.1:1/x.txt" --no-tokenizer && fail "unreachable explicit URL accepted"
grep -q "cannot download http://127.0.0.1:1/x.txt" "$T/out" || fail "unreachable: unclear message"

# 7. default sources unreachable: the built-in generator, announced, exit 0
run --out "$T/d7" --mirror "http://127.0.0.1:1" --stories 300 || fail "fallback exited $?"
grep -q "TinyStories could not be downloaded" "$T/out" || fail "fallback not announced"
grep -q "built-in story generator (300 stories" "$T/out" || fail "generator not named"
[ "$(grep -c '^<|endoftext|>$' "$T/d7/tinystories-train.txt")" = 300 ] || fail "not 300 generated stories"
[ "$(grep -c '^<|endoftext|>$' "$T/d7/tinystories-valid.txt")" = 30 ] || fail "not 30 validation stories"
grep -q "^tinystories-train.txt	generated:storygen" "$T/d7/SOURCES.txt" || fail "SOURCES.txt lacks the generator"

# 8. local files: linked (default) or copied; --offline with a URL is an error
run --out "$T/d8" --offline --tinystories "$D/tinystories/tinystories_v1_train_first1000.json" \
  --valid "$D/tinystories/tinystories_v1_valid_first1000.txt" --tokenizer "$D/tokenizer/tokenizer.model" \
  --tokenizer-sha256 "$TOK_SHA" || fail "local files exited $?"
[ -L "$T/d8/tinystories-train.json" ] || fail "train JSON not linked"
cmp -s "$T/d8/tinystories-valid.txt" "$D/tinystories/tinystories_v1_valid_first1000.txt" || fail "valid link wrong"
[ "$(sha "$T/d8/tokenizer.model")" = "$TOK_SHA" ] || fail "tokenizer link wrong"
run --out "$T/d9" --copy --tinystories "$D/tinystories/tinystories_v2_sample_cs336.txt" --no-tokenizer \
  || fail "copy exited $?"
[ -f "$T/d9/tinystories-train.txt" ] && [ ! -L "$T/d9/tinystories-train.txt" ] || fail "not copied"
run --out "$T/d9" --offline --tinystories "$URL/x.txt" --no-tokenizer && fail "--offline with a URL accepted"
grep -q "offline" "$T/out" || fail "--offline + URL: unclear message"
run --out "$T/d9" --tinystories "$T/does-not-exist.txt" --no-tokenizer && fail "missing local file accepted"
grep -q "does-not-exist.txt" "$T/out" || fail "missing file not named"
run --out "$T/d9" --tinystories "$URL/x.txt" --sha256 1234 && fail "bad --sha256 accepted"
run --out "$T/d9" --bogus && fail "unknown option accepted"
echo "data_download: all checks passed"
