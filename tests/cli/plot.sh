#!/usr/bin/env bash
# `fable plot`: loss curves of real `fable train` logs as a standalone SVG.
# - One run: a well-formed SVG with a train and a validation polyline whose points, mapped back
#   through the tick labels printed in the file, are the log's batch losses (per update) and eval
#   losses, to within the file's 0.01-pixel precision (read with Python's XML parser, no fable code).
# - Two runs overlaid with --labels, against tokens and on a log scale, and against wall time.
# - A resumed run whose log repeats updates (the run was resumed from an earlier checkpoint) is
#   drawn once per update, with the resumed values.
# - A live log's half-written last line is skipped; bad input is a clear error with a non-zero exit.
cd "$(dirname "$0")/../.." || exit 1
source tests/cli/lib_train.sh
PY=/usr/bin/python3

base="$TINY --train $W/train.bin --val $W/val.bin --batch 4 --seq 64 --accum 1 --eval-every 5 --eval-batches 2 --threads 2 --quiet"
./fable train $base --steps 20 --lr 3e-3 --out "$W/a" || fail "train a"
./fable train $base --steps 20 --lr 1e-3 --out "$W/b" || fail "train b"

# the checker: series of the SVG mapped back to data values through its ticks
cat >"$W/check.py" <<'PY'
import json, math, re, sys
import xml.etree.ElementTree as ET
svg, axis, log_y = sys.argv[1], sys.argv[2], sys.argv[3] == "log"
logs = sys.argv[4:]
root = ET.parse(svg).getroot()           # well-formed XML, or this raises
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg", root.tag
def val(s):
    m = {"k": 1e3, "M": 1e6, "G": 1e9}
    return float(s[:-1]) * m[s[-1]] if s[-1] in m else float(s)
xt = [(float(t.get("x")), val(t.text)) for t in root.iter(ns + "text") if t.get("class") == "xtick"]
yt = [(float(t.get("y")), val(t.text)) for t in root.iter(ns + "text") if t.get("class") == "ytick"]
assert len(xt) >= 3 and len(yt) >= 3, (xt, yt)
f = (lambda v: math.log10(v)) if log_y else (lambda v: v)
def unmap(ticks, pos, fn):
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    return fn(v0) + (pos - p0) / (p1 - p0) * (fn(v1) - fn(v0))
xpix = abs((xt[-1][1] - xt[0][1]) / (xt[-1][0] - xt[0][0]))
ypix = abs((f(yt[-1][1]) - f(yt[0][1])) / (yt[-1][0] - yt[0][0]))
series = [p for p in root.iter(ns + "polyline") if p.get("class") == "series"]
assert len(series) == 2 * len(logs), [s.get("data-label") for s in series]
for i, log in enumerate(logs):
    recs = [json.loads(l) for l in open(log)]
    train, val_ = {}, {}
    for r in recs:                       # later records of an update replace earlier ones (resume)
        if r["type"] == "start":
            R = r["resumed_at"]
            train = {u: v for u, v in train.items() if u <= R}
            val_ = {u: v for u, v in val_.items() if u <= R}
        elif r["type"] == "batch":
            train[r["batch"]] = (r, r["loss"])
        elif r["type"] == "eval":
            val_[r["step"]] = (r, r["val_loss"])
    tokens = {u: rv[0]["tokens"] for u, rv in train.items()}
    def x_of(u, r):
        return {"update": u, "tokens": tokens[u], "time": r.get("time_s")}[axis]
    for curve, s in ((train, series[2 * i]), (val_, series[2 * i + 1])):
        pts = [tuple(map(float, p.split(","))) for p in s.get("points").split()]
        want = [(x_of(u, r), y) for u, (r, y) in sorted(curve.items())]
        assert len(pts) == len(want), (s.get("data-label"), len(pts), len(want))
        for (px, py), (x, y) in zip(pts, want):
            ex = abs(unmap(xt, px, lambda v: v) - x) / xpix
            ey = abs(unmap(yt, py, f) - f(y)) / ypix
            assert ex < 0.011 and ey < 0.011, (s.get("data-label"), x, y, ex, ey)
print("ok", [s.get("data-label") for s in series])
PY

# one run
out=$(./fable plot "$W/a/train.jsonl" --out "$W/a.svg") || fail "plot one log"
grep -q "wrote $W/a.svg: 1 run, 20 training and 4 validation points" <<<"$out" || fail "plot said: $out"
$PY "$W/check.py" "$W/a.svg" update lin "$W/a/train.jsonl" || fail "one run: points do not map back to the log"
grep -q 'data-label="train"' "$W/a.svg" && grep -q 'data-label="validation"' "$W/a.svg" || fail "legend of one run"
# two runs, labelled, against tokens, log scale
./fable plot "$W/a/train.jsonl" "$W/b/train.jsonl" --labels "lr 3e-3,lr 1e-3" --x tokens --log-scale \
  --title "two <runs>" --out "$W/ab.svg" >/dev/null || fail "plot two logs"
