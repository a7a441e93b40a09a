#!/usr/bin/env bash
# One prepared check for a lent GPU machine: which backend runs there, the Flex <-> GPU
# parity test (tests/backend_parity.rs), and timings of inference and training on the GPU
# beside the CPU. Writes everything to $OUT/gpu_check.txt (or ./gpu-check.txt).
#
# Binaries: built here with cargo when it is available, else taken from $NUCSEG_BIN (a
# folder with the release `segment`, `train` and `backend_parity-*` binaries built with
# `--features wgpu` on an x86-64 machine; see docs/reliability.md, "Backends").
#
# CUDA: Burn's CUDA backend links an LLVM bundle that its build script downloads; where
# that cannot be fetched the script says so and uses wgpu over Vulkan.
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT="${OUT:-.}/gpu_check.txt"
DATA="${NUCSEG_DATA:-../shared/data/monuseg-kumar}"
STEPS="${GPU_CHECK_STEPS:-20}"
: >"$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
timed() { # timed LABEL CMD... : wall time and peak RSS of CMD, its last line of output
  local label=$1; shift
  local t0; t0=$(date +%s.%N)
  local log; log=$(mktemp)
  /usr/bin/time -f "%M" -o "$log.rss" "$@" >"$log" 2>&1
  local rc=$?
  local t1; t1=$(date +%s.%N)
  say "$(printf '%-44s rc %d  wall %7.2f s  peak RSS %s MiB  | %s' "$label" "$rc" \
    "$(echo "$t1 - $t0" | bc)" "$(( $(tail -n1 "$log.rss" 2>/dev/null || echo 0) / 1024 ))" \
    "$(grep -v '^\s*$' "$log" | tail -n1)")"
  [ $rc -eq 0 ] || tail -n 20 "$log" | tee -a "$REPORT"
}

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
say "== machine"
say "$(uname -srm); $(nproc) cores"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /' | tee -a "$REPORT"
if ! ldconfig -p | grep -q libvulkan; then say "no Vulkan loader (libvulkan1) found: wgpu cannot run"; fi
say "Vulkan drivers: $(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ /usr/local/nvidia/share/vulkan/icd.d/ 2>/dev/null | tr '\n' ' ')"

if command -v cargo >/dev/null; then
  say "== build (cargo, release, features wgpu)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release --locked --features wgpu --examples 2>&1 | tail -n 3 | tee -a "$REPORT"
  cargo test --release --locked --features wgpu --test backend_parity --no-run 2>&1 | tail -n 3 | tee -a "$REPORT"
  if DOCS_RS= cargo build --release --locked --features cuda --lib >/dev/null 2>&1; then
    say "CUDA backend: builds here"
  else
    say "CUDA backend: does not build here (its LLVM bundle cannot be fetched); using wgpu"
  fi
  BIN="$CARGO_TARGET_DIR/release"
  SEGMENT="$BIN/examples/segment"; TRAIN="$BIN/examples/train"
  PARITY=$(ls -t "$BIN"/deps/backend_parity-* 2>/dev/null | grep -v '\.d$' | head -n1)
else
  BIN="${NUCSEG_BIN:?no cargo here: set NUCSEG_BIN to a folder of prebuilt binaries}"
  SEGMENT="$BIN/segment"; TRAIN="$BIN/train"
  PARITY=$(ls "$BIN"/backend_parity-* | head -n1)
  say "prebuilt binaries from $BIN; CUDA not built (wgpu over Vulkan)"
fi

say "== parity: Flex (CPU) against wgpu on this machine's adapter"
if [ -x "${PARITY:-}" ]; then
  "$PARITY" --nocapture --test-threads 1 2>&1 | grep -E 'max \|Δ\||detections|test result|panicked|FAILED' | tee -a "$REPORT"
else
  say "no parity binary"
fi

say "== inference (segment, shipped model, bundled 512² sample; 1000² Kumar image if present)"
SAMPLE=assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png
TMP=$(mktemp -d)
for dev in wgpu cpu; do
  timed "segment sample, no TTA, $dev" "$SEGMENT" "$SAMPLE" --tta none --device "$dev" --out "$TMP/s-$dev-none"
  timed "segment sample, paper TTA, $dev" "$SEGMENT" "$SAMPLE" --device "$dev" --out "$TMP/s-$dev-tta"
done
BIG=$(ls "$DATA"/images/*.tif 2>/dev/null | head -n1)
if [ -n "$BIG" ]; then
  for dev in wgpu cpu; do
    timed "segment 1000² image, no TTA, $dev" "$SEGMENT" "$BIG" --tta none --device "$dev" --out "$TMP/b-$dev-none"
  done
  timed "segment 1000² image, paper TTA, wgpu" "$SEGMENT" "$BIG" --device wgpu --out "$TMP/b-wgpu-tta"
fi

say "== training ($STEPS steps of the cpu-small preset, batch 2, 256² crops)"
if [ -d "$DATA/images" ]; then
  for dev in wgpu cpu; do
    timed "train $STEPS steps, $dev" "$TRAIN" --data "$DATA" --split train --steps "$STEPS" \
      --checkpoint-every "$STEPS" --val-every 0 --device "$dev" --out "$TMP/t-$dev"
  done
else
  say "no training data at $DATA (set NUCSEG_DATA): training not timed"
fi
rm -rf "$TMP"
say "== report in $REPORT"
