#!/usr/bin/env bash
# Training in a time budget (include/fable/plan.h): with --time-limit, a cosine schedule and
# no --steps, the run measures its speed, plans the updates that fit, records the plan in the
# checkpoint, decays the learning rate to its floor exactly at the planned last update, and
# ends within the limit. A planned run resumed from a checkpoint is bit-identical to a run
# given the planned --steps from the start (the plan is part of the trajectory).
. "$(dirname "$0")/lib_train.sh"
RUN="./fable train $TINY --train $W/train.bin --val $W/val.bin --recipe budget --batch 4 --seq 64 --lr 1e-3
     --min-lr 1e-4 --warmup 2000 --eval-every 100 --eval-batches 2 --ckpt-every 50 --quiet"
num() { grep "\"type\":\"$2\"" "$1" | head -1 | sed "s/.*\"$3\":\([^,}]*\).*/\1/"; }
# check_schedule WARMUP LOG...: every learning rate of the logs (in order) against the schedule,
# computed here from the plan and correction records: warmup u/WU·lr; then the progress
# p = (u − WU)/(N − WU), after a correction at update R (past the warmup) to total S with
# progress pR there: p = pR + (1 − pR)(u − R)/(S − R); lr = 1e-4 + c(p)(1e-3 − 1e-4) with
# c = 1 − p (linear, the budget recipe's) or ½(1 + cos πp), 1e-4 from the total on. Each
# record takes effect from the update after it. Prints the corrections past the warmup.
check_schedule() {
  local wu=$1; shift
  cat "$@" | grep -E '"type":"(start|plan|replan|batch)"' | awk -v wu="$wu" '
  function field(k) { if (match($0, "\"" k "\":[^,}]*")) return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0; return "" }
  /"type":"start"/ { lin = /"schedule":"linear"/; next }
  /"type":"plan"/ { S = field("steps"); R = 0; next }
  /"type":"replan"/ { u = field("update"); s = field("steps"); if (s != S) { if (u > wu) { R = u; pR = field("progress"); nc++ } S = s }; nrp++; next }
  /"type":"batch"/ { u = field("batch"); lr = field("lr")
    if (u <= wu) want = 1e-3 * u / wu
    else if (S == "") next
    else if (u >= S) want = 1e-4
    else { p = (R > 0 && u > R) ? pR + (1 - pR) * (u - R) / (S - R) : (u - wu) / (S - wu)
           want = 1e-4 + (lin ? 1 - p : 0.5 * (1 + cos(3.141592653589793 * p))) * 9e-4 }
    d = (lr - want) / want; if (d < 0) d = -d; if (d > m) m = d; n++ }
  END { printf "%s schedule, %d checks, %d corrections past the warmup: %d learning rates, max relative error %.1e\n",
               lin ? "linear" : "cosine", nrp, nc, n, m | "cat >&2"; close("cat >&2"); print nc + 0; exit !(n > 0 && m < 1e-5) }'
}

# 0. the linear schedule (--schedule linear): every update's lr against the formula, computed
#    here: warmup u/5·lr, then lr_min + (1 − (u − 5)/(25 − 5))·(lr − lr_min), the floor at 25;
#    and with --time-limit it is planned like the cosine
LIN="./fable train $TINY --train $W/train.bin --recipe budget --batch 4 --seq 64 --lr 1e-3 --min-lr 1e-4
     --schedule linear --eval-every 0 --quiet"
$LIN --warmup 5 --steps 25 --out $W/lin --log $W/lin.jsonl >$W/lin.out 2>&1 || { cat $W/lin.out; fail "linear run"; }
grep '"type":"batch"' $W/lin.jsonl | sed 's/.*"batch":\([0-9]*\),.*"lr":\([^,]*\),.*/\1 \2/' | awk '
  { u = $1; want = u <= 5 ? 1e-3 * u / 5 : 1e-4 + (1 - (u - 5) / 20) * 9e-4; d = ($2 - want) / want
    if (d < 0) d = -d; if (d > m) m = d; n++ }
  END { printf "linear schedule: %d updates, max relative lr error %.1e\n", n, m; exit !(n == 25 && m < 1e-5) }' ||
  fail "the linear schedule's learning rates differ from the formula"
