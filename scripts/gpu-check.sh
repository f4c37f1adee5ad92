#!/usr/bin/env bash
# The cuda engine's checks and benchmarks, in one run on a machine with an NVIDIA GPU
# (issue 16). From the repository root, after `make` (or with .dev/bundle.tar.xz made by
# scripts/gpu-bundle.sh, for a GPU machine without Debian packages):
#
#   bash scripts/gpu-check.sh [OUTDIR]        (default: $OUT, else gpu-out)
#
# Writes OUTDIR/gpu-summary.txt (what bench/RESULTS.md records) and a log per section.
# Sections, each under its own time limit, correctness first:
#   1. the engines cross-check, cuda against ref, fp32 and bf16 (test_engine_ops)
#   2. one whole update against the cpu engine: losses, every gradient, AdamW (test_engine_step);
#      finite differences and the PyTorch fixtures through the cuda engine in fp32
#   3. 20 updates of stories260K and of stories15M, cuda (fp32, bf16) against cpu losses
#   4. resume: 2N == N + resume + N, and SIGKILL + resume, bit-exact (tests/cli/train_resume.sh)
#   5. clear errors: no GPU, out of GPU memory, a model that does not fit
#   6. greedy sampling on the GPU = run.c's text for stories260K = the cpu engine's
#   7. fable bench step --engine cuda; 8. PyTorch on the same GPU (bench/torch_gpu.py)
#   9. the kernels alone, and the step with CUDA graphs, the dW stream or the tensor-core attention off
#  10. device time per launch site and per product shape (FABLE_CUDA_PROFILE=1; PROFILE_CFGS)
# SECTIONS="1 7" runs only some; TORCH_EAGER=0 skips PyTorch eager; TORCH_COMPILE_CFGS="P B T,P B T";
# SWITCHES="FABLE_CUDA_ATTN=v1 ..." the environment switches section 9 compares against the default.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-gpu-out}}
mkdir -p "$OUTDIR"
S=$OUTDIR/gpu-summary.txt
: >"$S"
say() { echo "$*" | tee -a "$S"; }
section() { say ""; say "== $*"; }
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }

if [ -f .dev/bundle.tar.xz ]; then
  tar -xJf .dev/bundle.tar.xz -C . || { say "cannot unpack .dev/bundle.tar.xz"; exit 1; }
  export LD_LIBRARY_PATH=$PWD/.dev/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export FABLE_DATA=$PWD/.dev/data
fi
export FABLE_DATA=${FABLE_DATA:-../shared/data}
# cuBLASLt 13: the toolkit's, or the one PyTorch's wheels bring
for d in ${CUDA_HOME:-/usr/local/cuda}/lib64 /usr/local/cuda*/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cublas", "lib") for p in nvidia.__path__))' 2>/dev/null); do
  if ls "$d"/libcublasLt.so.13* >/dev/null 2>&1; then export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}; break; fi
done
PY=python3
# SECTIONS="1 7" runs only those sections (default: all)
want() { [ -z "${SECTIONS:-}" ] || [[ " $SECTIONS " == *" $1 "* ]]; }

say "fable gpu-check, $(date -u '+%Y-%m-%d %H:%M UTC')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$S"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
./fable engines 2>&1 | tee -a "$S"
./fable engines | grep -q '^cuda  available' || [ -n "${GPU_CHECK_FORCE:-}" ] || { say "the cuda engine cannot run here: stopping"; exit 1; }

run() { # name, limit seconds, command...: runs, logs to OUTDIR/name.log, reports PASS/FAIL/SKIP and the tail
  local name=$1 lim=$2; shift 2
  local t=$(date +%s)
  timeout -k 5 "$lim" "$@" >"$OUTDIR/$name.log" 2>&1
  local rc=$?
  local st=PASS; [ $rc -eq 77 ] && st=SKIP; [ $rc -ne 0 ] && [ $rc -ne 77 ] && st="FAIL (exit $rc)"
  say "$st $name ($(($(date +%s) - t)) s)"
  return $rc
}

# the token shards sections 3, 5 and 6 train on
W=$(mktemp -d)
./fable tokenize --quiet --tokenizer "$FABLE_DATA/stories260K/tok512.model" --train-out "$W/t512.bin" \
  "$FABLE_DATA/tinystories/tinystories_v2_train_first10000lines.txt" >/dev/null 2>&1
./fable tokenize --quiet --tokenizer "$FABLE_DATA/tokenizer/tokenizer.model" --train-out "$W/l2.bin" \
  "$FABLE_DATA/tinystories/tinystories_v2_train_first10000lines.txt" >/dev/null 2>&1

