#!/usr/bin/env bash
# The whole story on a fresh machine, offline, on CPU: corpus -> tokenizer -> cache -> batches (-> training).
set -euo pipefail
cd "$(dirname "$0")/.."
TM=".venv/bin/tokenmill"
PY=".venv/bin/python"
OUT="demo-out"
mkdir -p "$OUT"

echo "== 1. a real local corpus: the Python standard library's .py files, one JSONL record per file"
[ -d "$OUT/corpus" ] || $PY examples/make_corpus.py "$OUT/corpus" --shards 4 --gzip

echo "== 2. train a byte-level BPE on it"
[ -f "$OUT/tokenizer.json" ] || $TM tokenizer train "$OUT/corpus/stdlib-{000..003}.jsonl.gz" --vocab-size 8000 --output "$OUT/tokenizer.json"

echo "== 3. prepare a Lance token cache (run it twice: the second run has nothing to do)"
$TM prepare "$OUT/corpus/*.jsonl.gz" --tokenizer "$OUT/tokenizer.json" --output "$OUT/cache" --validation 0.02 --seed 0
$TM prepare "$OUT/corpus/*.jsonl.gz" --tokenizer "$OUT/tokenizer.json" --output "$OUT/cache" --validation 0.02 --seed 0

echo "== 4. what is in it"
$TM inspect "$OUT/cache" --plot "$OUT/lengths.png"

if $TM batches --help >/dev/null 2>&1; then
  echo "== 5. the first training batch, decoded, then digests of a sharded, resumable stream"
  $TM batches "$OUT/cache" --seq-len 64 --batch-size 2 --steps 1 --decode
  $TM batches "$OUT/cache" --seq-len 1024 --batch-size 8 --steps 3 --digest --save-state "$OUT/state.json"
  $TM batches "$OUT/cache" --seq-len 1024 --batch-size 8 --steps 200 --json
fi

if [ -f examples/demo_train.sh ]; then
  bash examples/demo_train.sh
fi
echo "== done: everything is under $OUT/"
