#!/usr/bin/env bash
# Data-parallel training under Open MPI (docs/distributed.md), on localhost:
#  - 2 ranks x accum 2 give the same losses as 1 process x accum 4, to 1e-5 relative, over 20
#    updates (not bit-exactly: the gradient sums are bracketed per rank), and the same
#    telemetry shape (one log, the job's 80 micro-steps in global order);
#  - 2 ranks are bit-identical run to run (losses and checkpoint payload);
#  - evaluation split across the ranks gives the number one process gives;
#  - stop after 10 + resume with 2 ranks is bit-exact; resuming with another count is refused;
#  - an error on one rank at start, or another seed on one rank, ends the job at once naming it;
#  - a time-budget run (--time-limit, no --steps) runs rank 0's plan on every rank;
#  - SIGTERM to one rank stops every rank at the same update with a checkpoint, exit 0;
#  - kill -9 of one rank ends the job within seconds, non-zero, naming the rank; the last
#    checkpoint is intact and the run resumes from it.
# Skipped (77) when fable was built without MPI or mpirun is missing.
source tests/cli/lib_train.sh
command -v mpirun >/dev/null || { echo "skip: no mpirun (install openmpi-bin)"; exit 77; }
ldd ./fable | grep -q libmpi || { echo "skip: fable built without MPI (no mpicc at build time)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPI="timeout -k 5 120 mpirun --oversubscribe --bind-to none"
MPIBG="mpirun --oversubscribe --bind-to none --timeout 120" # in the background: $! must be mpirun itself
# stories260K's shape at a short sequence (every test here runs in seconds)
M="--dim 64 --hidden-dim 172 --n-layers 5 --n-heads 8 --n-kv-heads 4 --vocab 512 --seq-len 512"
base="$M --train $W/train.bin --val $W/val.bin --recipe llama2c --batch 2 --seq 64 --warmup 3 --lr 3e-3 --eval-batches 3 --threads 1 --quiet"
common="$base --steps 20 --eval-every 10"
payload() { tail -c +2000 "$1" | head -c -8; } # weights + Adam moments, past the header

# ---- equivalence: 2 x K=2 vs 1 x K=4 ----
./fable train $common --accum 4 --out "$W/one" --log "$W/one.jsonl" || fail "1 process x accum 4"
$MPI -np 2 ./fable train $common --accum 2 --out "$W/two" --log "$W/two.jsonl" >"$W/two.out" 2>&1 || { cat "$W/two.out"; fail "2 ranks x accum 2"; }
[ "$(grep -c '"type":"start"' "$W/two.jsonl")" -eq 1 ] || fail "the log has more than one start record: only rank 0 may write it"
grep -q '"world_size":2' "$W/two.jsonl" || fail "no world_size 2 in the start record"
[ "$(losses "$W/two.jsonl" | wc -l)" -eq 80 ] || fail "expected 80 micro-step losses (20 updates x 2 ranks x 2) in the 2-rank log"
[ "$(losses "$W/one.jsonl" | wc -l)" -eq 80 ] || fail "expected 80 micro-step losses in the 1-process log"
paste <(losses "$W/one.jsonl") <(losses "$W/two.jsonl") | awk '
  { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > m) { m = r; at = NR } }
  END { printf "max relative loss difference 2x2 vs 1x4: %.2e (micro-step %d)\n", m, at; exit !(m <= 1e-5) }' ||
  fail "losses of 2 ranks x accum 2 and 1 process x accum 4 differ by more than 1e-5"
batch_losses() { grep '"type":"batch"' "$1" | sed 's/.*"loss":\([^,]*\),.*"grad_norm":\([^,]*\),.*/\1 \2/'; }
paste <(batch_losses "$W/one.jsonl") <(batch_losses "$W/two.jsonl") | awk '
  { for (i = 1; i <= 2; i++) { d = $i - $(i+2); if (d < 0) d = -d; if (d / $i > m) m = d / $i } }
  END { printf "max relative update loss / grad norm difference: %.2e\n", m; exit !(m <= 1e-4) }' ||
  fail "update losses or gradient norms differ: they must be the job's global values"
[ "$(grep -c '"type":"dist"' "$W/two.jsonl")" -eq 20 ] || fail "expected one dist record per update"
grep '"type":"dist"' "$W/two.jsonl" | head -1 | grep -q '"bytes":[1-9]' || fail "dist record without bytes"
[ "$(ls "$W/two" | grep -c '^ckpt_')" -ge 1 ] || fail "no checkpoint from the 2-rank job"
grep '"type":"ckpt"' "$W/two.jsonl" | grep -q ckpt_00000020 || fail "no checkpoint record for update 20"
# the end report of a job: the phases are the mean rank's, so the counted ones share the wall
# time (summed over 2 ranks they came to ~200%), and MFU is over the job's peak (2 ranks' peaks;
# one rank's made it 2x too high)
/usr/bin/python3 - "$W/two.jsonl" <<'PY' || fail "the 2-rank end report's phase shares or MFU are not the job's"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
start = next(r for r in recs if r["type"] == "start")
rep = next(r for r in recs if r["type"] == "report")
counted = sum(rep[k + "_pct"] for k in ("data", "fwd", "rms", "cls", "bwd", "dw", "opt", "eval", "ckpt", "sample", "other"))
peak = 2 * start["peak_gflops"]
print(f"report: counted phases {counted:.1f}%, peak {rep['peak_gflops']:.1f} (2 x {start['peak_gflops']:.1f}), mfu {rep['mfu_pct']:.2f}%")
assert abs(counted - 100) < 0.5, counted
assert abs(rep["peak_gflops"] - peak) <= 1e-6 * peak, rep["peak_gflops"]
assert abs(rep["mfu_pct"] - 100 * rep["gflops"] / peak) <= 1e-6 * rep["mfu_pct"], rep["mfu_pct"]
PY