$PY "$W/check.py" "$W/ab.svg" tokens log "$W/a/train.jsonl" "$W/b/train.jsonl" || fail "two runs, tokens, log scale"
grep -q 'data-label="lr 1e-3 val"' "$W/ab.svg" && grep -q 'two &lt;runs&gt;' "$W/ab.svg" || fail "labels or title of two runs"
# wall time
./fable plot "$W/a/train.jsonl" --x time --out "$W/t.svg" >/dev/null || fail "plot --x time"
$PY "$W/check.py" "$W/t.svg" time lin "$W/a/train.jsonl" || fail "time axis"
grep -q '>time (s)<' "$W/t.svg" || fail "time axis label"
if command -v rsvg-convert >/dev/null; then
  rsvg-convert -o "$W/ab.png" "$W/ab.svg" && [ -s "$W/ab.png" ] || fail "rsvg-convert cannot render the SVG"
fi

# a resume from an earlier checkpoint: updates 6..10 are in the log twice; the second time counts
./fable train $base --steps 10 --ckpt-every 5 --keep 5 --out "$W/r" || fail "train r"
rm "$W/r/ckpt_00000010.bin"
./fable train --resume "$W/r" --train "$W/train.bin" --steps 12 --threads 2 --quiet --lr 3e-3 2>/dev/null &&
  fail "a resume with a different --lr was accepted"
./fable train --resume "$W/r" --train "$W/train.bin" --steps 12 --threads 2 --quiet || fail "resume r"
[ "$(grep -c '"type":"batch"' "$W/r/train.jsonl")" = 17 ] || fail "expected 10 + 7 batch records"
./fable plot "$W/r/train.jsonl" --out "$W/r.svg" >/dev/null || fail "plot a resumed run"
$PY "$W/check.py" "$W/r.svg" update lin "$W/r/train.jsonl" || fail "resumed run"

# a live log: the last line half written
cp "$W/a/train.jsonl" "$W/live.jsonl"; printf '{"type":"batch","batch":21,"loss":1.2' >>"$W/live.jsonl"
./fable plot "$W/live.jsonl" --out "$W/live.svg" >/dev/null || fail "a half-written last line is not skipped"

# bad input: a clear message, exit 1
expect_err() { # regex, args...
  local re=$1; shift
  if ./fable plot "$@" >"$W/err" 2>&1; then fail "accepted: plot $*"; fi
  grep -Eq -- "$re" "$W/err" || fail "plot $*: message does not match /$re/: $(cat "$W/err")"
}
expect_err "$W/none.jsonl: cannot open the log" "$W/none.jsonl" --out "$W/x.svg"
head -c 3000 "$W/train.bin" >"$W/bin.jsonl"
expect_err "bin.jsonl:1: malformed JSON.*is this a .fable train. log" "$W/bin.jsonl" --out "$W/x.svg"
echo '[1, 2]' >"$W/array.jsonl"
expect_err "array.jsonl:1: not a telemetry record" "$W/array.jsonl" --out "$W/x.svg"
grep -v '"type":"batch"' "$W/a/train.jsonl" >"$W/nobatch.jsonl"
expect_err "nobatch.jsonl: no training records" "$W/nobatch.jsonl" --out "$W/x.svg"
sed '5s/.*/{"type":"batch","batch":3,,}/' "$W/a/train.jsonl" >"$W/broken.jsonl"
expect_err "broken.jsonl:5: .*malformed JSON" "$W/broken.jsonl" --out "$W/x.svg"
sed 's/,"time_s":[^,}]*//' "$W/a/train.jsonl" >"$W/old.jsonl"
./fable plot "$W/old.jsonl" --out "$W/old.svg" >/dev/null || fail "a log without time_s, by update"
expect_err "has no time_s .* use --x update" "$W/old.jsonl" --x time --out "$W/x.svg"
expect_err "writes SVG" "$W/a/train.jsonl" --out "$W/x.png"
expect_err "--labels has 1 label for 2 logs" "$W/a/train.jsonl" "$W/b/train.jsonl" --labels one --out "$W/x.svg"
expect_err "--x must be update, tokens or time" "$W/a/train.jsonl" --x steps --out "$W/x.svg"
expect_err "at least one log" --out "$W/x.svg"
expect_err "--out FILE.svg is required" "$W/a/train.jsonl"
[ -e "$W/x.svg" ] && fail "a failed plot left $W/x.svg"
echo ok