if want 1; then
section "1. op-by-op cross-check, cuda against ref [$(elapsed) s]"
run engine_ops 150 env FABLE_TEST_ENGINES=cuda build/rel/tests/engine/test_engine_ops
grep -iE "worst|summary|^FAIL|fail" "$OUTDIR/engine_ops.log" | tail -30 | tee -a "$S"
fi

if want 2; then
section "2. whole update against the cpu engine; finite differences and PyTorch through cuda fp32 [$(elapsed) s]"
run engine_step 120 env FABLE_TEST_ENGINES=cuda build/rel/tests/engine/test_engine_step
grep -E "^  cuda|FAIL" "$OUTDIR/engine_step.log" | head -20 | tee -a "$S"
run gradcheck_cuda 120 env FABLE_ENGINE=cuda build/rel/tests/model/test_gradcheck
tail -1 "$OUTDIR/gradcheck_cuda.log" | tee -a "$S"
run torch_parity_cuda 120 env FABLE_ENGINE=cuda build/rel/tests/model/test_torch_parity
grep -E "AdamW: worst|checks" "$OUTDIR/torch_parity_cuda.log" | tee -a "$S"
fi

if want 3; then
section "3. 20 updates against the cpu engine's losses [$(elapsed) s]"
parity() { # preset shard batch seq
  local p=$1 shard=$2 B=$3 T=$4
  local common="--preset $p --train $shard --batch $B --seq $T --accum 2 --steps 20 --recipe llama2c --warmup 5 --lr 1e-3 --sampler sequential --eval-every 0 --quiet"
  timeout 200 ./fable train $common --engine cpu --threads 0 --out "$W/$p.cpu" --log "$W/$p.cpu.jsonl" >/dev/null 2>&1
  timeout 100 ./fable train $common --engine cuda --precision fp32 --out "$W/$p.f32" --log "$W/$p.f32.jsonl" >/dev/null 2>&1
  timeout 100 ./fable train $common --engine cuda --precision bf16 --out "$W/$p.b16" --log "$W/$p.b16.jsonl" >/dev/null 2>&1
  $PY - "$p" "$W/$p.cpu.jsonl" "$W/$p.f32.jsonl" "$W/$p.b16.jsonl" <<'PY' 2>&1 | tee -a "$S"
import json, sys
def losses(f):
    try: return [json.loads(l)["loss"] for l in open(f) if '"type":"step"' in l]
    except OSError: return []
p, c, f, b = sys.argv[1], losses(sys.argv[2]), losses(sys.argv[3]), losses(sys.argv[4])
if len(c) != 40 or len(f) != 40 or len(b) != 40:
    print(f"FAIL {p}: runs incomplete (cpu {len(c)}, cuda fp32 {len(f)}, cuda bf16 {len(b)} micro-steps)"); sys.exit(1)
rf = max(abs(x - y) / abs(y) for x, y in zip(f, c)); rb = max(abs(x - y) / abs(y) for x, y in zip(b, c))
ok = rf <= 1e-4 and rb <= 2e-2
print(f"{'PASS' if ok else 'FAIL'} {p} 20 updates x 2: cuda fp32 vs cpu worst loss rel {rf:.2e} (<= 1e-4), "
      f"cuda bf16 vs cpu {rb:.2e} (<= 2e-2); losses {c[0]:.4f} -> {c[-1]:.4f}")
PY
}
parity stories260K "$W/t512.bin" 16 256
parity stories15M "$W/l2.bin" 8 256
fi

if want 4; then
section "4. resume bit-exact on cuda (2N == N + resume + N; SIGKILL + resume) [$(elapsed) s]"
run resume_cuda_bf16 120 env FABLE_ENGINE=cuda bash tests/cli/train_resume.sh
run resume_cuda_fp32 120 env FABLE_ENGINE=cuda FABLE_PRECISION=fp32 bash tests/cli/train_resume.sh
# tuned products: each process must read the choices the first one made (the cache file)
run resume_cuda_bf16_tuned 120 env FABLE_ENGINE=cuda FABLE_CUDA_GEMM_TUNE=1 FABLE_CUDA_CACHE="$W/gemm-cache" \
  bash tests/cli/train_resume.sh
fi

