#!/usr/bin/env bash
# The Debian package, built and tried as a user would: `cargo deb --profile dist`, installed
# with `dpkg -i`, the installed binary run as the package's user against the packaged config
# (directly, as CI has no systemd running), asked for /healthz and sent one AI-on-the-edge
# reading with the credential it generated in its state directory, then stopped; and the
# installed unit rated by `systemd-analyze security` (at most 2.0). Installs cargo-deb and
# systemd when missing. Needs root (it installs the package). Fails on any failure.
#
#   tools/package.sh [DEB]     (with DEB: try that package file instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "tools/package.sh installs a package: run it as root" >&2; exit 1; }

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "== package: installing cargo-deb"
    cargo install cargo-deb --locked
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "== package: installing systemd (for systemd-analyze)"
    apt-get update -qq
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

deb=${1:-}
if [ -z "$deb" ]; then
    echo "== package: build (cargo deb --profile dist)"
    t0=$(date +%s)
    deb=$(nice -n 19 cargo deb --profile dist --locked | tail -n 1)
    echo "built $deb in $(( $(date +%s) - t0 )) s"
fi

echo "== package: install (dpkg -i)"
# A service the package started earlier (on a machine with systemd) holds the state directory.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop hookyard 2>/dev/null || true
fi
dpkg -i "$deb"
dpkg-query -W -f='${Conffiles}\n' hookyard | grep -q ' /etc/hookyard/hookyard.toml ' \
    || { echo "FAIL: /etc/hookyard/hookyard.toml is not a conffile" >&2; exit 1; }
stat -c '%U:%G %a' /var/lib/hookyard | grep -qx 'hookyard:hookyard 750' \
    || { echo "FAIL: /var/lib/hookyard is not the hookyard user's (0750)" >&2; exit 1; }

echo "== package: run the installed server as user hookyard"
config=/etc/hookyard/hookyard.toml
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_hookyard() { (cd /var/lib/hookyard && exec runuser -u hookyard -- env HOOKYARD_LISTEN="127.0.0.1:$port" "$@"); }
as_hookyard /usr/bin/hookyard check --config "$config"
log=$(mktemp)
(cd /var/lib/hookyard && exec runuser -u hookyard -- env HOOKYARD_LISTEN="127.0.0.1:$port" \
    /usr/bin/hookyard serve --config "$config") 2>"$log" &
server=$!
# runuser passes the SIGTERM on to the server and waits for it.
stop() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap 'stop; rm -f "$log"' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
as_hookyard /usr/bin/hookyard healthcheck --config "$config"
echo

key=$(python3 -c 'import sys, tomllib; print(next(iter(tomllib.load(open(sys.argv[1], "rb"))["protocols"]["ai-on-the-edge"]["api_keys"])))' \
    /var/lib/hookyard/credentials.toml)
stamp=$(date +%s)  # a new reading on every run (the same one again would be a duplicate)
reading="[{\"timestamp\":\"$(date -u -d "@$stamp" +%Y-%m-%dT%H:%M:%S+0000)\",\"timestampLong\":\"$stamp\",\"name\":\"main\",\"rawValue\":\"0345.4264\",\"value\":\"345.4264\",\"preValue\":\"345.4264\",\"rate\":\"0.000120\",\"changeAbsolute\":\"0.0006\",\"error\":\"no error\"}]"
reply=$(curl -sS -w ' %{http_code}' -H "APIKEY: $key" -H 'Content-Type: application/json' --data "$reading" \
    "http://127.0.0.1:$port/ai-on-the-edge/webhook")
echo "reply: $reply"
[[ "$reply" == *' 200' ]] || { echo "FAIL: the reading was not accepted" >&2; cat "$log" >&2; exit 1; }
grep -q "$stamp" /var/lib/hookyard/ai-on-the-edge/default/webhook_log.csv \
    || { echo "FAIL: the reading is not in /var/lib/hookyard/ai-on-the-edge/default/webhook_log.csv" >&2; exit 1; }
stop
grep -q 'hookyard stopped' "$log" || { echo "FAIL: the server did not stop cleanly" >&2; cat "$log" >&2; exit 1; }
echo "the installed server served /healthz and stored a reading as user hookyard, then stopped"

echo "== package: systemd-analyze security of the installed unit (at most 2.0)"
unit=/lib/systemd/system/hookyard.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/hookyard.service
exposure=$(systemd-analyze security --offline=true --no-pager "$unit" \
    | sed -n 's/.*Overall exposure level for hookyard.service: \([0-9.]*\).*/\1/p')
echo "exposure: ${exposure:-none}"
awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }' || { echo "FAIL: exposure above 2.0" >&2; exit 1; }
