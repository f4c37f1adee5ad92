#!/usr/bin/env bash
# Fuzz every parser of outside bytes (`make fuzz FUZZ_SECONDS=N` runs this after building).
#   fuzz/run.sh SECONDS [TARGET...]     each target SECONDS seconds, one after another
# Environment:
#   FUZZ_RUNS=N     stop each target after N executions instead (SECONDS is then the cap)
#   FUZZ_MERGE=1    afterwards, minimize what was found into the kept corpus fuzz/corpus/<t>/
#                   (libFuzzer -merge=1 -use_counters=0: the smallest inputs that together
#                   reach every code edge reached; counts of edge hits are not kept, so the
#                   committed corpus stays small)
# Inputs: the kept corpus fuzz/corpus/<t>/, fresh seeds from fuzz/make_seeds.sh (./fable),
# dictionaries fuzz/dict/. A crash, leak, timeout (10 s), RSS over 2 GB or any single
# allocation over 64 MB (no input here is larger than 64 KB, so such an allocation trusts a
# size the file cannot justify) is written to fuzz/crashers/<t>/ and the script fails.
# The last lines per target are libFuzzer's final stats (executions, exec/s, cov, ft).
set -u
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=${*:-ckpt llama2c tok_bin spm_model shard corpus_json corpus_text jsonl encode}
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
W=$(mktemp -d /tmp/fable_fuzz.XXXXXX)
trap 'rm -rf "$W"' EXIT
bash fuzz/make_seeds.sh "$W/seeds" || { echo "fuzz/run.sh: making seeds failed (is ./fable built?)"; exit 1; }
maxlen() {
  case $1 in
    ckpt) echo 40000 ;; llama2c) echo 16384 ;; tok_bin|spm_model) echo 8192 ;;
    encode|jsonl) echo 1024 ;; *) echo 4096 ;;
  esac
}
dict() {
  case $1 in
    corpus_json|jsonl) echo fuzz/dict/json.dict ;; corpus_text) echo fuzz/dict/corpus_text.dict ;;
    tok_bin|spm_model|encode) echo fuzz/dict/tok.dict ;; ckpt) echo fuzz/dict/ckpt.dict ;;
    shard) echo fuzz/dict/shard.dict ;;
  esac
}
rc=0
for t in $TARGETS; do
  bin=build/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: $bin missing (make fuzz-build)"; exit 1; }
  mkdir -p "$W/new/$t" "fuzz/corpus/$t" "fuzz/crashers/$t"
  d=$(dict "$t")
  runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  echo "== $t: ${FUZZ_RUNS:+$FUZZ_RUNS runs, at most }${SECONDS_EACH}s"
  "$bin" -max_total_time="$SECONDS_EACH" "${runs[@]}" -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10 \
    -max_len="$(maxlen "$t")" ${d:+-dict=$d} -print_final_stats=1 -artifact_prefix="fuzz/crashers/$t/" \
    "$W/new/$t" "fuzz/corpus/$t" "$W/seeds/$t" >"$W/$t.log" 2>&1
  r=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" \
    "$W/$t.log"
  if [ $r -ne 0 ]; then
    rc=1
    echo "FAILED: $t (exit $r); the input is in fuzz/crashers/$t/:"
    grep -E "ERROR|SUMMARY|fuzz check|Test unit written" "$W/$t.log" | head -20
    cp "$W/$t.log" "fuzz/crashers/$t/last_failure.log"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    mkdir -p "$W/merged/$t"
    "$bin" -merge=1 -use_counters=0 -rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10 -max_len="$(maxlen "$t")" \
      "$W/merged/$t" "fuzz/corpus/$t" "$W/seeds/$t" "$W/new/$t" >"$W/$t.merge.log" 2>&1 &&
      rm -rf "fuzz/corpus/$t" && mv "$W/merged/$t" "fuzz/corpus/$t" &&
      echo "merged: fuzz/corpus/$t: $(ls "fuzz/corpus/$t" | wc -l) files, $(cat "fuzz/corpus/$t"/* | wc -c) bytes"
  fi
done
exit $rc