if want 5; then
section "5. clear errors [$(elapsed) s]"
err() { # label, expected regex, command...
  local label=$1 re=$2; shift 2
  local msg; msg=$(timeout 60 "$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -Eq "$re" <<<"$msg"; then say "PASS $label: $(tail -1 <<<"$msg")"
  else say "FAIL $label (exit $rc): $(tail -2 <<<"$msg")"; fi
}
err "no GPU" "cannot run on this machine: no NVIDIA GPU|cannot reach a GPU" env CUDA_VISIBLE_DEVICES= ./fable train --engine cuda --preset stories260K --train "$W/t512.bin" --steps 1 --out "$W/e1"
err "activations do not fit" "needs .* GB of activations, but only .* GB of memory is available to the cuda engine" ./fable train --engine cuda --preset stories110M --train "$W/l2.bin" --batch 8192 --seq 1024 --steps 1 --out "$W/e2"
err "model does not fit" "parameters need .* GB .* but only .* GB of memory is available to the cuda engine" ./fable train --engine cuda --dim 16384 --hidden-dim 65536 --n-layers 48 --n-heads 128 --vocab 32000 --seq-len 256 --train "$W/l2.bin" --steps 1 --out "$W/e3"
err "GPU out of memory mid-way (a second process)" "out of GPU memory|GB of memory is available to the cuda engine" ./fable bench step --engine cuda --preset stories110M --batch 4096 --seq 1024 --steps 1 --warmup 0
fi

if want 6; then
section "6. greedy sampling on the GPU [$(elapsed) s]"
M=$FABLE_DATA/stories260K
./fable sample --engine cuda --precision fp32 --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --temperature 0 --steps 256 >"$W/g.txt" 2>"$OUTDIR/sample.log"
./fable sample --engine cpu --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --temperature 0 --steps 256 >"$W/c.txt" 2>/dev/null
if cmp -s "$W/g.txt" "$M/expected_t0.0_n256.txt" && cmp -s "$W/g.txt" "$W/c.txt"; then say "PASS greedy stories260K on cuda = run.c = cpu ($(grep 'tok/s' "$OUTDIR/sample.log"))"
else say "FAIL greedy stories260K on cuda differs: $(head -c 200 "$W/g.txt")"; fi
./fable train --preset stories15M --train "$W/l2.bin" --batch 8 --seq 256 --steps 30 --engine cuda --out "$W/s15" --quiet --eval-every 0 >/dev/null 2>&1
if [ -f "$W/s15/ckpt_00000030.bin" ]; then
  ./fable sample --engine cuda --precision fp32 --ckpt "$W/s15/ckpt_00000030.bin" --tokenizer "$FABLE_DATA/tokenizer/tokenizer.bin" --temperature 0 --steps 200 >"$W/g15.txt" 2>/dev/null
  ./fable sample --engine cpu --ckpt "$W/s15/ckpt_00000030.bin" --tokenizer "$FABLE_DATA/tokenizer/tokenizer.bin" --temperature 0 --steps 200 >"$W/c15.txt" 2>/dev/null
  cmp -s "$W/g15.txt" "$W/c15.txt" && say "PASS greedy stories15M (30 updates) on cuda = cpu" || say "FAIL greedy stories15M differs"
fi
fi

if want 11; then
section "11. the cuda probes (issue 18): a weight update inside a captured graph, a launch vs a graph replay [$(elapsed) s]"
run probe_checks 120 bash tests/cli/probe.sh
tail -3 "$OUTDIR/probe_checks.log" | tee -a "$S"
timeout 120 ./fable probe all --engine cuda --preset stories110M --seq 256 2>&1 | tee -a "$S"
fi

if want 7; then
section "7. fable bench step --engine cuda [$(elapsed) s]"
bench() { # preset B T [extra]
  timeout 120 ./fable bench step --engine cuda --preset "$1" --batch "$2" --seq "$3" --steps 10 --warmup 3 --json ${4:-} \
    >>"$OUTDIR/bench.jsonl" 2>>"$OUTDIR/bench.err" || say "FAIL bench $*: $(tail -1 "$OUTDIR/bench.err")"
}
: >"$OUTDIR/bench.jsonl"
for cfg in "stories110M 32 1024" "stories110M 128 256" "stories110M 1 256" "stories15M 32 1024" "stories15M 128 256" "stories15M 1 256"; do
  bench $cfg
done
bench stories110M 32 1024 "--precision fp32"
$PY - "$OUTDIR/bench.jsonl" <<'PY' | tee -a "$S"
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    print(f"fable {j['precision']} {j['dim']:4d}x{j['n_layers']:2d} {j['batch']:4d}x{j['seq']:<5d}: {j['ms_median']:8.2f} ms, "
          f"{j['tokens_per_s']:>11,.0f} tok/s, {j['gflops']/1e3:6.1f} TFLOP/s, MFU {j['mfu_pct']:5.1f}% | fwd {j['t_fwd']:.2f} "
          f"bwd {j['t_bwd']:.2f} dw {j['t_dw']:.2f} (wait {j['t_dw_wait']:.2f}) cls {j['t_cls']:.2f} opt {j['t_opt']:.2f} ms")
PY
fi

if want 8; then
section "8. PyTorch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null) on the same GPU [$(elapsed) s]"
: >"$OUTDIR/torch.jsonl"
for cfg in "stories110M 32 1024" "stories110M 128 256" "stories110M 1 256" "stories15M 32 1024" "stories15M 128 256" "stories15M 1 256"; do
  [ "${TORCH_EAGER:-1}" = 0 ] && break
  set -- $cfg
  timeout 60 $PY bench/torch_gpu.py --preset $1 --batch $2 --seq $3 --json >>"$OUTDIR/torch.jsonl" 2>>"$OUTDIR/torch.err" || say "FAIL torch eager $cfg"
done
IFS=, read -ra COMPILE_CFGS <<<"${TORCH_COMPILE_CFGS:-stories110M 32 1024}"
for cfg in "${COMPILE_CFGS[@]}"; do
  [ "$(elapsed)" -gt ${TORCH_COMPILE_DEADLINE:-380} ] && { say "(time: torch.compile of $cfg skipped)"; continue; }
  set -- $cfg
  timeout 150 $PY bench/torch_gpu.py --preset $1 --batch $2 --seq $3 --compile --json >>"$OUTDIR/torch.jsonl" 2>>"$OUTDIR/torch.err" || say "FAIL torch compile $cfg"
done
$PY - "$OUTDIR/torch.jsonl" <<'PY' | tee -a "$S"
import json, sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    print(f"torch {j['mode']:7s} {j['preset']:11s} {j['batch']:4d}x{j['seq']:<5d}: {j['ms_median']:8.2f} ms, {j['tokens_per_s']:>11,.0f} tok/s, "
          f"{j['tflops']:6.1f} TFLOP/s, MFU {j['mfu_pct_989']:5.1f}%")
PY
fi

if want 9; then
section "9. where the time goes: kernels alone, and the graph / dW-stream switches [$(elapsed) s]"
timeout 90 ./fable bench kernels --engine cuda --preset stories110M --batch 32 --seq 1024 --reps 5 2>&1 | tee -a "$S"
for sw in ${SWITCHES:-FABLE_CUDA_GEMM_TUNE=1 FABLE_CUDA_CLS_LOGITS=fp32 FABLE_CUDA_GRAPH=0 FABLE_CUDA_DW_STREAM=0}; do
  for cfg in "stories110M 1 256" "stories110M 32 1024"; do
    set -- $cfg
    r=$(env $sw timeout 60 ./fable bench step --engine cuda --preset $1 --batch $2 --seq $3 --steps 10 --warmup 3 --json 2>&1 | tail -1)
    say "$sw $cfg: $(echo "$r" | $PY -c 'import json,sys; j=json.loads(sys.stdin.read()); print(f"{j[\"ms_median\"]:.2f} ms, MFU {j[\"mfu_pct\"]:.1f}%")' 2>/dev/null || echo "$r")"
  done
done
fi

if want 10; then
section "10. device time per launch site (FABLE_CUDA_PROFILE=1: one stream, no graphs) [$(elapsed) s]"
IFS=, read -ra PCFGS <<<"${PROFILE_CFGS:-stories110M 32 1024,stories15M 32 1024}"
for cfg in "${PCFGS[@]}"; do
  set -- $cfg
  say "-- $cfg (5 steps; what came before the second synchronisation dropped):"
  FABLE_CUDA_PROFILE=1 timeout 90 ./fable bench step --engine cuda --preset $1 --batch $2 --seq $3 --steps 4 --warmup 1 \
    2>&1 >/dev/null | head -${PROFILE_ROWS:-40} | tee -a "$S"
done
say "-- the products again with FABLE_CUDA_GEMM_TUNE=1 (the fastest of cuBLASLt's candidates), stories110M 32 1024:"
FABLE_CUDA_GEMM_TUNE=1 FABLE_CUDA_PROFILE=1 timeout 90 ./fable bench step --engine cuda --preset stories110M --batch 32 \
  --seq 1024 --steps 4 --warmup 1 2>&1 >/dev/null | grep -E "gemm|profile" | tee -a "$S"
fi

rm -rf "$W"
say ""
say "done in $(elapsed) s"
