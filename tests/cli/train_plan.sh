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

# 1. a planned run: it plans once, ends "done" (not cut by the limit) at the planned update,
#    within the limit, and its last update runs at the floor of the cosine
LIMIT=8
t0=$(date +%s.%N)
$RUN --time-limit $LIMIT --out $W/a --log $W/a.jsonl >$W/a.out 2>&1 || { cat $W/a.out; fail "planned run"; }
t1=$(date +%s.%N)
[ "$(grep -c '"type":"plan"' $W/a.jsonl)" = 1 ] || fail "expected one plan record"
N=$(num $W/a.jsonl plan steps); WU=$(num $W/a.jsonl plan warmup); P=$(num $W/a.jsonl plan update)
echo "planned $N updates (plan made after update $P, warmup $WU)"
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