$LIN --time-limit 3 --out $W/lint --log $W/lint.jsonl >$W/lint.out 2>&1 || { cat $W/lint.out; fail "planned linear run"; }
grep '"type":"plan"' $W/lint.jsonl >/dev/null || fail "a linear schedule with --time-limit was not planned"
grep '"type":"start"' $W/lint.jsonl | grep -q '"schedule":"linear"' || fail "the start record does not name the linear schedule"

# 1. a planned run: it plans once, checks the plan at 25, 50, 75 and 90% of the budget
#    (correcting the total when it no longer fits), ends "done" (not cut by the limit) at the
#    last planned update, within the limit, and its last update runs at the floor of the cosine
LIMIT=8
$RUN --time-limit $LIMIT --out $W/a --log $W/a.jsonl >$W/a.out 2>&1 || { cat $W/a.out; fail "planned run"; }
[ "$(grep -c '"type":"plan"' $W/a.jsonl)" = 1 ] || fail "expected one plan record"
N0=$(num $W/a.jsonl plan steps); WU=$(num $W/a.jsonl plan warmup); P=$(num $W/a.jsonl plan update)
N=$N0; [ -n "$(grep '"type":"replan"' $W/a.jsonl)" ] && N=$(grep '"type":"replan"' $W/a.jsonl | tail -1 | sed 's/.*"steps":\([0-9]*\).*/\1/')
echo "planned $N0 updates (plan made after update $P, warmup $WU); $(grep -c '"type":"replan"' $W/a.jsonl) checks, last total $N"
if [ "$(num $W/a.jsonl end reason)" = '"done"' ]; then
  [ "$(grep -c '"type":"replan"' $W/a.jsonl)" = 4 ] || fail "a run that ended done checked its plan $(grep -c '"type":"replan"' $W/a.jsonl) times, not 4"
fi
NC=$(check_schedule "$WU" $W/a.jsonl) || fail "a learning rate differs from the planned and corrected schedule"
C2=$(grep '"type":"replan"' $W/a.jsonl | sed -n 2p | sed 's/.*"update":\([0-9]*\).*/\1/')
C3=$(grep '"type":"replan"' $W/a.jsonl | sed -n 3p | sed 's/.*"update":\([0-9]*\).*/\1/')
if [ "$(num $W/a.jsonl end reason)" = '"done"' ] && [ "$C2" -gt "$WU" ]; then
  # the checks keep less free (2.5%) than the plan (4%): a check past the warmup corrects the total
  [ "$NC" -ge 1 ] || fail "no check past the warmup corrected the total"
fi
pred=$(num $W/a.jsonl plan predicted_end_s)
awk -v s="$pred" -v l=$LIMIT 'BEGIN{exit !(s <= l && s >= 0.9 * l)}' || fail "the plan predicts an end at $pred s for a $LIMIT s budget"
secs=$(num $W/a.jsonl end seconds)
awk -v s="$secs" -v l=$LIMIT 'BEGIN{exit !(s <= l + 1)}' || fail "run took $secs s, over the $LIMIT s limit"
if [ "$(num $W/a.jsonl end reason)" = '"time_limit"' ]; then
  # the machine slowed down after the plan (a shared machine): the hard limit stopped it
  echo "note: the machine slowed after the plan; the time limit stopped the run at $(num $W/a.jsonl end step)/$N"
else
  [ "$(num $W/a.jsonl end reason)" = '"done"' ] || fail "run ended $(num $W/a.jsonl end reason)"
  [ "$(num $W/a.jsonl end step)" = "$N" ] || fail "run ended at $(num $W/a.jsonl end step), planned $N"
  lastlr=$(grep '"type":"batch"' $W/a.jsonl | tail -1 | sed 's/.*"lr":\([^,]*\),.*/\1/')
  awk -v x="$lastlr" 'BEGIN{exit !(x > 0.99e-4 && x < 1.01e-4)}' || fail "last update's lr $lastlr is not the floor 1e-4"
fi

