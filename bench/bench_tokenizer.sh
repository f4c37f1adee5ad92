#!/usr/bin/env bash
# Tokenizer speed: `fable encode` vs sentencepiece's `spm_encode` on the same text, single
# thread, same model; prints MB/s for both and the ratio, and checks the ids are identical.
# Then (if the machine has more cores) fable's throughput with --threads 1, 2, 4, ... .
#
#   bash bench/bench_tokenizer.sh [MODEL] [TEXT]
#
# MODEL defaults to ../shared/data/tokenizer/tokenizer.model (Llama-2); TEXT defaults to the
# TinyStories text files of ../shared/data with one story per line (~5.5 MB). Each timing is
# the best of 3 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FABLE_DATA:-$(cd .. && pwd)/shared/data}"
MODEL="${1:-$DATA/tokenizer/tokenizer.model}"
TEXT="${2:-}"
[ -x ./fable ] || make -j2 fable >/dev/null
command -v spm_encode >/dev/null || { echo "spm_encode not found (apt-get install sentencepiece)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$TEXT" ]; then
  # one story per line: the .txt files' stories (newlines inside a story become spaces)
  # and the JSON files' strings, via python3 if available, else the .txt files only
  TEXT="$tmp/stories.txt"
  for f in "$DATA"/tinystories/*.txt; do
    awk 'BEGIN{RS="<\\|endoftext\\|>"} {gsub(/\n/," "); sub(/^ +/,""); sub(/ +$/,""); if (length($0)) print}' "$f"
  done > "$TEXT"
  if command -v python3 >/dev/null; then
    python3 - "$DATA"/tinystories/*.json >> "$TEXT" <<'PY'
import json, sys
for p in sys.argv[1:]:
    d = json.load(open(p, encoding="utf-8"))
    if isinstance(d, dict): d = d["texts"]
    for s in d:
        if isinstance(s, dict): s = s.get("story", s.get("text"))
        print(" ".join(s.split("\n")).strip())
PY
  fi
fi
bytes=$(stat -c %s "$TEXT")
# best of 3: prints "wall_seconds cpu_seconds" (CPU = user + sys, less sensitive to other
# processes sharing the machine than the wall time)
best() {
  local bw=999999 bc=999999
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %U %S" -o "$tmp/time" "$@" > "$tmp/out"
    read -r w u s < "$tmp/time"
    bw=$(awk -v a="$w" -v b="$bw" 'BEGIN{print (a<b)?a:b}')
    bc=$(awk -v a="$u" -v c="$s" -v b="$bc" 'BEGIN{d=a+c; print (d<b)?d:b}')
  done
  echo "$bw $bc"
}
export OMP_NUM_THREADS=1
read -r w_spm c_spm <<< "$(best spm_encode --model "$MODEL" --output_format=id --input "$TEXT")"
cp "$tmp/out" "$tmp/spm.ids"
read -r w_fab c_fab <<< "$(best ./fable encode --tokenizer "$MODEL" --input "$TEXT")"
if cmp -s "$tmp/out" "$tmp/spm.ids"; then same="identical ids"; else same="IDS DIFFER"; fi
lines=$(wc -l < "$TEXT")
ntok=$(wc -w < "$tmp/spm.ids")
echo "model: $MODEL"
echo "text:  $TEXT ($bytes bytes, $lines lines, $ntok tokens; $same)"
echo "single thread, best of 3 (wall clock; CPU = user+sys), process start and model load included:"
awk -v b="$bytes" -v s="$w_spm" -v cs="$c_spm" -v f="$w_fab" -v cf="$c_fab" 'BEGIN{
  printf "spm_encode   %7.3f s wall %7.2f MB/s   %7.3f s CPU %7.2f MB/s\n", s, b/s/1e6, cs, b/cs/1e6;
  printf "fable encode %7.3f s wall %7.2f MB/s   %7.3f s CPU %7.2f MB/s\n", f, b/f/1e6, cf, b/cf/1e6;
  printf "ratio fable/spm_encode: %.2fx (wall), %.2fx (CPU)\n", s/f, cs/cf }'
ncores=$(getconf _NPROCESSORS_ONLN)
if [ "$ncores" -gt 1 ]; then
  echo "threads ($ncores cores; wall-clock speed-up is only meaningful on an otherwise idle machine):"
  # bigger input for the scaling run so that thread start-up does not dominate
  for _ in 1 2 3 4; do cat "$TEXT"; done > "$tmp/big.txt"
  bb=$(stat -c %s "$tmp/big.txt")
  t1=""
  for th in 1 2 4 8 16 32; do
    [ "$th" -le "$ncores" ] || break
    read -r t c <<< "$(OMP_NUM_THREADS=$th best ./fable encode --tokenizer "$MODEL" --input "$tmp/big.txt" --threads "$th")"
    [ -n "$t1" ] || t1=$t
    awk -v b="$bb" -v t="$t" -v t1="$t1" -v th="$th" 'BEGIN{printf "fable encode --threads %-2d %7.3f s wall %8.2f MB/s  speed-up %.2fx\n", th, t, b/t/1e6, t1/t}'
  done
fi
