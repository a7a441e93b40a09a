#!/usr/bin/env bash
# Submits a cohort to Slurm: an array job with one task per manifest row, then a cohort
# summary job once all tasks ended (whatever their outcome: the table lists the finished
# slides). With --shards N SLIDE, instead splits one slide into N shard tasks and a merge.
#
#   deploy/slurm/submit_cohort.sh cohort.csv slides            # a cohort
#   deploy/slurm/submit_cohort.sh --shards 4 big.svs slides      # one large slide
#
# NUCSEG (the segment_slide binary) and NUCSEG_ARGS (extra options) pass through.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export NUCSEG="${NUCSEG:-$(command -v segment_slide || echo "$here/../../target/release/examples/segment_slide")}"
if [ "${1:-}" = "--shards" ]; then
  shards=$2 slide=$3 out=$4
  array=$(sbatch --parsable --array=0-$((shards - 1)) \
    --export=ALL,SLIDE="$slide",OUT="$out",SHARDS="$shards" "$here/shard_slide.sbatch")
  merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=nucseg-merge \
    --cpus-per-task=2 --mem=4G --output=nucseg-merge-%j.log \
    --wrap="\"$NUCSEG\" \"$slide\" --out \"$out\" --merge ${NUCSEG_ARGS:-}")
  echo "shards: job $array (${shards} tasks); merge: job $merge"
  exit 0
fi
manifest=$1 out=$2
rows=$(grep -v -e '^\s*#' -e '^\s*$' "$manifest" | tail -n +2 | wc -l)
[ "$rows" -gt 0 ] || { echo "error: $manifest: no slide rows" >&2; exit 1; }
array=$(sbatch --parsable --array=0-$((rows - 1)) \
  --export=ALL,MANIFEST="$manifest",OUT="$out" "$here/segment_cohort.sbatch")
summary=$(sbatch --parsable --dependency=afterany:"$array" --job-name=nucseg-cohort \
  --output=nucseg-cohort-%j.log --wrap="\"$NUCSEG\" --cohort-summary --out \"$out\"")
echo "slides: job $array (${rows} tasks); cohort table: job $summary → $out/cohort.csv"