# 3. a correction is in the checkpoint: stop between the second and third check, resume; the
#    resumed run does not check again, ends at the corrected total, and every learning rate of
#    both halves follows the corrected schedule (computed here from the first half's records)
if [ -n "$C3" ] && [ "$C2" -gt "$WU" ]; then
  X=$(( (C2 + C3) / 2 ))
  $RUN --time-limit $LIMIT --out $W/d --log $W/d.jsonl --stop-after $X >$W/d.out 2>&1 || { cat $W/d.out; fail "run stopped after $X"; }
  NCD=$(check_schedule "$WU" $W/d.jsonl) || fail "the stopped run's learning rates differ from its schedule"
  if [ "$(num $W/d.jsonl end reason)" = '"stop_after"' ] && [ "$NCD" -ge 1 ]; then
    ND=$(grep '"type":"replan"' $W/d.jsonl | tail -1 | sed 's/.*"steps":\([0-9]*\).*/\1/')
    ./fable train --resume $W/d --train $W/train.bin --log $W/d2.jsonl --quiet >$W/d2.out 2>&1 || { cat $W/d2.out; fail "resume after a correction"; }
    grep -qE '"type":"(plan|replan)"' $W/d2.jsonl && fail "the resumed run planned or checked again"
    [ "$(num $W/d2.jsonl end step)" = "$ND" ] || fail "resumed run ended at $(num $W/d2.jsonl end step), the corrected total is $ND"
    check_schedule "$WU" $W/d.jsonl $W/d2.jsonl >/dev/null || fail "the resumed run does not follow the corrected schedule"
    echo "corrected run stopped at $X and resumed: it follows the correction to update $ND"
  else
    echo "skipped part 3: the run stopped at $X ended $(num $W/d.jsonl end reason) with $NCD corrections: machine too slow"
  fi
else
  echo "skipped part 3: the second check came inside the warmup (update $C2): machine too slow"
fi

# 2. the plan is in the checkpoint: stop after the plan, resume, and compare every loss with a
#    run told --steps N (and the plan's warmup) from the start; the learning rates of the
#    measuring updates (inside the warmup) do not depend on the total
# (the plan is made at 5% of the budget, ~400 updates here: inside the warmup of 2000)
if [ "$P" -gt 2000 ]; then echo "skipped part 2: the plan came after the warmup (update $P): machine too fast"; exit 0; fi
if [ "$WU" != 2000 ] || [ "$N" -le $((2 * P + 20)) ]; then
  echo "skipped part 2: the plan changed the warmup ($WU) or left too few updates ($N): machine too slow"; exit 0
fi
$RUN --time-limit $LIMIT --out $W/b --log $W/b.jsonl --stop-after $((2 * P + 10)) >$W/b.out 2>&1 || { cat $W/b.out; fail "first half"; }
if [ "$(num $W/b.jsonl end reason)" != '"stop_after"' ] || ! grep -q '"type":"plan"' $W/b.jsonl; then
  echo "skipped part 2: the second run ended $(num $W/b.jsonl end reason) before its plan and $((2 * P + 10)) updates: machine too slow"; exit 0
fi
NB=$(num $W/b.jsonl plan steps)
if [ "$(num $W/b.jsonl plan warmup)" != 2000 ] || [ "$(num $W/b.jsonl plan update)" -gt 2000 ] || [ "$NB" -le $((2 * P + 20)) ]; then
  echo "skipped part 2: the second run's plan ($NB updates) changed the warmup or left too few: machine too slow"; exit 0
fi
./fable train --resume $W/b --train $W/train.bin --log $W/b2.jsonl --quiet >$W/b2.out 2>&1 || { cat $W/b2.out; fail "resume"; }
[ "$(num $W/b2.jsonl end step)" = "$NB" ] || fail "resumed run ended at $(num $W/b2.jsonl end step), its plan said $NB"
grep -q '"type":"plan"' $W/b2.jsonl && fail "the resumed run planned again"
$RUN --steps $NB --out $W/c --log $W/c.jsonl >$W/c.out 2>&1 || { cat $W/c.out; fail "reference run"; }
diff <(losses $W/b.jsonl; losses $W/b2.jsonl) <(losses $W/c.jsonl) >/dev/null || fail "planned+resumed losses differ from --steps $NB"
echo "planned run resumed = --steps $NB from the start, bit for bit ($(losses $W/c.jsonl | wc -l) losses)"
