#!/usr/bin/env bash
# fable dash end to end in a real pseudo-terminal (tmux): launch a training run, see the
# trainer's sample on screen, `r` (the trainer checkpoints, stops and comes back with
# --resume), a resize to below 80x24 and back, `q` (the trainer checkpoints and stops, the
# dashboard exits 0), and the last checkpoint loads and samples. Then --snapshot of the
# committed fixture equals the golden frame (the same text tests/dash/test_dash checks).
source tests/cli/lib_train.sh
command -v tmux >/dev/null || { echo "skipped: no tmux"; exit 77; }
S=fabledash$$
T="tmux -L $S"
trap '$T kill-server 2>/dev/null; sleep 2; rm -rf "$W"' EXIT
TOKBIN=$DATA/stories260K/tok512.bin
screen() { $T capture-pane -p -t dash; }
screen_update() { screen | sed -n 's/.*update  *\([0-9]*\) \/ 100000.*/\1/p' | head -1 | grep . || echo 0; }
# wait_for SECONDS PATTERN: until the screen shows PATTERN (grep -E)
wait_for() {
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do screen | grep -qE "$2" && return 0; sleep 0.3; done
  echo "--- screen ---"; screen; return 1
}
$T new-session -d -s dash -x 100 -y 30 \
  "./fable dash --no-power -- train $TINY --train $W/train.bin --val $W/val.bin --batch 4 --seq 64 --steps 100000 \
   --eval-every 20 --eval-batches 2 --ckpt-every 10 --sample-every 5 --sample-tokens 24 --tokenizer $TOKBIN \
   --out $W/run --threads 1; echo \$? > $W/dash_rc; sleep 600"
wait_for 60 '─ sample · update [0-9]+ · trainer' || fail "no trainer sample on screen"
screen | grep -q "fable dash · custom" || fail "no header"
screen | grep -qE "update +[0-9]+ / 100000" || fail "no update counter"
[ -f "$W/run/train.jsonl" ] || fail "the log is not OUT/train.jsonl"
# a frame's numbers are the log's: the screen's update counter is at most the log's newest batch
u_screen=$(screen_update)
u_log=$(grep '"type":"batch"' "$W/run/train.jsonl" | tail -1 | sed 's/.*"batch":\([0-9]*\).*/\1/')
[ -n "$u_screen" ] && [ "$u_screen" -le "$u_log" ] || fail "screen update '$u_screen' vs log $u_log"
# resize below the minimum and back
$T resize-window -t dash -x 70 -y 20 && sleep 1.5
screen | grep -q "terminal too small" || { screen; fail "no 'terminal too small' at 70x20"; }
$T resize-window -t dash -x 100 -y 30 && sleep 1.5
screen | grep -q "fable dash ·" || fail "no redraw after growing back"
# r: restart with --resume
$T send-keys -t dash r
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ] && [ "$(grep -c '"type":"start"' "$W/run/train.jsonl")" -lt 2 ]; do sleep 0.3; done
[ "$(grep -c '"type":"start"' "$W/run/train.jsonl")" -eq 2 ] || fail "r did not restart the trainer"
grep '"type":"end"' "$W/run/train.jsonl" | head -1 | grep -q '"reason":"signal"' || fail "r: the first trainer did not stop on SIGINT"
r=$(grep '"type":"start"' "$W/run/train.jsonl" | tail -1 | sed 's/.*"resumed_at":\([0-9]*\).*/\1/')
[ "$r" -gt 0 ] || fail "r: the new trainer did not resume (resumed_at $r)"
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ] && [ "$(screen_update)" -le "$r" ]; do sleep 0.3; done
[ "$(screen_update)" -gt "$r" ] || fail "no updates on screen after the restart"
# p: the log stops scrolling while training goes on; arrows scroll back to the restart
$T send-keys -t dash p
wait_for 5 "autoscroll paused" || fail "p did not pause"
a=$(screen | sed -n '/─ log/,$p' | sed -n 2,4p); sleep 2; b=$(screen | sed -n '/─ log/,$p' | sed -n 2,4p)
[ "$a" = "$b" ] || fail "the log moved while paused"
for i in $(seq 1 200); do screen | grep -q "resumed at update $r" && break; $T send-keys -t dash Up; sleep 0.05; done
screen | grep -q "resumed at update $r" || fail "no 'resumed at update $r' in the log (scrolled back)"
$T send-keys -t dash Up Up; sleep 0.6   # the line before it (the frame may have jumped past several)
screen | grep -q "restarted the trainer with --resume" || { screen; fail "no 'restarted' line before it"; }
$T send-keys -t dash p
# q: the trainer checkpoints and stops, then the dashboard exits 0
$T send-keys -t dash q
end=$((SECONDS + 60))
while [ $SECONDS -lt $end ] && [ ! -s "$W/dash_rc" ]; do sleep 0.3; done
[ "$(cat "$W/dash_rc" 2>/dev/null)" = 0 ] || fail "dash exit status '$(cat "$W/dash_rc" 2>/dev/null)'"
[ "$(grep -c '"type":"end"' "$W/run/train.jsonl")" -eq 2 ] || fail "q: no second end record"
tail -1 "$W/run/train.jsonl" | grep -q '"reason":"signal"' || fail "q: the trainer did not stop on SIGINT"
ck=$(tail -1 "$W/run/train.jsonl" | sed 's/.*"checkpoint":"\([^"]*\)".*/\1/')
n=$(grep '"type":"batch"' "$W/run/train.jsonl" | tail -1 | sed 's/.*"batch":\([0-9]*\).*/\1/')
[ "$ck" = "$(printf '%s/run/ckpt_%08d.bin' "$W" "$n")" ] || fail "checkpoint $ck is not the last update $n"
out=$(./fable sample --ckpt "$ck" --tokenizer "$TOKBIN" --temperature 0 --steps 20 2>/dev/null) || fail "the checkpoint does not load"
[ -n "$out" ] || fail "no text from the checkpoint"
./fable eval --ckpt "$ck" --data "$W/val.bin" >/dev/null || fail "eval of the checkpoint"
# the snapshot of the committed fixture is the golden frame
./fable dash --log tests/dash/fixture_train.jsonl --no-power --snapshot 80x24 > "$W/snap.txt" || fail "--snapshot"
cmp -s "$W/snap.txt" tests/dash/golden_80x24.txt || { diff "$W/snap.txt" tests/dash/golden_80x24.txt; fail "snapshot != golden"; }
echo ok
