#!/usr/bin/env bash
# The console's log page on a large journal: fills a journal through the real server (Wattmon
# blocks of 100 rows and signed gridX events from loadgen, and refused requests) until it
# holds BENCH_EVENTS events (default 1,000,000), then times `GET /api/log` (first page, a
# later page, filters) over HTTP with the admin token. Not a test: it prints the figures.
#
#   bench/log.sh        builds hookyard and loadgen (release) and runs
#   BENCH_PROFILE=dist bench/log.sh   with that Cargo profile's build instead
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${BENCH_EVENTS:-1000000}
runs=${BENCH_RUNS:-15}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

profile=${BENCH_PROFILE:-release}
cargo build --profile "$profile" --locked -p hookyard -p hookyard-bench
bin=$root/target/$profile
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
mkdir -p "$work/hookyard"
{ echo "listen = \"127.0.0.1:$port\""; echo "data_dir = \"data\""; echo "spec_dir = \"$root/spec\""
  echo "scripts_dir = \"$root/scripts\""; echo "[admin]"; echo "token = \"bench-admin\""
  echo "[journal]"; echo "max_age_days = 3650"; echo "max_size_mb = 100000"
  "$bin/loadgen" --print-config; } > "$work/hookyard/hookyard.toml"
(cd "$work/hookyard" && exec "$bin/hookyard" serve 2>"$work/hookyard.log") &
for _ in $(seq 1 500); do curl -fs -o /dev/null "$base/healthz" && break; sleep 0.01; done
db=$work/hookyard/data/.hookyard/journal.db
count() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM $1').fetchone()[0])" "$db"; }

"$bin/loadgen" --base "$base" --scenario gridx --seconds 3 --first 0 > /dev/null
for _ in $(seq 1 300); do  # refused: a forged signature each
  curl -s -o /dev/null -X POST -H 'X-Signature: sha512=00' --data '{}' "$base/gridx/events"
done
first=100000000
while [ "$(count events)" -lt "$target" ]; do
  "$bin/loadgen" --base "$base" --scenario wattmon --seconds 5 --first $first > /dev/null
  first=$((first + 100000000))
done
"$bin/loadgen" --base "$base" --scenario gridx --seconds 1 --first 900000000 > /dev/null
events=$(count events); requests=$(count requests); refused=$(count rejected)
echo "journal: $events events in $requests requests, $refused refused; $(du -m "$db" | cut -f1) MB"

# Median and worst of $runs calls, in ms.
timed() {
  for _ in $(seq 1 "$runs"); do
    curl -s -o /dev/null -w '%{time_total}\n' -H 'Authorization: Bearer bench-admin' "$base$1"
  done | sort -n | awk -v name="$1" '{ t[NR] = $1 * 1000 } END { printf "%-60s median %7.1f ms  max %7.1f ms\n", name, t[int((NR + 1) / 2)], t[NR] }'
}
next=$(curl -s -H 'Authorization: Bearer bench-admin' "$base/api/log?limit=50" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
deep=$next
for _ in $(seq 1 200); do  # 200 pages further on (10,000 entries)
  deep=$(curl -s -H 'Authorization: Bearer bench-admin' "$base/api/log?limit=50&before=$deep" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
done
key=$(curl -s -H 'Authorization: Bearer bench-admin' "$base/api/log?protocol=gridx&limit=1" | python3 -c 'import json,sys,urllib.parse; print(urllib.parse.quote(json.load(sys.stdin)["entries"][0]["key"][:20], safe=""))')
timed "/api/log"
timed "/api/log?limit=500"
timed "/api/log?before=$next"
timed "/api/log?before=$deep"
timed "/api/log?protocol=wattmon"
timed "/api/log?protocol=gridx"
timed "/api/log?status=rejected"
timed "/api/log?status=processed&since=$(($(date +%s) * 1000 - 60000))"
timed "/api/log?q=$key"
timed "/api/log?status=failed"
