#!/usr/bin/env bash
# Runs each fuzz target for RUNS executions (default 10^6) at a 2 GiB RSS limit on a copy
# of its seed corpus, and prints one line per target: executions, wall time, corpus size,
# findings. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: fuzz/run_campaign.sh [target ...]   (RUNS=N to change the count; SANITIZER=none
# builds without AddressSanitizer: ~10 min instead of ~80 here, catching panics, aborts,
# leaks of the allocator's view, timeouts and OOM, not memory errors in unsafe code)
set -uo pipefail
cd "$(dirname "$0")"
RUNS="${RUNS:-1000000}"
TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/nucseg-fuzz-target}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(image_decode label_map monuseg_xml model_bundle export slide_reader tile_file)
# SKIP_BUILD=1 runs the binaries already built (a later edit of the crate would rebuild).
[ -n "${SKIP_BUILD:-}" ] || cargo +nightly fuzz build -O -s "${SANITIZER:-address}" --target-dir "$TARGET_DIR" || exit 1
BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/release"
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp -r "corpus/$t/." "$work/"
  seeds=$(ls "$work" | wc -l)
  log="$work.log"
  t0=$(date +%s)
  mkdir -p "artifacts/$t"
  "$BIN/$t" "$work" -artifact_prefix="artifacts/$t/" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -runs="$RUNS" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  echo "$t: rc $rc, ${execs:-?} executions in ${secs} s, peak RSS ${peak:-?} MB, corpus $seeds -> $(ls "$work" | wc -l)$(case $rc in 0) ;; 72) echo ", interrupted" ;; *) echo ", FINDING: see $log and fuzz/artifacts/$t" ;; esac)"
  rm -rf "$work"
done
