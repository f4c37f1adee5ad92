#!/usr/bin/env bash
# The libFuzzer harnesses (fuzz/, docs/testing.md "Fuzzing"): replay every input of the kept
# corpus fuzz/corpus/<target>/ and every input that ever crashed (fuzz/crashers/<target>/),
# then fuzz each target 2 s more from that corpus. A crash, sanitizer report (ASan, UBSan),
# leak, timeout (10 s), RSS over 2 GB or single allocation over 64 MB fails the test.
# Skipped (77) without clang-14 and its libFuzzer runtime (libclang-rt-14-dev).
set -u
cd "$(dirname "$0")/../.."
TARGETS="ckpt llama2c tok_bin spm_model shard corpus_json corpus_text jsonl encode"
tmp=$(mktemp -d /tmp/fable_fuzz_test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v clang-14 >/dev/null || { echo "skipped: no clang-14"; exit 77; }
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' > "$tmp/t.c"
clang-14 -fsanitize=fuzzer,address,undefined -o "$tmp/t" "$tmp/t.c" 2>/dev/null ||
  { echo "skipped: clang-14 has no libFuzzer runtime (libclang-rt-14-dev)"; exit 77; }
make -s -j2 fuzz-build >"$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log"; fail "make fuzz-build"; }

export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
FLAGS="-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10"
total=0
for t in $TARGETS; do
  bin=build/fuzz/fuzz_$t
  [ -x "$bin" ] || fail "$bin was not built"
  # 1. the kept corpus: each file run once (listed, so that a missing corpus is an error)
  n=$(find "fuzz/corpus/$t" -type f 2>/dev/null | wc -l)
  [ "$n" -ge 3 ] || fail "fuzz/corpus/$t holds $n inputs (make fuzz FUZZ_SECONDS=N with FUZZ_MERGE=1 refills it)"
  find "fuzz/corpus/$t" -type f -print0 | xargs -0 "$bin" $FLAGS >"$tmp/$t.replay" 2>&1 ||
    { grep -E "ERROR|SUMMARY|fuzz check|Running:" "$tmp/$t.replay" | tail -8; fail "$t: the kept corpus crashes"; }
  ran=$(grep -c "^Executed " "$tmp/$t.replay")
  [ "$ran" -eq "$n" ] || fail "$t: replayed $ran of $n corpus inputs"
  # 2. every input that ever crashed (fixed since; the parser must now handle it)
  c=0
  if [ -d "fuzz/crashers/$t" ] && [ -n "$(find "fuzz/crashers/$t" -type f ! -name '*.log' ! -name '*.md')" ]; then
    find "fuzz/crashers/$t" -type f ! -name '*.log' ! -name '*.md' -print0 | xargs -0 "$bin" $FLAGS >"$tmp/$t.crashers" 2>&1 ||
      { grep -E "ERROR|SUMMARY|fuzz check|Running:" "$tmp/$t.crashers" | tail -8; fail "$t: an old crasher crashes again"; }
    c=$(grep -c "^Executed " "$tmp/$t.crashers")
  fi
  # 3. two seconds of new inputs, from the corpus
  mkdir -p "$tmp/new_$t"
  "$bin" $FLAGS -max_total_time=2 -print_final_stats=1 -artifact_prefix="$tmp/" "$tmp/new_$t" "fuzz/corpus/$t" \
    >"$tmp/$t.fuzz" 2>&1 ||
    { grep -E "ERROR|SUMMARY|fuzz check|Test unit" "$tmp/$t.fuzz" | head -8
      for a in "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-*; do
        [ -f "$a" ] && mkdir -p "fuzz/crashers/$t" && cp "$a" "fuzz/crashers/$t/" && echo "kept: fuzz/crashers/$t/$(basename "$a")"
      done
      fail "$t: fuzzing found a crash (fix the parser; the input stays in fuzz/crashers/$t/)"; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.fuzz")
  echo "$t: $n corpus inputs, $c crashers replayed; $execs new executions in 2 s"
  total=$((total + n))
done
echo "fuzz: $total corpus inputs replayed, all targets clean"
