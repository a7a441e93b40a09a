#!/usr/bin/env bash
# The k16spo chain (model card, "The k16spo chain's ship rule"): the shipped model's chain with
# three anchor sizes per octave. k16spo (4,600 steps from scratch on the sixteen Kumar training
# images), three cycles of 1,500 steps each from the one before (seeds 1, 2, 3), 1,000 steps of
# stochastic weight averaging from the third (lr 0.005, a snapshot every 100 steps), the mean
# of the ten snapshots (spo-swa10), then the ship rule's rows: CPM-15 NucSeg-P, CPM-15 NucSeg
# (TTA) and TNBC NucSeg-P at score thresholds 0.5 … 0.7.
#
# About 6 h on 2 CPU cores, so it runs over several sittings: re-running it skips the stages
# that finished and resumes the one in progress from its latest checkpoint (resuming is exact,
# docs/reproducing.md). `scripts/k16spo_chain.sh carry` stages in git what a later sitting
# needs to go on (the running stage's latest checkpoint, the SWA snapshots, the finished model
# the next stage starts from) and nothing else under runs/.
#
# Usage: scripts/k16spo_chain.sh [run|carry|status]   (RUNS=folder, default runs)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-runs}"
SHARED="${NUCSEG_SHARED:-../shared}"
K="$SHARED/data/monuseg-kumar"
TEMPLATE="$K/images/TCGA-G9-6356-01Z-00-DX1.tif"
STAGES=(k16spo spo-r1 spo-r2 spo-r3 spo-swa)
SWA_SNAPSHOTS=$(seq 100 100 1000)
BIN="${CARGO_TARGET_DIR:-target}/release/examples"

# The folder of the SWA stage's snapshot at step $1.
snapshot() { printf "$RUNS/spo-swa/checkpoints/step-%07d" "$1"; }

# The arguments of one stage (after the data and normalizer arguments every stage shares).
stage_args() {
  case "$1" in
    k16spo) echo "--preset cpu-small --steps 4600 --lr 0.01 --lr-steps 3600,4200 --mask-rois 32
                  --checkpoint-every 200 --scales-per-octave 3" ;;
    spo-r1|spo-r2|spo-r3) echo "--steps 1500 --lr 0.01 --warmup 100 --lr-steps 1000,1300
                  --mask-rois 32 --seed ${1#spo-r} --checkpoint-every 250" ;;
    spo-swa) echo "--steps 1000 --lr 0.005 --warmup 50 --mask-rois 32 --seed 7
                  --checkpoint-every 100 --keep-checkpoints-from 100" ;;
  esac
}

# The stage a stage starts from (its --init), if any.
previous() {
  case "$1" in
    spo-r1) echo k16spo ;; spo-r2) echo spo-r1 ;; spo-r3) echo spo-r2 ;; spo-swa) echo spo-r3 ;;
  esac
}

finished() { [ -f "$RUNS/$1/model.bpk" ]; }
started() { [ -f "$RUNS/$1/checkpoints/latest" ]; }

# The sixteen Kumar training images, and the four held-out ones these runs only name
# (`--val-every 0`), linked as docs/reproducing.md does.
link_data() {
  local d
  mkdir -p "$RUNS/data/ktrain/images" "$RUNS/data/ktrain/labels" \
    "$RUNS/data/kval4/images" "$RUNS/data/kval4/labels"
  for id in $(awk -F'\t' '$3=="train"{print $1}' "$K/index.tsv"); do
    case $id in TCGA-18-5592*|TCGA-A7-A13E*|TCGA-B0-5711*|TCGA-G9-6336*) d=kval4 ;; *) d= ;; esac
    for x in ktrain $d; do
      ln -sf "$(realpath "$K/images/$id.tif")" "$RUNS/data/$x/images/"
      ln -sf "$(realpath "$K/labels/$id.png")" "$RUNS/data/$x/labels/"
    done
  done
}

