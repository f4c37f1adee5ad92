#!/usr/bin/env bash
# fable test runner: every C unit test (release build, then the ASan+UBSan build) and
# every shell test in tests/cli. Exit 77 from a test means "skipped" (e.g. no GPU).
# Ends with the summary line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
export FABLE_DATA="${FABLE_DATA:-$(cd .. && pwd)/shared/data}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
pass=0; fail=0; skip=0; failed=()
# Each test gets FABLE_TEST_TIMEOUT seconds (default 600; the slowest takes ~30 s here), so a
# hang (e.g. a deadlock between GEMM threads) fails that test instead of stalling the run.
TEST_TIMEOUT=${FABLE_TEST_TIMEOUT:-600}
run() { # name, command...
  local name=$1; shift
  local t0=$(date +%s.%N)
  local log; log=$(mktemp)
  timeout -k 10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "(killed after ${TEST_TIMEOUT}s: hung or far too slow)" >>"$log"
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name (${dt}s)"
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP $name: $(tail -1 "$log")"
  else fail=$((fail+1)); failed+=("$name"); echo "FAIL $name (${dt}s, exit $rc)"; tail -30 "$log" | sed 's/^/    /'; fi
  rm -f "$log"
}
for t in $(find build/rel/tests -type f -executable -name 'test_*' | sort); do
  run "${t#build/rel/tests/}" "$t"
done
# Sanitizer pass: the same unit tests under ASan+UBSan (FABLE_TEST_QUICK trims sizes).
for t in $(find build/asan/tests -type f -executable -name 'test_*' | sort); do
  run "asan:${t#build/asan/tests/}" env FABLE_TEST_QUICK=1 "$t"
done
# The test models' heads are small (HS ≤ 16), so the runs above take the direct attention
# kernels (cpu_attn_direct.c). Check the GEMM-tiled path too, with its causal row blocks
# (64 query rows, longer than the test sequences) cut to 5 rows: several blocks, a short last one.
run "attn-gemm:model/test_torch_parity" env FABLE_ATTN_DIRECT_HS=0 FABLE_ATTN_BLOCK=5 build/rel/tests/model/test_torch_parity
run "attn-gemm:asan:model/test_gradcheck" env FABLE_ATTN_DIRECT_HS=0 FABLE_ATTN_BLOCK=5 FABLE_TEST_QUICK=1 build/asan/tests/model/test_gradcheck
for t in $(find tests/cli -name '*.sh' ! -name 'lib_*' | sort); do
  run "cli:$(basename "$t")" bash "$t"
done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
