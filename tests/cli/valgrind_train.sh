#!/usr/bin/env bash
# A short training run is clean under valgrind memcheck (issue 20): tokenize, train with a
# validation set and samples, resume, eval and sample, each with no invalid access, no use of
# uninitialised values and no definitely lost memory. build/vg/fable (make valgrind) is built
# for x86-64-v3 at -O1: valgrind cannot run AVX-512, so OpenBLAS is held to its Haswell kernels
# too. Skips (exit 77) without valgrind or build/vg/fable.
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 77; }
[ -x build/vg/fable ] || { echo "build/vg/fable is missing (make valgrind)"; exit 77; }
source tests/cli/lib_train.sh
export OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 FABLE_PEAK_ITERS=40000
# fable executes itself again to set libgomp's spin count unless one is given (src/cli/main.c);
# give one, so that memcheck watches the process that does the work
export GOMP_SPINCOUNT=1000
VG="valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite"
vg() { # name, fable args...: runs under memcheck; any error fails the test
  local name=$1; shift
  $VG build/vg/fable "$@" >"$W/$name.out" 2>&1; local rc=$?
  [ $rc -eq 0 ] || { tail -40 "$W/$name.out"; fail "$name: exit $rc under valgrind"; }
  grep -q '^==[0-9]*==' "$W/$name.out" && { grep '^==' "$W/$name.out" | head -40; fail "$name: valgrind reported"; }
  return 0
}
TOKBIN=$DATA/stories260K/tok512.bin
run="$TINY --train $W/train.bin --val $W/val.bin --batch 2 --seq 32 --accum 2 --threads 1 --quiet --recipe llama2c --warmup 1"
vg train train $run --steps 3 --ckpt-every 2 --eval-every 2 --eval-batches 1 --sample-every 2 --sample-tokens 8 \
  --tokenizer "$TOKBIN" --out "$W/run" --log "$W/log.jsonl"
[ -f "$W/run/ckpt_00000003.bin" ] || fail "no checkpoint after training"
vg resume train --resume "$W/run" --train "$W/train.bin" --steps 5 --threads 1 --quiet --log "$W/log.jsonl"
[ -f "$W/run/ckpt_00000005.bin" ] || fail "no checkpoint after resume"
vg eval eval --ckpt "$W/run/ckpt_00000005.bin" --data "$W/val.bin" --batches 2 --threads 1
grep -q '^loss [0-9]' "$W/eval.out" || fail "eval printed no loss"
vg sample sample --ckpt "$W/run/ckpt_00000005.bin" --tokenizer "$TOKBIN" --steps 16 --seed 1 --threads 1
# an error path: a truncated checkpoint, refused without a leak
head -c 3000 "$W/run/ckpt_00000005.bin" >"$W/trunc.bin"
$VG build/vg/fable eval --ckpt "$W/trunc.bin" --data "$W/val.bin" >"$W/bad.out" 2>&1; rc=$?
[ $rc -eq 1 ] || { cat "$W/bad.out"; fail "truncated checkpoint: exit $rc (expected 1)"; }
grep -q '^==[0-9]*==' "$W/bad.out" && { cat "$W/bad.out"; fail "truncated checkpoint: valgrind reported"; }
echo ok