train_stage() {
  local s="$1" prev from
  prev=$(previous "$s")
  # shellcheck disable=SC2046
  set -- --data "$RUNS/data/ktrain" --val-data "$RUNS/data/kval4" --val-every 0 \
    --normalize macenko --template "$TEMPLATE" --out "$RUNS/$s" $(stage_args "$s")
  if started "$s"; then
    echo "$s: resuming from $(cat "$RUNS/$s/checkpoints/latest")"
    from=(--resume)
  else
    from=()
    if [ -n "$prev" ]; then from+=(--init "$RUNS/$prev/model.bpk"); fi
    if [ -d "$RUNS/$s" ]; then
      echo "$s: an earlier start left no checkpoint; starting it again"
      from+=(--overwrite)
    fi
    echo "$s: starting${prev:+ from $prev}"
  fi
  "$BIN"/train "$@" "${from[@]}"
}

run() {
  cargo build --release --example train --example average_weights --example sweep_postprocess
  link_data
  for s in "${STAGES[@]}"; do
    finished "$s" && { echo "$s: finished before"; continue; }
    train_stage "$s"
  done
  local avg="$RUNS/spo-swa10"
  if [ ! -f "$avg/model.bpk" ]; then
    # shellcheck disable=SC2046
    "$BIN"/average_weights \
      $(for n in $SWA_SNAPSHOTS; do echo "$(snapshot "$n")/model.bpk"; done) \
      --out "$avg"
  fi
  local clean="--kept-fractions 0.9 --largest-components true --min-areas 30 --absorb-shares 0.2
               --mask-box-scales 1.05 --min-scores 0.5,0.55,0.6,0.65,0.7"
  for v in "cpm15 none" "cpm15 paper" "tnbc none"; do
    set -- $v
    local rows="$RUNS/spo-swa10/rows-$1-$2.txt"
    [ -f "$rows" ] && { echo "$rows: scored before"; continue; }
    # shellcheck disable=SC2086
    "$BIN"/sweep_postprocess --data "$SHARED/data/$1" \
      --model "$avg/model.bpk" --tta "$2" $clean > "$rows.tmp"
    mv "$rows.tmp" "$rows"
    cat "$rows"
  done
}

status() {
  for s in "${STAGES[@]}"; do
    if finished "$s"; then echo "$s: finished"
    elif started "$s"; then echo "$s: at $(cat "$RUNS/$s/checkpoints/latest")"
    else echo "$s: not started"; fi
  done
}

# What a later sitting needs: the running stage's latest checkpoint (with the SWA stage, every
# snapshot kept so far, weights only but for the latest), the model the next stage starts
# from if it has not started yet, the snapshots once the SWA stage has finished, and the
# average once it exists (until its rows are scored).
swa_snapshots() {
  local n d
  for n in $SWA_SNAPSHOTS; do
    d=$(snapshot "$n")
    [ -d "$d" ] && echo "$d/model.bpk $d/model.json $d/model.normalizer.json"
  done
  return 0
}

carry() {
  local keep=() s latest prev
  for s in "${STAGES[@]}"; do
    finished "$s" && continue
    if started "$s"; then
      latest=$(cat "$RUNS/$s/checkpoints/latest")
      keep+=("$RUNS/$s/checkpoints/latest" "$RUNS/$s/checkpoints/$latest")
      [ "$s" = spo-swa ] && keep+=($(swa_snapshots))
    else
      prev=$(previous "$s")
      keep+=("$RUNS/$prev/model.bpk" "$RUNS/$prev/model.json" "$RUNS/$prev/model.normalizer.json")
    fi
    break
  done
  if [ ${#keep[@]} -eq 0 ]; then
    if [ -f "$RUNS/spo-swa10/model.bpk" ]; then
      keep+=("$RUNS"/spo-swa10/model.*)
    else
      keep+=($(swa_snapshots))
    fi
  fi
  git rm -r -q --cached --ignore-unmatch "$RUNS" > /dev/null
  git add -f "${keep[@]}"
  git status --short -- "$RUNS"
}

case "${1:-run}" in
  run) run ;;
  carry) carry ;;
  status) status ;;
  *) echo "usage: scripts/k16spo_chain.sh [run|carry|status]" >&2; exit 2 ;;
esac
