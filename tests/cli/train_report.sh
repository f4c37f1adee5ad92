#!/usr/bin/env bash
# Telemetry's home and the run reports of `fable train`:
# - by default the JSON lines go to OUT/train.jsonl and nothing of them reaches the terminal;
#   `--log -` puts them on stderr (as before); a resume appends to the same file;
# - the start record names the run (preset, recipe, pid, out, log, tokenizer, time_limit) and its
#   parameter and FLOP parts sum to params and flops_per_token;
# - the terminal's start report gives the preset's parameter count (SPEC §2: 260,032);
# - the terminal's efficiency report: the shares of the counted phases sum to 100% (to rounding);
# - the `report` record agrees with the per-update and per-micro-step records it summarises
#   (tokens, time in updates, optimizer, forward and data time, FLOP rate recomputed from the
#   start record's flops_per_token), and time_s of the batch and eval records grows with the run.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib_train.sh
PY=/usr/bin/python3

base="$TINY --train $W/train.bin --val $W/val.bin --batch 4 --seq 64 --accum 2 --eval-every 4 --eval-batches 2 --threads 2"
./fable train $base --steps 12 --out "$W/a" >"$W/a.out" 2>"$W/a.err" || { cat "$W/a.err"; fail "train"; }
[ -s "$W/a/train.jsonl" ] || fail "no telemetry in OUT/train.jsonl: $(ls "$W/a")"
grep -q '"type"' "$W/a.err" "$W/a.out" && fail "JSON lines reached the terminal by default"
grep -q "telemetry: $W/a/train.jsonl" "$W/a.out" || fail "the terminal does not say where the telemetry goes"
# --quiet: a quiet terminal
./fable train $base --steps 2 --out "$W/q" --quiet >"$W/q.out" 2>"$W/q.err" || fail "train --quiet"
[ -s "$W/q.out" ] || [ -s "$W/q.err" ] && fail "--quiet printed: $(cat "$W/q.out" "$W/q.err" | head -5)"
# --log -: stderr, as before
./fable train $base --steps 2 --out "$W/s" --quiet --log - 2>"$W/s.err" >/dev/null || fail "train --log -"
grep -q '^{"type":"start"' "$W/s.err" && grep -q '"type":"report"' "$W/s.err" || fail "--log - wrote no records on stderr"
[ -e "$W/s/train.jsonl" ] && fail "--log - also wrote OUT/train.jsonl"
# a resume appends to the run folder's log
./fable train --resume "$W/a" --train "$W/train.bin" --steps 14 --threads 2 --quiet || fail "resume"
[ "$(grep -c '"type":"start"' "$W/a/train.jsonl")" = 2 ] || fail "the resume did not append its start record"

# the terminal report: shares of the counted rows (not the overlapped one) sum to ~100
$PY - "$W/a.out" <<'PY' || fail "terminal efficiency report"
import re, sys
text = open(sys.argv[1]).read()
rep = text[text.index("efficiency report:"):]
rows = re.findall(r"^  (\S.*?)\s+([0-9.]+) s\s+([0-9.]+)%(.*)$", rep, re.M)
names = [r[0] for r in rows]
for want in ["data loading", "forward", "backward (dx)", "optimizer", "evaluation", "checkpoints", "total"]:
    assert want in names, (want, names)
counted = [float(r[2]) for r in rows if r[0] != "total" and "not in the total" not in r[3]]
total = [float(r[2]) for r in rows if r[0] == "total"][0]
assert abs(sum(counted) - 100) <= 0.06 * len(counted), (sum(counted), rows)
assert abs(total - 100) < 0.01, total
assert re.search(r"throughput: \d+ tokens/s in updates .* GFLOP/s, [0-9.]+% MFU", rep), rep
assert "data loading:" in rep and "weight gradients:" in rep, rep
PY

# the records
$PY - "$W/a/train.jsonl" "$W" <<'PY' || fail "telemetry records"
import json, sys
path, W = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(path)]
starts = [i for i, r in enumerate(recs) if r["type"] == "start"]
first = recs[:starts[1]]                   # the first run, before the resume
st = first[0]
for k in ["preset", "recipe", "pid", "out", "log", "tokenizer", "time_limit", "engine", "val"]:
    assert k in st, k
