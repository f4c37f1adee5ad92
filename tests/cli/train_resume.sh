#!/usr/bin/env bash
# Checkpoint resume is bit-for-bit: 2N updates straight == N updates + stop + resume + N,
# for losses and final weights; and a run killed with SIGKILL at an arbitrary moment
# resumes from its last (atomically written) checkpoint to the same final weights.
source tests/cli/lib_train.sh
common="$TINY --train $W/train.bin --recipe llama2c --batch 4 --seq 64 --accum 2 --steps 12 --warmup 3 --lr 3e-3 --eval-every 0 --threads 2 --quiet"
./fable train $common --out "$W/a" --log "$W/a.jsonl" || fail "straight run"
./fable train $common --out "$W/b" --log "$W/b.jsonl" --stop-after 6 || fail "first half"
[ -f "$W/b/ckpt_00000006.bin" ] || fail "no checkpoint after the first half"
./fable train --resume "$W/b" --train "$W/train.bin" --log "$W/b.jsonl" --threads 2 --quiet || fail "resume"
[ "$(losses "$W/a.jsonl" | wc -l)" -eq 24 ] || fail "expected 24 micro-step losses in the straight run"
diff <(losses "$W/a.jsonl") <(losses "$W/b.jsonl") >/dev/null || { diff <(losses "$W/a.jsonl") <(losses "$W/b.jsonl") | head; fail "losses differ after resume"; }
weights "$W/a/ckpt_00000012.bin" "$W/a.bin"; weights "$W/b/ckpt_00000012.bin" "$W/b.bin"
cmp -s "$W/a.bin" "$W/b.bin" || fail "final weights differ after resume"
# the checkpoint payload (weights + Adam moments) is identical too, beyond the header
cmp -s <(tail -c +2000 "$W/a/ckpt_00000012.bin" | head -c -8) <(tail -c +2000 "$W/b/ckpt_00000012.bin" | head -c -8) || fail "Adam state differs"
# SIGKILL mid-run, checkpoint every update, then resume
(./fable train $common --out "$W/c" --log "$W/c.jsonl" --ckpt-every 1 --keep 2 & pid=$!; 
 for i in $(seq 1 200); do [ -f "$W/c/ckpt_00000004.bin" ] && break; sleep 0.05; done; kill -9 $pid; wait $pid 2>/dev/null) 
ls "$W/c" | grep -q 'ckpt_' || fail "no checkpoint before the kill"
ls "$W/c" | grep -q '\.tmp\.' && echo "note: a temp file was left by the kill (expected, ignored)"
./fable train --resume "$W/c" --train "$W/train.bin" --threads 2 --quiet --keep 2 || fail "resume after kill"
weights "$W/c/ckpt_00000012.bin" "$W/c.bin"
cmp -s "$W/a.bin" "$W/c.bin" || fail "weights after kill+resume differ from the straight run"
# only the newest --keep checkpoints remain
[ "$(ls "$W/c" | grep -c '^ckpt_.*\.bin$')" -le 2 ] || fail "--keep 2 not honoured: $(ls "$W/c")"
# dropout: the masks follow (seed, update, micro-step, layer), so a resumed run is still the
# straight run bit for bit; the losses differ from the run without dropout (it is on); a
# resume that asks for another rate is refused
./fable train $common --dropout 0.2 --out "$W/d" --log "$W/d.jsonl" || fail "straight run with dropout"
./fable train $common --dropout 0.2 --out "$W/e" --log "$W/e.jsonl" --stop-after 6 || fail "first half with dropout"
./fable train --resume "$W/e" --dropout 0.3 --train "$W/train.bin" --threads 2 --quiet 2>"$W/err" && fail "resume with another dropout rate accepted"
grep -q "dropout" "$W/err" || fail "the refusal does not name --dropout: $(cat "$W/err")"
./fable train --resume "$W/e" --train "$W/train.bin" --log "$W/e.jsonl" --threads 2 --quiet || fail "resume with dropout"
diff <(losses "$W/d.jsonl") <(losses "$W/e.jsonl") >/dev/null || fail "losses differ after resume (dropout 0.2)"
weights "$W/d/ckpt_00000012.bin" "$W/d.bin"; weights "$W/e/ckpt_00000012.bin" "$W/e.bin"
cmp -s "$W/d.bin" "$W/e.bin" || fail "final weights differ after resume (dropout 0.2)"
diff <(losses "$W/a.jsonl") <(losses "$W/d.jsonl") >/dev/null && fail "--dropout 0.2 did not change the losses"
echo ok
