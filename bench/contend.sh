#!/usr/bin/env bash
# Step time idle and beside one CPU-bound process (issue 21 item 1), fable against PyTorch.
# usage: bench/contend.sh [ROUNDS [CONFIG...]]   CONFIG = PRESET:BATCH:STEPS
#   default configs: stories260K:32:20 stories15M:8:8 stories110M:1:4
# Per round and config, in this order: fable as shipped (short spin, see src/cli/main.c),
# fable with libgomp's default spin (GOMP_SPINCOUNT=300000, what fable did before), and
# PyTorch tuned (SPEC §9), each idle and then with `while :; do :; done` beside it (fable:
# `bench step --contend 1`; PyTorch: the same loop started by this script). 2 threads.
# TORCH=0 leaves PyTorch out (beside a busy loop it takes minutes per config).
# Prints every figure (ms per update, median of the run's updates) and per config the
# medians and contended/idle ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-3}; shift || true
TORCH_RUN=${TORCH:-1}
CONFIGS=("$@"); [ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(stories260K:32:20 stories15M:8:8 stories110M:1:4)
for p in python3-torch libopenblas0-openmp libtcmalloc-minimal4; do
  dpkg -s $p >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $p; }
done
[ -x ./fable ] || make -j"$(nproc)" fable
TORCH=(env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
       LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/bin/python3 bench/torch_step.py)
ms() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["ms_median"])'; }
out=$(mktemp)
for ((r = 1; r <= R; r++)); do
  for c in "${CONFIGS[@]}"; do
    IFS=: read -r P B S <<<"$c"
    for k in 0 1; do
      echo "$c fable c$k $(./fable bench step --preset "$P" --batch "$B" --seq 256 --steps "$S" --threads 2 --contend $k --json | ms)"
      echo "$c fable-spin c$k $(GOMP_SPINCOUNT=300000 ./fable bench step --preset "$P" --batch "$B" --seq 256 --steps "$S" --threads 2 --contend $k --json | ms)"
      [ "${TORCH_RUN:-1}" = 0 ] && continue
      bp=
      if [ $k = 1 ]; then bash -c 'while :; do :; done' & bp=$!; fi
      t=$("${TORCH[@]}" --preset "$P" --batch "$B" --seq 256 --threads 2 --steps "$S" | ms)
      [ -n "$bp" ] && kill "$bp"
      echo "$c pytorch c$k $t"
    done
  done | tee -a "$out"
done
/usr/bin/python3 - "$out" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    c, who, k, v = line.split()
    d[(c, who, k)].append(float(v))
print("\nconfig                 who          idle ms  contended ms  contended/idle")
for (c, who, k) in sorted(d):
    if k != "c0": continue
    i, b = statistics.median(d[(c, who, "c0")]), statistics.median(d[(c, who, "c1")])
    print(f"{c:22s} {who:11s} {i:9.1f} {b:13.1f} {b / i:10.2f}x")
PY
rm -f "$out"
