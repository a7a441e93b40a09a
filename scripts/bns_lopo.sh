#!/usr/bin/env bash
# The paper's second experiment (its Table 5) on Naylor's TNBC breast set: leave one patient
# out. For each of the 11 patients, the shipped Kumar model is fine-tuned on the other ten
# patients' images (STEPS steps, default 60, Macenko-normalized to the model's template), and
# `evaluate --fold-models` then scores the four setups with each patient's images segmented
# by the model that never saw them. Re-running skips the folds already trained.
# Usage: scripts/bns_lopo.sh [out-folder]   (STEPS=N, LR=x to change the recipe)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bns-folds}"
DATA="${TNBC:-../shared/data/tnbc}"
STEPS="${STEPS:-60}"
LR="${LR:-0.002}"
TEMPLATE=../shared/data/monuseg-kumar/images/TCGA-G9-6356-01Z-00-DX1.tif
cargo build --release --example train --example evaluate
mkdir -p "$OUT"
patients=$(ls "$DATA/images" | sed 's/_.*//' | sort -u)
for p in $patients; do
  fold="$OUT/$p"
  [ -f "$fold/model.safetensors" ] && { echo "patient $p: trained before"; continue; }
  data="$OUT/data-$p"
  rm -rf "$data"; mkdir -p "$data/images" "$data/masks"
  for f in "$DATA"/images/*; do
    name=$(basename "$f")
    [ "${name%%_*}" = "$p" ] && continue
    ln -s "$(realpath "$f")" "$data/images/$name"
    ln -s "$(realpath "$DATA/masks/$name")" "$data/masks/$name"
  done
  echo "patient $p: fine-tuning on $(ls "$data/images" | wc -l) images of the other patients"
  target/release/examples/train --data "$data" --init models/nucseg-default.safetensors \
    --normalize macenko --template "$TEMPLATE" --steps "$STEPS" --warmup 10 --lr "$LR" \
    --val-every 0 --checkpoint-every "$STEPS" --out "$fold" --overwrite
  rm -rf "$data"
done
target/release/examples/evaluate --setups all --data "$DATA" --fold-models "$OUT" \
  --csv "$OUT/bns_lopo.csv" --overwrite
