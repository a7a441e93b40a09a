#!/usr/bin/env bash
# Instruction count of inference, for spotting a speed regression without timing noise:
# valgrind's callgrind counts instructions, which repeat exactly for the same binary, input
# and settings whatever else the machine is doing. Runs the `speed` example on the bundled
# 512×512 sample (loading the model and one forward pass of the shipped model, detections
# ≥ 0.5 masked as in the recorded baselines, one thread) and prints the total and the
# functions with the most instructions. Takes about 15 minutes on the project's machine.
#
#   scripts/callgrind_forward.sh            # builds the release example first
#   SKIP_BUILD=1 scripts/callgrind_forward.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)"; exit 1; }
TARGET="${CARGO_TARGET_DIR:-target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --example speed
OUT=$(mktemp -d)
RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$TARGET/release/examples/speed" assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png \
  --runs 1 --gemm 64 --forward-only --min-score 0.5 > "$OUT/speed.txt" 2> "$OUT/valgrind.txt"
grep -E "^## Forward" "$OUT/speed.txt" || true
callgrind_annotate "$OUT/callgrind.out" > "$OUT/annotate.txt" 2>/dev/null
grep "PROGRAM TOTALS" "$OUT/annotate.txt"
grep -A 14 "file:function" "$OUT/annotate.txt" | tail -n +3
rm -rf "$OUT"
