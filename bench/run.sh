#!/usr/bin/env bash
# The whole benchmark in one command: hookyard in every scenario, the HTTP-stack ceiling and
# adnanh/webhook, on this machine, in one run. Writes bench/results/{results.jsonl,table.md,latency.png}.
#
#   bench/run.sh            full run (10 s per scenario; BENCH_SECONDS, BENCH_CONCURRENCY override)
#   bench/run.sh --smoke    2 s per scenario (checks nothing was lost; no timing claims)
#
# The history scenario: `fill` (bench/src/bin/fill.rs, hookyard's own journal code) writes
# BENCH_HISTORY processed gridX events (default 10,000,000; 20,000 in smoke mode) into a fresh
# data directory's journal, spread over the last 29 days; hookyard is started on it and
# measured: time to the first served request (polling /healthz), RSS after start-up (VmRSS)
# and its peak (VmHWM), gridX throughput (against hookyard-gridx on an empty journal in the same
# run), RSS 1 s after the load and 5 s after it (the load's blocking threads gone), the p99
# of a steady 5,000 requests/s after that (against hookyard-gridx-5000rps), and journal
# bytes per event. Its `[journal] max_size_mb` is
# raised so the size rule does not prune the history while it is measured. Its gridX load
# lasts BENCH_HISTORY_SECONDS (default: as the others): a minute or two takes it through a
# merge of the processed keys' runs (every ~1,000,000 keys), which a 10 s load does not reach.
# BENCH_ONLY="hookyard history" runs only those sections (hookyard, history, ceiling, webhook);
# BENCH_SCENARIOS="gridx gridx-3-tails" only those hookyard scenarios, in that order;
# BENCH_PROFILE=release (or dev) builds with that Cargo profile instead of dist, for trials.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${BENCH_SECONDS:-10}
history_secs=${BENCH_HISTORY_SECONDS:-$secs}
conc=${BENCH_CONCURRENCY:-64}
history=${BENCH_HISTORY:-10000000}
only=${BENCH_ONLY:-hookyard history ceiling webhook}
[ "${1:-}" = "--smoke" ] && { secs=2; history_secs=2; history=${BENCH_HISTORY:-20000}; }
runs() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
out=$root/bench/results
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The shipped build: the packages' dist profile (fat LTO), not the quicker-to-build release one.
profile=${BENCH_PROFILE:-dist}
cargo build --profile "$profile" --locked -p hookyard -p hookyard-bench --features hookyard-bench/fill
bin=$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 1 3000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "server did not start" >&2; return 1; }
record() { # name pid json
  echo "$3" | python3 -c "import json,sys; d=json.load(sys.stdin); d['name']='$1'; d['peak_rss_kb']=int('${4:-0}'); print(json.dumps(d))" >> "$results"
}

server_config() { # port journal-lines
  echo "listen = \"127.0.0.1:$1\""; echo "data_dir = \"data\""; echo "spec_dir = \"$root/spec\""
  echo "scripts_dir = \"$root/scripts\""; echo "[journal]"; echo "max_age_days = 3650"; printf '%b' "${2:-}"
  "$bin/loadgen" --print-config
}
journal_bytes() { du -cb "$1"/.hookyard/journal.db* | tail -1 | cut -f1; }

# The disk's own floor: an acknowledgement waits for one append + fdatasync of the journal's
# WAL, so the p99 targets are read against this disk's p50/p99/max of the same (2,000 appends
# of 4 KiB, each synced), measured in this run's work directory before and after the loads.
disk_probe() { # name
  python3 - "$work/disk-probe" "$1" >> "$results" <<'PY'
import json, os, sys, time
path, name = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
block, times = b"\0" * 4096, []
for _ in range(2000):
    t = time.perf_counter()
    os.write(fd, block)
    os.fdatasync(fd)
    times.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
times.sort()
at = lambda q: round(times[min(len(times) - 1, int(q * len(times)))], 2)
print(json.dumps({"name": name, "syncs": len(times), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(times[-1], 1)}))
PY
}
disk_probe disk-fsync-before

