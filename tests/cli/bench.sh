#!/usr/bin/env bash
# `fable bench`: the numbers it prints are the arithmetic the issue defines, checked against
# references outside fable's code: the parameter count of the real stories260K.bin (its
# float count less llama2.c's freq_cis table), the FLOP formula of SPEC §2 written out here,
# and tokens/s, GFLOP/s and MFU recomputed from the printed time and peak.
set -u
DATA=${FABLE_DATA:-../shared/data}
fail() { echo "FAIL: $*"; exit 1; }
BIN=$DATA/stories260K/stories260K.bin
[ -f "$BIN" ] || fail "missing $BIN"
out=$(./fable bench step --preset stories260K --batch 4 --seq 64 --steps 3 --warmup 1 --threads 2 --json) ||
  fail "bench step exited $?"
/usr/bin/python3 - "$out" "$(stat -c %s "$BIN")" <<'PY' || exit 1
import json, sys
j = json.loads(sys.argv[1]); size = int(sys.argv[2])
def check(ok, what):
    if not ok:
        print("FAIL:", what, json.dumps(j)); sys.exit(1)
# stories260K (llama2.c): dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512, seq 512, tied
dim, hid, L, nh, nkv, V, S = 64, 172, 5, 8, 4, 512, 512
hs = dim // nh
floats = (size - 7 * 4) // 4                 # after the 7-int header
params = floats - S * hs                     # less freq_cis_real + freq_cis_imag (S × hs/2 each)
check(j["params"] == params, f"params {j['params']} vs the file's {params}")
norms = L * 2 * dim + dim                    # RMSNorm weights: not matmul weights
B, T = j["batch"], j["seq"]
flops = (6 * (params - norms) + 12 * L * dim * T) * B * T   # SPEC §2, per token × tokens
check(abs(j["flops_per_step"] - flops) <= 1e-5 * flops, f"flops {j['flops_per_step']} vs SPEC §2 {flops}")
ms = j["ms_median"]
check(0 < j["ms_min"] <= ms <= j["ms_max"], "min <= median <= max")
check(abs(j["tokens_per_s"] - B * T / (ms / 1e3)) <= 0.01 * j["tokens_per_s"], "tokens/s = B·T / median")
check(abs(j["gflops"] - flops / (ms / 1e3) / 1e9) <= 0.01 * j["gflops"], "GFLOP/s = FLOPs / median")
check(abs(j["mfu_pct"] - 100 * j["gflops"] / j["peak_gflops"]) <= 0.05, "MFU = GFLOP/s / peak")
check(j["peak_gflops"] > 0 and j["peak_rss_mb"] > 0, "peak and RSS reported")
phases = sum(j[k] for k in ("t_fwd", "t_bwd", "t_dw", "t_cls", "t_rms", "t_opt"))
check(0.5 * ms < phases < 1.5 * j["ms_max"], f"phases sum to {phases:.3f} ms of a {ms} ms step")
PY
# kernels --only: exactly the named kernel is timed; a name that matches nothing is an error
k=$(./fable bench kernels --preset stories260K --batch 2 --seq 32 --reps 2 --only AdamW) || fail "kernels --only AdamW"
[ "$(grep -c 'ms ' <<<"$k")" -eq 1 ] && grep -q "AdamW (all params)" <<<"$k" || { echo "$k"; fail "--only AdamW"; }
if ./fable bench kernels --preset stories260K --only no_such_kernel >/dev/null 2>"${TMPDIR:-/tmp}/fable_bench_err.$$"; then
  fail "--only no_such_kernel succeeded"
fi
grep -q "no kernel name contains 'no_such_kernel'" "${TMPDIR:-/tmp}/fable_bench_err.$$" ||
  fail "--only no_such_kernel: no clear message"
rm -f "${TMPDIR:-/tmp}/fable_bench_err.$$"
echo "bench: all checks passed"
