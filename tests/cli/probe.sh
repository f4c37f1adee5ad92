#!/usr/bin/env bash
# `fable probe`: `probe all --json` is one JSON object with every section (checked by a parser
# that is not fable's), --svg writes a well-formed SVG, and bad input is a clear error.
# Quick sweeps on stories260K keep it fast; no timing is asserted (the machine is shared).
set -u
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fable_probe.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3   # Debian's (CI), or the GPU machine's own
./fable probe all --json --quick --preset stories260K --seq 64 --threads 2 --svg "$tmp/roof.svg" >"$tmp/all.json" 2>"$tmp/err" ||
  { cat "$tmp/err"; fail "probe all exited $?"; }
"$PY" - "$tmp/all.json" "$tmp/roof.svg" <<'PY' || exit 1
import json, math, sys, xml.etree.ElementTree as ET
text = open(sys.argv[1]).read()
j = json.loads(text)                       # exactly one JSON value (trailing data would raise)
def check(ok, what):
    if not ok:
        print("FAIL:", what); sys.exit(1)
check(isinstance(j, dict), "not an object")
for s in ("weights", "counters", "sched", "roofline", "cache", "dispatch"):
    check(isinstance(j.get(s), dict), f"section {s} missing")
check(j["probe"] == "all" and j["engine"] == "cpu" and j["preset"] == "stories260K", "header fields")
w = j["weights"]["shapes"]
check(len(w) >= 4 and all(r["err_swapped"] < 1e-5 and r["moved"] > 0.05 for r in w), "weights swap rows")
r = j["roofline"]
check(0 < r["peak_cpu_gflops"] < 400 * 256 and 1 <= r["bw_read_1thread_cpu_gbs"] <= 1000, "roofline roofs")
check(len(r["kernels"]) >= 12 and all(k["gflops"] > 0 for k in r["kernels"]), "roofline kernels")
c = j["counters"]["available"]
check(all(x["available"] == "yes" or "errno" in x["why"] for x in c), "every unavailable counter has a reason")
check(len(j["cache"]["stream"]) > 5 and len(j["sched"]["kernels"]) >= 12, "cache and sched tables")
check(j["dispatch"]["barrier_us"] > 0, "dispatch")
root = ET.parse(sys.argv[2]).getroot()
check(root.tag.endswith("svg"), "svg root element")
check(len([e for e in root.iter() if e.tag.endswith("circle")]) >= 12, "svg: a point per kernel")
print("probe all: %.1f s" % j["seconds"])
PY
# a single probe prints a readable table
./fable probe dispatch --quick --preset stories260K >"$tmp/d.txt" || fail "probe dispatch"
grep -q "one barrier:" "$tmp/d.txt" || { cat "$tmp/d.txt"; fail "dispatch table"; }
# bad input: a clear message and exit 2
expect_err() { # message-regex, args...
  local re=$1; shift
  ./fable probe "$@" >/dev/null 2>"$tmp/e" && fail "probe $* succeeded"
  grep -qE -e "$re" "$tmp/e" || { cat "$tmp/e"; fail "probe $*: no clear message"; }
}
expect_err "unknown probe 'nonsense'" nonsense
expect_err "engine 'ref' is not probed" weights --engine ref
expect_err "only weights and dispatch run" sched --engine cuda
expect_err "draws the roofline" all --engine cuda --svg "$tmp/x.svg"

# the cuda probes: without a GPU a plain reason; with one, the claims checked against the
# probe's own double-precision references and against each other
have_gpu=0
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && have_gpu=1
if [ $have_gpu = 0 ]; then
  for p in weights dispatch all; do
    expect_err "engine 'cuda' cannot run on this machine: .*(no NVIDIA GPU|driver|built without CUDA|cannot reach a GPU)" \
      $p --engine cuda --quick
  done
else
  for prec in fp32 bf16; do
    ./fable probe all --engine cuda --precision $prec --json --quick --preset stories15M --seq 256 >"$tmp/cu.json" 2>"$tmp/err" ||
      { cat "$tmp/err"; fail "probe all --engine cuda --precision $prec"; }
    "$PY" - "$tmp/cu.json" $prec <<'PY' || fail "probe all --engine cuda ($prec): a claim does not hold"
import json, math, sys
j, prec = json.load(open(sys.argv[1])), sys.argv[2]
assert j["engine"] == "cuda" and set(j) >= {"weights", "dispatch"} and "sched" not in j, sorted(j)
tol = 1e-5 if prec == "fp32" else 1e-4   # fp32 accumulation of K <= 32000 products of exact inputs
w = j["weights"]
assert w["precision"] == prec, w["precision"]
for r in w["shapes"]:
    # err_newaddr is null only where cudaGraphExecUpdate refused the new capture (a finding, reported)
    for k in ("err_first", "err_inplace") + (("err_newaddr",) if r["update_us"] is not None else ()):
        assert r[k] is not None and r[k] <= tol, (r["matrix"], k, r[k])
    assert r["moved"] > 0.5, ("the replay did not follow the new weights", r)
    assert 0 < r["replay_us"] and 0 < r["plain_us"] and 0 < r["recapture_us"], r
d = j["dispatch"]
assert 0 < d["graph_gap_us"] and 0 < d["launch_gap_us"] and d["launch_sync_us"] > 0, d
# a graph launch enqueues the whole batch in one call: less host time than launching it kernel by kernel
assert d["graph_launch_us"] < d["nkern"] * d["launch_us"], d
print(f"cuda probes ({prec}): worst err {max(r[k] or 0 for r in w['shapes'] for k in ('err_first','err_inplace','err_newaddr')):.1e}, "
      f"launch {d['launch_us']:.2f} us/kernel vs graph {d['graph_launch_us'] / d['nkern']:.3f}")
PY
  done
fi
expect_err "--svg draws the roofline" weights --svg "$tmp/x.svg"
expect_err "unknown preset|preset" weights --preset no_such_model
echo "probe: all checks passed"
