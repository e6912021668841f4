#!/usr/bin/env bash
# The training half of the demo (examples/demo.sh runs it last): train a tiny GPT-2 on the cache demo.sh built,
# stop half way, resume from the checkpoint, evaluate, export to Hugging Face format, and generate with transformers.
# CPU only, a few minutes on 2 cores. Run it alone with: bash examples/demo_train.sh (after demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
TM=".venv/bin/tokenmill"
PY=".venv/bin/python"
OUT="${OUT:-demo-out}"
RUN="$OUT/runs/tiny"
TRAIN=("$TM" train --config examples/tiny.yaml --data "$OUT/cache" --run-dir "$RUN")
rm -rf "$RUN" "$OUT/hf-model"   # the story starts from scratch every time

echo "== 6. train a tiny GPT-2 from scratch on CPU: 150 of its 300 steps, then stop"
"${TRAIN[@]}" --max-steps 150

echo "== 7. resume from the last checkpoint (model, optimizer, schedule, RNG and data position) to step 300"
$PY - "$RUN" <<'PYEOF'
import json, sys
from tokenmill.train import latest_checkpoint
ckpt = latest_checkpoint(sys.argv[1])
data = json.loads((ckpt / "data-rank0.json").read_text())
print(f"{ckpt.name}: the loader is at epoch {data['epoch']}, {data['samples_consumed']} samples consumed; "
      "the resumed run reads exactly the batch an uninterrupted run would read next")
PYEOF
"${TRAIN[@]}" --resume

echo "== 8. evaluate the final checkpoint on the cache's validation split"
"${TRAIN[@]}" --evaluate
$PY - "$RUN" <<'PYEOF'
import sys
from tokenmill.train import read_metrics
train = [r for r in read_metrics(sys.argv[1]) if "loss" in r]
print(f"training loss: {train[0]['loss']:.2f} at step {train[0]['step']} -> {train[-1]['loss']:.2f} at step "
      f"{train[-1]['step']}; waiting for data: {100 * sum(r['data_wait'] for r in train) / sum(r['step_time'] for r in train):.2f}% of step time")
PYEOF

echo "== 9. export to a Hugging Face folder and plot the loss curves"
"${TRAIN[@]}" --export "$OUT/hf-model"
$TM plot "$RUN" -o "$OUT/loss.png"

echo "== 10. load the export with transformers alone and generate"
$PY - "$OUT/hf-model" <<'PYEOF'
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
prompt = "def __init__(self"
inputs = tokenizer(prompt, return_tensors="pt")
torch.manual_seed(0)
out = model.generate(**inputs, max_new_tokens=24, do_sample=True, top_k=20, temperature=0.8)
print(f"{type(model).__name__} from {path}:")
print("  " + repr(tokenizer.decode(out[0])))
PYEOF