assert st["recipe"] == "ane" and st["out"] == W + "/a" and st["log"] == W + "/a/train.jsonl", st
assert st["preset"] == "" and isinstance(st["pid"], int) and st["pid"] > 0 and st["time_limit"] == 0, st
parts = sum(st[k] for k in ["params_embedding", "params_attention", "params_ffn", "params_norms", "params_classifier"])
assert parts == st["params"] == 34976, (parts, st["params"])
fl = sum(st[k] for k in ["flops_embedding", "flops_attention", "flops_sdpa", "flops_ffn", "flops_classifier"])
assert abs(fl - st["flops_per_token"]) <= 1e-6 * fl, (fl, st["flops_per_token"])
batches = [r for r in first if r["type"] == "batch"]
steps = [r for r in first if r["type"] == "step"]
evals = [r for r in first if r["type"] == "eval"]
rep = [r for r in first if r["type"] == "report"]
assert len(batches) == 12 and len(steps) == 24 and len(evals) == 3 and len(rep) == 1, (len(batches), len(steps), len(evals), len(rep))
rep = rep[0]
ts = [r["time_s"] for r in batches]
assert all(b > a for a, b in zip(ts, ts[1:])) and ts[0] > 0, ts
assert all(e["time_s"] > 0 for e in evals) and evals[-1]["time_s"] >= ts[-1], evals
def close(a, b, rel=1e-4, abs_=1e-6): return abs(a - b) <= rel * max(abs(a), abs(b)) + abs_
assert rep["updates"] == 12 and rep["tokens"] == batches[-1]["tokens"] == 12 * 2 * 4 * 64, rep
assert close(rep["train_s"], sum(b["train_ms"] for b in batches) / 1e3), (rep["train_s"], sum(b["train_ms"] for b in batches))
assert close(rep["opt_s"], sum(b["t_opt"] for b in batches) / 1e3), rep["opt_s"]
assert close(rep["fwd_s"], sum(s["t_fwd"] for s in steps) / 1e3), rep["fwd_s"]
assert close(rep["bwd_s"], sum(s["t_bwd"] for s in steps) / 1e3), rep["bwd_s"]
assert close(rep["data_s"], sum(s["t_data"] for s in steps) / 1e3, 1e-3, 1e-6), rep["data_s"]
assert close(rep["eval_s"], sum(e["ms"] for e in evals) / 1e3), rep["eval_s"]
assert close(rep["tokens_per_s"], rep["tokens"] / rep["train_s"]), rep
gf = st["flops_per_token"] * rep["tokens"] / rep["train_s"] / 1e9
assert close(rep["gflops"], gf), (rep["gflops"], gf)
assert close(rep["mfu_pct"], 100 * gf / st["peak_gflops"]), rep
assert rep["seconds"] >= ts[-1] and rep["seconds"] >= rep["train_s"], rep
keys = ["data", "fwd", "rms", "cls", "bwd", "dw", "opt", "eval", "ckpt", "sample", "other"]   # dW inline on cpu
assert rep["dw_overlapped"] == 0 and rep["dw_overlap_pct"] is None and rep["dw_wait_s"] == 0, rep
assert abs(sum(rep[k + "_pct"] for k in keys) - 100) < 1e-3, sum(rep[k + "_pct"] for k in keys)
assert all(rep[k + "_s"] >= 0 for k in keys), rep
# the end record comes after the report, and the resumed run has its own report
assert first[-1]["type"] == "end" and first[-2]["type"] == "report", [r["type"] for r in first[-3:]]
second = recs[starts[1]:]
assert second[0]["resumed_at"] == 12 and second[0]["recipe"] == "", second[0]
assert [r for r in second if r["type"] == "report"][0]["updates"] == 2
PY

# a preset: the start report and record name it, with SPEC §2's count
./fable train --preset stories260K --train "$W/train.bin" --batch 1 --seq 32 --steps 1 --eval-every 0 --out "$W/p" \
  --recipe llama2c --time-limit 60 --tokenizer "$DATA/stories260K/tok512.bin" --sample-tokens 4 >"$W/p.out" || fail "stories260K"
grep -q "^model: 260,032 parameters (stories260K)" "$W/p.out" || fail "start report: $(head -12 "$W/p.out")"
grep -q '^  ffn  *165,120  ' "$W/p.out" || fail "start report's FFN row: $(head -12 "$W/p.out")"
$PY - "$W/p/train.jsonl" "$DATA/stories260K/tok512.bin" <<'PY' || fail "stories260K start record"
import json, sys
st = json.loads(open(sys.argv[1]).readline())
assert st["type"] == "start" and st["preset"] == "stories260K" and st["params"] == 260032, st
assert st["recipe"] == "llama2c" and st["time_limit"] == 60 and st["tokenizer"] == sys.argv[2], st
PY
echo ok
