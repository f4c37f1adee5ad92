#!/usr/bin/env bash
# Data-parallel scaling on one machine (docs/distributed.md; results in bench/RESULTS.md):
# the same update (2 micro-steps of B x T tokens) computed as
#   1p x 1t : one process, 1 thread, accum 2
#   1p x 2t : one process, 2 threads, accum 2
#   2r x 1t : mpirun -np 2, 1 thread per rank, accum 1 each (gradients all-reduced)
# for each model given (default: stories15M stories110M). Prints one table row per run: the
# median seconds per update (updates 2.. of UPDATES), tokens/s, and for 2 ranks the medians
# of the all-reduce records (wait for the slower rank, transfer, bytes per rank).
#   bash bench/mpi_scaling.sh [MODEL...]      env: UPDATES (default 6), REPEAT (default 1)
set -u
cd "$(dirname "$0")/.."
DATA=${FABLE_DATA:-../shared/data}
UPDATES=${UPDATES:-6}
REPEAT=${REPEAT:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d /tmp/fable_mpibench.XXXXXX)
trap 'rm -rf "$W"' EXIT
./fable tokenize --quiet --tokenizer "$DATA/tokenizer/tokenizer.model" --train-out "$W/train.bin" --val-out "$W/val.bin" \
  "$DATA/tinystories/tinystories_v2_train_first10000lines.txt" \
  --val-input "$DATA/tinystories/tinystories_v2_sample_cs336.txt" >/dev/null || { echo "tokenize failed"; exit 1; }
models=${*:-stories15M stories110M}
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
printf "| model | B x T | config | s/update (median) | tokens/s | reduce s | wait s | transfer s | MB sent per rank |\n"
printf "|---|---|---|---|---|---|---|---|---|\n"
for m in $models; do
  case $m in
    stories15M) B=4 ;;
    *) B=1 ;;
  esac
  T=256
  common="--preset $m --train $W/train.bin --batch $B --seq $T --steps $UPDATES --eval-every 0 --ckpt-every 0 --keep 1 --quiet"
  for rep in $(seq 1 "$REPEAT"); do
    for cfg in 1p1t 1p2t 2r1t; do
      log=$W/$m.$cfg.$rep.jsonl
      case $cfg in
        1p1t) ./fable train $common --accum 2 --threads 1 --out "$W/o" --log "$log" ;;
        1p2t) ./fable train $common --accum 2 --threads 2 --out "$W/o" --log "$log" ;;
        2r1t) mpirun --oversubscribe --bind-to none -np 2 ./fable train $common --accum 1 --threads 1 --out "$W/o" --log "$log" ;;
      esac >/dev/null 2>"$W/err" || { echo "$m $cfg failed:"; cat "$W/err"; continue; }
      rm -rf "$W/o"
      s=$(grep '"type":"batch"' "$log" | tail -n +2 | field train_ms | awk '{print $1/1000}' | median)
      tps=$(awk -v s="$s" -v n=$((2 * B * T)) 'BEGIN{printf "%.0f", n / s}')
      if [ $cfg = 2r1t ]; then
        d=$(grep '"type":"dist"' "$log" | tail -n +2)
        red=$(echo "$d" | field t_reduce | median); wt=$(echo "$d" | field t_wait | median)
        tr=$(echo "$d" | field t_comm | median); mb=$(echo "$d" | field bytes | median | awk '{printf "%.1f", $1/1e6}')
      else red=-; wt=-; tr=-; mb=-; fi
      printf "| %s | %d x %d | %s | %.3f | %s | %s | %s | %s | %s |\n" "$m" "$B" "$T" "$cfg" "$s" "$tps" "$red" "$wt" "$tr" "$mb"
    done
  done
done