# --- hookyard -------------------------------------------------------------------------------
if runs hookyard; then
port=$(free_port)
mkdir -p "$work/hookyard"
{ server_config "$port"; printf '[admin]\ntoken = "bench-admin-token"\n'; } > "$work/hookyard/hookyard.toml"
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
scenario_bytes() { sleep 1.5; "$bin/journal-bytes" "$work/hookyard/data" --since "$work/journal-figures.json"; }
with() { python3 -c 'import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); print(json.dumps(a))' "$1" "$2"; }
scenario_bytes >/dev/null
first=0
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# One load of a loadgen scenario against the running server, with the server's CPU seconds.
load() { # scenario [loadgen flags...]
  local scenario=$1 before; shift
  before=$(cpu_s $hy)
  json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario "$scenario" --concurrency "$conc" "$@" \
         --seconds "$secs" --first $first --verify "$work/hookyard/data")
  json=$(with "$json" "{\"server_cpu_s\": $(python3 -c "print(round($(cpu_s $hy) - $before, 2))")}")
  first=$((first + 100000000))
}
# The console's cost: gridX again with three browsers' worth of live-log tails (SSE) reading
# every message, against hookyard-gridx; the tails' own CPU (they share the cores) is recorded.
with_tails() {
  local tails=()
  for _ in 1 2 3; do
    curl -sN -H "Authorization: Bearer bench-admin-token" "http://127.0.0.1:$port/api/log/stream" > /dev/null &
    tails+=($!)
  done
  sleep 0.5
  load gridx
  local tail_cpu=0 t
  for t in "${tails[@]}"; do tail_cpu=$(python3 -c "print(round($tail_cpu + $(cpu_s "$t"), 2))"); done
  kill "${tails[@]}" 2>/dev/null || true
  json=$(with "$json" "{\"tails_cpu_s\": $tail_cpu}")
}
# BENCH_SCENARIOS picks and orders them (repeats allowed, e.g. "gridx gridx-3-tails gridx gridx-3-tails").
for scenario in ${BENCH_SCENARIOS:-gridx ai ai-new-connection wattmon wattsense gridx-3-tails gridx-5000rps}; do
  case $scenario in
  gridx-3-tails) with_tails ;;
  gridx-5000rps) load gridx --rate 5000 ;;
  *) load "$scenario"; json=$(with "$json" "$(scenario_bytes)") ;;
  esac
  record "hookyard-$scenario" $hy "$json" "$(rss_kb $hy VmHWM)"
done
kill -TERM $hy; wait $hy || true
fi

# --- history: hookyard restarted on a journal of $history events ----------------------------
if runs history; then
port=$(free_port)
mkdir -p "$work/history"
server_config "$port" 'max_size_mb = 1000000\n' > "$work/history/hookyard.toml"
filled=$("$bin/fill" --data "$work/history/data" --events "$history")
filled_bytes=$(journal_bytes "$work/history/data")
# The fill leaves gigabytes of dirty pages; written back while the server runs, they held its
# first commits' fsyncs for up to seconds (a max of 2.5 s in one run). A restarted server does
# not meet another program's writeback, so it is flushed before the start-up is timed.
sync
t0=$(date +%s%N)
(cd "$work/history" && exec "$bin/hookyard" serve 2>"$work/history.log") &
hy=$!
wait_up "http://127.0.0.1:$port/healthz"
startup_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 1
started_kb=$(rss_kb $hy VmRSS); started_peak_kb=$(rss_kb $hy VmHWM)
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" \
       --seconds "$history_secs" --first 1000000000000 --verify "$work/history/data")
record "hookyard-history-gridx" $hy "$json" "$(rss_kb $hy VmHWM)"
sleep 1
after_kb=$(rss_kb $hy VmRSS); peak_kb=$(rss_kb $hy VmHWM)
# Once the load's blocking threads have retired (2 idle seconds, cli::server_runtime): what
# the server holds while it waits for the next burst.
sleep 4
settled_kb=$(rss_kb $hy VmRSS)
# The latency target is set at a steady 5,000 requests/s with the history journaled, as the
# empty journal's gridx-5000rps.
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" --rate 5000 \
       --seconds "$history_secs" --first 1100000000000 --verify "$work/history/data")
record "hookyard-history-gridx-5000rps" $hy "$json" "$(rss_kb $hy VmHWM)"
kill -TERM $hy; wait $hy || true
echo "$filled" | python3 -c "import json,sys; f=json.load(sys.stdin); print(json.dumps({'name':'hookyard-history',
  'events':f['events'],'fill_seconds':f['seconds'],'startup_ms':$startup_ms,'started_rss_kb':$started_kb,
  'started_peak_rss_kb':$started_peak_kb,'after_load_rss_kb':$after_kb,'settled_rss_kb':$settled_kb,'peak_rss_kb':$peak_kb,
  'journal_bytes_per_event':round($filled_bytes/max(f['events'],1),1)}))" >> "$results"
fi

# --- ceiling: the HTTP stack alone ----------------------------------------------------------
if runs ceiling; then
port=$(free_port)
"$bin/ceiling" "127.0.0.1:$port" & ce=$!
sleep 0.3
json=$("$bin/loadgen" --base "http://127.0.0.1:$port" --scenario gridx --concurrency "$conc" --seconds "$secs")
record "ceiling-gridx" $ce "$json" "$(rss_kb $ce VmHWM)"
kill $ce; wait $ce 2>/dev/null || true
fi

# --- adnanh/webhook with an HMAC-SHA512 rule that appends the body to a file -----------------
if runs webhook; then
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
fi

disk_probe disk-fsync-after

venv=$root/target/bench-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null \
  || { python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; }
"$venv/bin/python" "$root/bench/report.py" "$results" "$out"
