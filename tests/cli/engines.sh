#!/usr/bin/env bash
# Engines from the command line:
# - `fable engines` lists ref, cpu and cuda with whether each can run here;
# - an unknown engine, and cuda on a machine without a GPU, fail with a message that says why;
# - where libfable_cuda.so was built, it loads (every symbol resolves) and only the GPU or its
#   driver is what is missing;
# - `fable train --engine ref` and `--engine cpu`, the same small run of 20 updates: every
#   micro-step's loss equal to 1e-5 relative (ref is the plain scalar oracle, cpu the fast
#   engine; they share no kernel code), and the gradient norms too;
# - a run resumed on another engine continues and says so.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib_train.sh

out=$(./fable engines) || fail "fable engines exited $?"
for e in ref cpu cuda; do grep -q "^$e " <<<"$out" || fail "fable engines does not list $e: $out"; done
grep -q "^cpu   available" <<<"$out" && grep -q "^ref   available" <<<"$out" || fail "cpu/ref not available: $out"
./fable engines --json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert {e["name"] for e in j} == {"ref","cpu","cuda"}' ||
  fail "fable engines --json"

base="$TINY --train $W/train.bin --batch 2 --seq 32 --accum 2 --lr 1e-3 --sampler sequential --quiet --eval-every 0"
if ./fable train $base --steps 20 --engine nosuch --out "$W/x" 2>"$W/err"; then fail "--engine nosuch succeeded"; fi
grep -q "unknown engine 'nosuch'" "$W/err" || fail "unknown engine: $(cat "$W/err")"

have_gpu=0
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && have_gpu=1
if [ $have_gpu = 0 ]; then
  if ./fable train $base --steps 20 --engine cuda --out "$W/x" 2>"$W/err"; then fail "--engine cuda succeeded without a GPU"; fi
  grep -q "engine 'cuda' cannot run on this machine: " "$W/err" || fail "--engine cuda: $(cat "$W/err")"
  grep -Eq "no NVIDIA GPU|driver|built without CUDA|cannot reach a GPU" "$W/err" || fail "--engine cuda, why: $(cat "$W/err")"
  if [ -f build/libfable_cuda.so ]; then
    grep -q "cannot be loaded" "$W/err" && fail "libfable_cuda.so was built but does not load: $(cat "$W/err")"
  fi
fi

# ref against cpu: the same 20 updates
./fable train $base --steps 20 --engine ref --out "$W/ref" --log "$W/ref.jsonl" || fail "train --engine ref"
./fable train $base --steps 20 --engine cpu --out "$W/cpu" --log "$W/cpu.jsonl" || fail "train --engine cpu"
/usr/bin/python3 - "$W/ref.jsonl" "$W/cpu.jsonl" <<'PY' || exit 1
import json, sys
def recs(p, t): return [json.loads(l) for l in open(p) if f'"type":"{t}"' in l]
a, b = recs(sys.argv[1], "step"), recs(sys.argv[2], "step")
assert len(a) == len(b) == 40, (len(a), len(b))
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
na, nb = recs(sys.argv[1], "batch"), recs(sys.argv[2], "batch")
worst_n = max(abs(x["grad_norm"] - y["grad_norm"]) / abs(x["grad_norm"]) for x, y in zip(na, nb))
print(f"ref vs cpu, 20 updates x 2 micro-steps: worst loss rel {worst:.2e}, worst grad-norm rel {worst_n:.2e}")
assert worst <= 1e-5 and worst_n <= 1e-5, "ref and cpu disagree"
assert a[0]["loss"] > a[-1]["loss"], "the loss did not fall"
start = recs(sys.argv[1], "start")[0]
assert start["engine"] == "ref" and recs(sys.argv[2], "start")[0]["engine"] == "cpu"
PY

# resume on another engine: continues, says so
./fable train $base --engine cpu --steps 10 --out "$W/mix" --log "$W/mix.jsonl" || fail "train 10 on cpu"
./fable train --resume "$W/mix" --train "$W/train.bin" --engine ref --steps 20 --quiet 2>"$W/err" || fail "resume on ref: $(cat "$W/err")"
grep -q "written by the cpu engine in fp32; resuming on ref in fp32" "$W/err" || fail "no note on the engine change: $(cat "$W/err")"
ls "$W/mix"/ckpt_00000020.bin >/dev/null || fail "the resumed run did not reach update 20"
echo "engines: all checks passed"
