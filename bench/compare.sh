#!/usr/bin/env bash
# fable vs PyTorch, back to back on the same shapes and threads, in one run.
# usage: bench/compare.sh [PRESET BATCH SEQ [THREADS [STEPS]]]   (default: stories110M 1 256 2 5)
# ROUNDS=N (default 1) alternates fable and PyTorch N times and also prints the median of the
# per-round ratios: on a VM whose speed drifts by ±10% within minutes, a ratio taken from
# runs seconds apart is steadier than one of two long runs.
# PyTorch runs in its tuned form (SPEC §9): OpenMP OpenBLAS + tcmalloc. Needs
# python3-torch, libopenblas0-openmp and libtcmalloc-minimal4 (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
P=${1:-stories110M}; B=${2:-1}; T=${3:-256}; TH=${4:-2}; S=${5:-5}
for p in python3-torch libopenblas0-openmp libtcmalloc-minimal4; do
  dpkg -s $p >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $p; }
done
[ -x ./fable ] || make -j"$(nproc)" fable
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "env: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset} (PyTorch's OpenBLAS kernel is printed as blas_core; run with"
echo "     env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE to let OpenBLAS pick its best kernel)"
R=${ROUNDS:-1}
fs=(); ts=()
for ((r = 1; r <= R; r++)); do
  f=$(./fable bench step --preset "$P" --batch "$B" --seq "$T" --threads "$TH" --steps "$S" --json)
  echo "fable:   $f"
  t=$(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
      /usr/bin/python3 bench/torch_step.py --preset "$P" --batch "$B" --seq "$T" --threads "$TH" --steps "$S")
  echo "pytorch: $t"
  fs+=("$f"); ts+=("$t")
done
/usr/bin/python3 - "${fs[@]}" "${ts[@]}" <<'PY'
import json, statistics, sys
a = [json.loads(x) for x in sys.argv[1:]]
n = len(a) // 2
fs, ts = a[:n], a[n:]
for f, t in zip(fs, ts):
    print(f"{f['dim']}d x{f['n_layers']} {f['batch']}x{f['seq']}: fable {f['ms_median']:.1f} ms/step "
          f"({f['tokens_per_s']:.0f} tok/s, {f['gflops']:.1f} GFLOP/s, {f['mfu_pct']:.1f}% MFU) | "
          f"pytorch {t['ms_median']:.1f} ms/step ({t['tokens_per_s']:.0f} tok/s) | "
          f"fable is {t['ms_median']/f['ms_median']:.2f}x PyTorch")
if n > 1:
    r = [t['ms_median'] / f['ms_median'] for f, t in zip(fs, ts)]
    print(f"{n} rounds: fable median {statistics.median(f['ms_median'] for f in fs):.1f} ms, "
          f"pytorch median {statistics.median(t['ms_median'] for t in ts):.1f} ms, "
          f"ratio per round {', '.join(f'{x:.2f}' for x in r)}; median ratio {statistics.median(r):.2f}x")
    mfu = [f['mfu_pct'] for f in fs]
    print(f"fable MFU per round {', '.join(f'{x:.1f}' for x in mfu)}%; median {statistics.median(mfu):.1f}%")
PY
