#!/usr/bin/env bash
# The whole benchmark in one command: hookyard in every scenario, the HTTP-stack ceiling and
# adnanh/webhook, on this machine, in one run. Writes bench/results/{results.jsonl,table.md,latency.png}.
#
#   bench/run.sh            full run (10 s per scenario; BENCH_SECONDS, BENCH_CONCURRENCY override)
#   bench/run.sh --smoke    2 s per scenario (checks nothing was lost; no timing claims)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${BENCH_SECONDS:-10}
conc=${BENCH_CONCURRENCY:-64}
[ "${1:-}" = "--smoke" ] && secs=2
out=$root/bench/results
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The shipped build: the packages' dist profile (fat LTO), not the quicker-to-build release one.
cargo build --profile dist --locked -p hookyard -p hookyard-bench
bin=$root/target/dist
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 1 500); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "server did not start" >&2; return 1; }
record() { # name pid json
  echo "$3" | python3 -c "import json,sys; d=json.load(sys.stdin); d['name']='$1'; d['peak_rss_kb']=int('${4:-0}'); print(json.dumps(d))" >> "$results"
}

# --- hookyard -------------------------------------------------------------------------------
port=$(free_port)
mkdir -p "$work/hookyard"
{ echo "listen = \"127.0.0.1:$port\""; echo "data_dir = \"data\""; echo "spec_dir = \"$root/spec\""
  echo "scripts_dir = \"$root/scripts\""; echo "[journal]"; echo "max_age_days = 3650"
  "$bin/loadgen" --print-config; } > "$work/hookyard/hookyard.toml"
t0=$(date +%s%N)
(cd "$work/hookyard" && exec "$bin/hookyard" serve 2>"$work/hookyard.log") &
hy=$!
wait_up "http://127.0.0.1:$port/healthz"
startup_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 1
idle_kb=$(rss_kb $hy VmRSS)
echo "{\"name\":\"hookyard-idle\",\"startup_ms\":$startup_ms,\"idle_rss_kb\":$idle_kb}" >> "$results"
# Journal bytes per event of each scenario: after the server's checkpoint (1 s), what the
# scenario added to the journal (pages in use) over the events it added.
journal_bytes() { sleep 1.5; "$bin/journal-bytes" "$work/hookyard/data" --since "$work/journal-figures.json"; }
with() { python3 -c 'import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); print(json.dumps(a))' "$1" "$2"; }
journal_bytes >/dev/null
first=0
for scenario in gridx ai ai-new-connection wattmon wattsense; do
  json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario $scenario --concurrency "$conc" \
         --seconds "$secs" --first $first --verify "$work/hookyard/data")
  json=$(with "$json" "$(journal_bytes)")
  record "hookyard-$scenario" $hy "$json" "$(rss_kb $hy VmHWM)"
  first=$((first + 100000000))
done
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" --rate 5000 \
       --seconds "$secs" --first $first --verify "$work/hookyard/data")
record "hookyard-gridx-5000rps" $hy "$json" "$(rss_kb $hy VmHWM)"
kill -TERM $hy; wait $hy || true

# --- ceiling: the HTTP stack alone ----------------------------------------------------------
port=$(free_port)
"$bin/ceiling" "127.0.0.1:$port" & ce=$!
sleep 0.3
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" --seconds "$secs")
record "ceiling-gridx" $ce "$json" "$(rss_kb $ce VmHWM)"
kill $ce; wait $ce 2>/dev/null || true

# --- adnanh/webhook with an HMAC-SHA512 rule that appends the body to a file -----------------
if ! command -v webhook >/dev/null; then apt-get install -y -qq webhook >/dev/null; fi
port=$(free_port)
mkdir -p "$work/webhook"
printf '#!/bin/sh\nprintf "%%s\\n" "$1" >> %s/events.jsonl\n' "$work/webhook" > "$work/webhook/append.sh"
chmod +x "$work/webhook/append.sh"
cat > "$work/webhook/hooks.json" <<JSON
[{"id": "gridx", "execute-command": "$work/webhook/append.sh", "include-command-output-in-response": true,
  "pass-arguments-to-command": [{"source": "entire-payload"}],
  "trigger-rule": {"match": {"type": "payload-hmac-sha512", "secret": "bench-secret",
                             "parameter": {"source": "header", "name": "X-Signature"}}}}]
JSON
webhook -hooks "$work/webhook/hooks.json" -ip 127.0.0.1 -port "$port" >/dev/null 2>&1 & wh=$!
sleep 0.5
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --path /hooks/gridx --scenario gridx --concurrency "$conc" --seconds "$secs")
record "webhook-gridx" $wh "$json" "$(rss_kb $wh VmHWM)"
kill $wh; wait $wh 2>/dev/null || true

venv=$root/target/bench-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null \
  || { python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; }
"$venv/bin/python" "$root/bench/report.py" "$results" "$out"