# ---- evaluation split over the ranks = one process's number, from the same weights ----
v2=$(grep '"type":"eval"' "$W/two.jsonl" | head -1 | sed 's/.*"val_loss":\([^,]*\),.*/\1/')
grep '"type":"eval"' "$W/two.jsonl" | head -1 | grep -q '"batches":3' || fail "the 2-rank evaluation did not use 3 batches"
$MPI -np 2 ./fable train $base --accum 2 --steps 20 --stop-after 10 --eval-every 0 --out "$W/ev" --log /dev/null >/dev/null 2>&1 || fail "10-update run"
v1=$(./fable eval --ckpt "$W/ev/ckpt_00000010.bin" --data "$W/val.bin" --batch 2 --seq 64 --batches 3 --threads 1 --json | sed 's/.*"loss":\([^,]*\),.*/\1/')
awk -v a="$v1" -v b="$v2" 'BEGIN { printf "val loss at update 10: 2 ranks %s, fable eval %s\n", b, a; exit !(sprintf("%.5f", a) == sprintf("%.5f", b)) }' ||
  fail "evaluation split over 2 ranks ($v2) differs from one process ($v1)"

# ---- determinism: 2 ranks, run to run ----
$MPI -np 2 ./fable train $common --accum 2 --out "$W/two2" --log "$W/two2.jsonl" >/dev/null 2>&1 || fail "second 2-rank run"
diff <(losses "$W/two.jsonl") <(losses "$W/two2.jsonl") >/dev/null || fail "2-rank losses differ run to run"
cmp -s <(payload "$W/two/ckpt_00000020.bin") <(payload "$W/two2/ckpt_00000020.bin") || fail "2-rank weights or moments differ run to run"

# ---- resume: bit-exact with the same N, refused with another ----
$MPI -np 2 ./fable train $common --accum 2 --stop-after 10 --out "$W/half" --log "$W/half.jsonl" >/dev/null 2>&1 || fail "first half"
[ -f "$W/half/ckpt_00000010.bin" ] || fail "no checkpoint after the first half"
out=$(./fable train --resume "$W/half" --train "$W/train.bin" --threads 1 --quiet 2>&1) && fail "a 2-rank checkpoint resumed in one process"
echo "$out" | grep -q "written by a job of 2 processes, this job has 1: resume it with mpirun -np 2" || fail "unclear refusal: $out"
out=$($MPI -np 3 ./fable train --resume "$W/half" --train "$W/train.bin" --threads 1 --quiet 2>&1) && fail "a 2-rank checkpoint resumed with 3 ranks"
echo "$out" | grep -q "this job has 3" || fail "unclear refusal with 3 ranks: $out"
$MPI -np 2 ./fable train --resume "$W/half" --train "$W/train.bin" --val "$W/val.bin" --threads 1 --quiet --log "$W/half.jsonl" >/dev/null 2>&1 || fail "resume with 2 ranks"
diff <(losses "$W/two.jsonl") <(losses "$W/half.jsonl") >/dev/null || fail "losses differ after a 2-rank resume"
cmp -s <(payload "$W/two/ckpt_00000020.bin") <(payload "$W/half/ckpt_00000020.bin") || fail "state differs after a 2-rank resume"

# ---- errors on one rank end the job at once, naming it ----
t0=$(date +%s)
out=$($MPI -np 1 ./fable train $common --accum 2 --out "$W/e1" : -np 1 env FABLE_MEM_AVAILABLE_MB=0.1 ./fable train $common --accum 2 --out "$W/e1" 2>&1) && fail "a job with a failing rank succeeded"
# rank 0 relays the failing rank's reason: rank 1's own stderr may be cut off when mpirun ends
# the job on rank 0's exit (seen in CI), so only rank 0's line is sure to arrive
echo "$out" | grep -q "rank 0 of 2: rank 1 could not start: .*parameters need" || fail "rank 0 does not name the failed rank and its reason: $out"
out=$($MPI -np 1 ./fable train $common --accum 2 --out "$W/e2" : -np 1 ./fable train $common --accum 2 --seed 7 --out "$W/e2" 2>&1) && fail "ranks with different seeds ran"
echo "$out" | grep -q "rank 1 starts from other weights" || fail "different start not detected: $out"
[ $(( $(date +%s) - t0 )) -lt 60 ] || fail "failing jobs took too long (a hang?)"

