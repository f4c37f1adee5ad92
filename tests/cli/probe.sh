#!/usr/bin/env bash
# `fable probe`: `probe all --json` is one JSON object with every section (checked by a parser
# that is not fable's), --svg writes a well-formed SVG, and bad input is a clear error.
# Quick sweeps on stories260K keep it fast; no timing is asserted (the machine is shared).
set -u
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fable_probe.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
./fable probe all --json --quick --preset stories260K --seq 64 --threads 2 --svg "$tmp/roof.svg" >"$tmp/all.json" 2>"$tmp/err" ||
  { cat "$tmp/err"; fail "probe all exited $?"; }
/usr/bin/python3 - "$tmp/all.json" "$tmp/roof.svg" <<'PY' || exit 1
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
expect_err "only the cpu engine" weights --engine ref
expect_err "--svg draws the roofline" weights --svg "$tmp/x.svg"
expect_err "unknown preset|preset" weights --preset no_such_model
echo "probe: all checks passed"
