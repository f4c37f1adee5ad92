#!/usr/bin/env bash
# Issue 17 item 8: does the dashboard slow the trainer? One training run (stories260K 32×256,
# 2 threads, the budget recipe) with `fable dash --log` attached in a tmux pane during
# alternate windows and detached in the others, so that both arms share the same run and the
# same minutes of this noisy VM (A/B at the scale of seconds instead of whole runs). Each
# window's updates give a median ms per update; adjacent (off, on) windows form a pair; the
# result is the median over pairs of on/off, and the dashboard's own CPU time.
# usage: bench/dash_overhead.sh [PAIRS [WINDOW_SECONDS]]   (default 8 pairs of 20 s windows)
# Needs tmux, a quiet machine and nothing else running.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-8}; WIN=${2:-20}
D=${FABLE_DATA:-../shared/data}
W=$(mktemp -d /tmp/fable_dashbench.XXXXXX)
trap 'tmux kill-session -t fbdash 2>/dev/null || true; kill $TP 2>/dev/null || true; rm -rf "$W"' EXIT
[ -x ./fable ] || make -j"$(nproc)" fable
command -v tmux >/dev/null || { echo "needs tmux" >&2; exit 2; }
./fable tokenize --quiet --tokenizer "$D/stories260K/tok512.model" --out "$W/data" \
  "$D"/tinystories/tinystories_v1_train_first1000.json >/dev/null
LOG=$W/train.jsonl
SECS=$(( (2 * PAIRS + 1) * WIN + 30 ))
./fable train --preset stories260K --recipe budget --batch 32 --steps 1000000 --time-limit $SECS --threads 2 \
  --train "$W/data/train.bin" --out "$W/run" --ckpt-every 1000000 --eval-every 1000000 --log "$LOG" --quiet &
TP=$!
t0=$(date +%s.%N)
sleep "$WIN" # warm-up window, not counted
: > "$W/windows"
dash_cpu=0
for ((p = 0; p < PAIRS; p++)); do
  for arm in off on; do
    a=$(date +%s.%N)
    if [ $arm = on ]; then
      tmux new-session -d -s fbdash -x 120 -y 40 "exec ./fable dash --log $LOG --no-generate --no-power"
      sleep "$WIN"
      dp=$(tmux list-panes -t fbdash -F '#{pane_pid}')
      # the dashboard's CPU time (utime + stime, clock ticks) before it quits
      ticks=$(awk '{print $14 + $15}' /proc/"$dp"/stat 2>/dev/null || echo 0)
      dash_cpu=$((dash_cpu + ticks))
      tmux kill-session -t fbdash
    else
      sleep "$WIN"
    fi
    b=$(date +%s.%N)
    echo "$arm $(awk -v x="$a" -v y="$t0" 'BEGIN{print x-y}') $(awk -v x="$b" -v y="$t0" 'BEGIN{print x-y}')" >> "$W/windows"
  done
done
kill -INT $TP 2>/dev/null || true
wait $TP 2>/dev/null || true
/usr/bin/python3 - "$LOG" "$W/windows" "$dash_cpu" "$(getconf CLK_TCK)" "$PAIRS" "$WIN" <<'PY'
import json, statistics, sys
log, wins, ticks, hz, pairs, win = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
recs = [json.loads(l) for l in open(log) if l.startswith("{")]
start = [r for r in recs if r["type"] == "start"][0]
b = [r for r in recs if r["type"] == "batch"]
# time_s counts from the trainer's start; the windows from the script's launch of it (a
# fraction of a second earlier): skip the first 2 s of each window
W = [(l.split()[0], float(l.split()[1]), float(l.split()[2])) for l in open(wins)]
med = []
for arm, a, z in W:
    ms = [r["ms_per_step"] for r in b if a + 2 <= r["time_s"] < z]
    med.append((arm, statistics.median(ms) if ms else float("nan"), len(ms)))
ratios = []
print("| pair | off ms/update (n) | on ms/update (n) | on/off |")
print("|---|---|---|---|")
for i in range(0, len(med) - 1, 2):
    (a0, m0, n0), (a1, m1, n1) = med[i], med[i + 1]
    ratios.append(m1 / m0)
    print(f"| {i // 2 + 1} | {m0:.1f} ({n0}) | {m1:.1f} ({n1}) | {m1 / m0:.3f} |")
r = sorted(ratios)
print(f"median on/off {statistics.median(r):.3f} (min {r[0]:.3f}, max {r[-1]:.3f}); "
      f"tokens/s ratio on/off {1 / statistics.median(r):.3f}")
print(f"dashboard CPU: {ticks / hz:.2f} s over {pairs * win:.0f} s attached = "
      f"{100 * ticks / hz / (pairs * win):.2f}% of one core")
PY