# ---- a time budget (--time-limit, no --steps): every rank runs rank 0's plan and its
#      corrections, to the end (a rank that disagreed would hang or stop early) ----
$MPI -np 2 ./fable train $TINY --train $W/train.bin --val $W/val.bin --recipe budget --batch 4 --seq 64 --lr 1e-3 \
  --min-lr 1e-4 --warmup 300 --eval-every 100 --eval-batches 2 --ckpt-every 50 --threads 1 --quiet --time-limit 8 \
  --out "$W/plan" --log "$W/plan.jsonl" >"$W/plan.out" 2>&1 || { cat "$W/plan.out"; fail "planned 2-rank run"; }
[ "$(grep -c '"type":"plan"' "$W/plan.jsonl")" = 1 ] || fail "expected one plan record"
# the total of the plan, or of its last correction (the checks at 25..90% of the budget)
steps=$(grep -E '"type":"(plan|replan)"' "$W/plan.jsonl" | tail -1 | sed 's/.*"steps":\([0-9]*\).*/\1/')
end=$(grep '"type":"end"' "$W/plan.jsonl")
last=$(echo "$end" | sed 's/.*"step":\([0-9]*\).*/\1/')
echo "$end" | grep -q '"reason":"done"' && [ "$last" = "$steps" ] ||
  { echo "$end" | grep -q '"reason":"time_limit"' && [ "$last" -le "$steps" ]; } ||
  fail "the planned 2-rank run ($steps updates) ended otherwise: $end"
echo "$end" | grep -q '"reason":"done"' && { [ "$(grep -c '"type":"replan"' "$W/plan.jsonl")" = 4 ] || fail "the 2-rank run checked its plan $(grep -c '"type":"replan"' "$W/plan.jsonl") times, not 4"; }

# ---- SIGTERM to one rank: a collective, clean stop ----
rank_pid() { # mpirun pid, rank
  for p in $(pgrep -P "$1"); do tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"; done; }
$MPIBG -np 2 ./fable train $base --accum 2 --steps 100000 --eval-every 0 --out "$W/sig" --log "$W/sig.jsonl" >/dev/null 2>&1 & mp=$!
for i in $(seq 1 600); do [ "$(cat "$W/sig.jsonl" 2>/dev/null | grep -c '"type":"batch"')" -ge 3 ] && break; sleep 0.1; done
kill -TERM "$(rank_pid $mp 1)"; wait $mp; rc=$?
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM to rank 1"
grep -q '"reason":"signal"' "$W/sig.jsonl" || fail "no end record with reason signal"
n=$(grep '"type":"batch"' "$W/sig.jsonl" | tail -1 | sed 's/.*"batch":\([0-9]*\).*/\1/')
[ -f "$(printf '%s/sig/ckpt_%08d.bin' "$W" "$n")" ] || fail "no checkpoint of the last update $n after SIGTERM"

# ---- kill -9 of one rank: the job ends within seconds, naming it; the checkpoint survives ----
$MPIBG -np 2 ./fable train $base --accum 2 --steps 100000 --eval-every 0 --ckpt-every 2 --keep 2 --out "$W/k" --log "$W/k.jsonl" >"$W/k.out" 2>&1 & mp=$!
for i in $(seq 1 600); do ls "$W/k"/ckpt_00000004.bin >/dev/null 2>&1 && break; sleep 0.1; done
victim=$(rank_pid $mp 1); r0=$(rank_pid $mp 0); [ -n "$victim" ] && [ -n "$r0" ] || fail "ranks not found"
t0=$(date +%s.%N); kill -9 "$victim"; wait $mp; rc=$?
for i in $(seq 1 150); do kill -0 "$r0" 2>/dev/null || break; sleep 0.1; done # every rank gone
t1=$(date +%s.%N); kill -0 "$r0" 2>/dev/null && fail "rank 0 survives the job by 15 s"
dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
echo "kill -9 of rank 1: mpirun and every rank gone after ${dt} s, exit status $rc"
[ $rc -ne 0 ] || fail "the job exited 0 after a rank was killed"
awk -v d="$dt" 'BEGIN{exit !(d < 15)}' || fail "the job took ${dt} s to end after a rank was killed"
grep -q "rank 1 .*exited on signal 9" "$W/k.out" || { cat "$W/k.out"; fail "mpirun did not name the killed rank"; }
ck=$(ls "$W/k"/ckpt_*.bin | tail -1)
./fable eval --ckpt "$ck" --data "$W/val.bin" --batch 2 --seq 64 --batches 1 --threads 1 >/dev/null || fail "the last checkpoint $ck does not load"
$MPI -np 2 ./fable train --resume "$W/k" --train "$W/train.bin" --threads 1 --quiet --steps $(( $(basename "$ck" .bin | sed 's/ckpt_0*//') + 2 )) >/dev/null 2>&1 || fail "resume after the kill"
echo ok
