#!/usr/bin/env bash
# The cohort recipes on a real Slurm: installs Debian's slurm-wlm and munge, starts a
# one-node cluster on localhost, builds three small test slides from the Kumar training
# images, submits deploy/slurm/submit_cohort.sh over them (an array job + the cohort
# table) and one slide again as 2 shards + a merge job, and checks every output equals a
# single-process run of the same slide, byte for byte (decompressed GeoJSON, nuclei count).
#
#   sudo scripts/slurm_test.sh            # as root (it installs packages and starts daemons)
#
# Seen to work: Debian 12's slurm-wlm 22.05.8 with proctrack/linuxproc, task/none, no
# cgroups (2026-12-02: 3 slides as an array job, one as 2 shards + merge, all byte-identical
# to single-process runs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${SLURM_TEST_DIR:-/tmp/nucseg-slurm-test}
rm -rf "$work" && mkdir -p "$work"

if ! command -v slurmctld >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

cargo build --release --example segment_slide --example slide_mosaic
bin="$root/target/release/examples"
[ -x "$bin/segment_slide" ] || bin="${CARGO_TARGET_DIR:-$root/target}/release/examples"

# --- a one-node cluster -------------------------------------------------------------------
host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged --force" || munged --force
node=$(slurmd -C | head -n1)   # NodeName=<host> CPUs=… RealMemory=…
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=nucseg-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
$node State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
pkill -x slurmctld 2>/dev/null || true; pkill -x slurmd 2>/dev/null || true; sleep 1
slurmctld -c && slurmd
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
  sleep 1
done
sinfo

# --- three slides --------------------------------------------------------------------------
slides="$work/slides"
for k in 1 2 3; do
  "$bin/slide_mosaic" build --count "$k" --cols "$k" --margin 200 --out "$slides" --name "s$k" >/dev/null
done
printf 'slide,id\ns1.tif,one\ns2.svs,two\ns3.tif,three\n' > "$slides/cohort.csv"
export NUCSEG="$bin/segment_slide"
export NUCSEG_ARGS="--tta none"

wait_for() {  # job ids… : until none is pending or running
  while squeue -h -j "$1" 2>/dev/null | grep -q .; do sleep 2; done
}
cd "$work"   # Slurm writes the jobs' logs (nucseg-*.log) into the submitting folder
submitted=$("$root/deploy/slurm/submit_cohort.sh" "$slides/cohort.csv" "$work/cluster")
echo "$submitted"
jobs=$(echo "$submitted" | grep -oE 'job [0-9]+' | awk '{print $2}' | paste -sd,)
wait_for "$jobs"
sharded=$("$root/deploy/slurm/submit_cohort.sh" --shards 2 "$slides/s3.tif" "$work/sharded")
echo "$sharded"
wait_for "$(echo "$sharded" | grep -oE 'job [0-9]+' | awk '{print $2}' | paste -sd,)"

# --- the same slides in one process, and the comparison --------------------------------------
status=0
for pair in one:s1.tif two:s2.svs three:s3.tif; do
  id=${pair%%:*} file=${pair#*:}
  "$NUCSEG" "$slides/$file" --out "$work/single" --tta none >/dev/null
  stem=${file%.*}
  for other in "$work/cluster/$id" $([ "$id" = three ] && echo "$work/sharded/s3"); do
    if cmp -s <(gzip -dc "$work/single/$stem/nuclei.geojson.gz") <(gzip -dc "$other/nuclei.geojson.gz"); then
      echo "ok: $other equals the single-process run ($(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nuclei'])" "$other/summary.json") nuclei)"
    else
      echo "MISMATCH: $other differs from $work/single/$stem"; status=1
    fi
  done
done
cat "$work/cluster/cohort.csv"
[ "$(tail -n +2 "$work/cluster/cohort.csv" | wc -l)" -eq 3 ] || { echo "cohort table lacks slides"; status=1; }
exit $status
