#!/usr/bin/env bash
# The one command for the GPU machine (repository root as cwd, $OUT the folder that comes back):
#     bash tools/train_recall_model/run_device.sh
# Tokenizer + held-out sets (~10 s), training (TRAIN_MINUTES, default 7, torch.compile warm-up included),
# export, and the torch-side evaluation; about 8.5 minutes in all. Writes into $OUT: recall.gguf, recall_tok.model,
# heldout_d{10,30,60}.jsonl, train_log.txt, eval.json (model.pt stays in the scratch folder).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:?set OUT to the output folder}"
WORK="${WORK:-/tmp/recall_work}"
MINUTES="${TRAIN_MINUTES:-7}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
echo "== $(date -u +%T) data + tokenizer"
"$PY" "$HERE/data.py" --out "$OUT" --tokenizer-seed 1 --heldout-seed 1000003 --vocab 4096 --cases 100
echo "== $(date -u +%T) training for $MINUTES minutes"
"$PY" "$HERE/train.py" --tokenizer "$OUT/recall_tok.model" --out "$WORK" --minutes "$MINUTES" --seed 1234 \
    --heldout "$OUT/heldout_d10.jsonl" "$OUT/heldout_d30.jsonl" "$OUT/heldout_d60.jsonl" "$@"
cp "$WORK/train_log.txt" "$WORK/eval.json" "$OUT/"
echo "== $(date -u +%T) export"
"$PY" "$HERE/export_gguf.py" --checkpoint "$WORK/model.pt" --tokenizer "$OUT/recall_tok.model" \
    --out "$WORK/recall.gguf"
# The device tool returns files of at most 16 MiB: the GGUF comes back in parts (cat recall.gguf.part* > recall.gguf).
split -b 12M -d "$WORK/recall.gguf" "$OUT/recall.gguf.part"
sha256sum "$WORK/recall.gguf"
rm -f "$OUT/recall_tok.vocab"
echo "== done in $(( $(date +%s) - start )) s"
cat "$OUT/eval.json"
