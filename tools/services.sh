#!/usr/bin/env bash
# Installs (when missing) and starts the real services the test suite uses, on loopback
# with throwaway credentials: PostgreSQL (role/database hookyard_test) and Mosquitto
# (user hookyard_test). Also installs promtool (Debian package prometheus), which the metrics
# test runs; the Prometheus service that package sets up is stopped and disabled again; and
# Pebble (Debian package pebble: the ACME test CA and pebble-challtestsrv), which the HTTPS
# tests start themselves on loopback.
# systemd-analyze (Debian package systemd), which rates the packaged unit, and curl and openssl,
# with which a test runs the README's examples. Chromium and its WebDriver (Debian packages
# chromium and chromium-driver), in which the console's tests run headless.
# Idempotent; needs root (or sudo) to install and start them.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v curl >/dev/null 2>&1 || need+=(curl)        # the README's examples, run by a test
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)          # the console's browser tests
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# PostgreSQL: the Debian cluster, listening on 127.0.0.1:5432 only.
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if [ ! -d "/etc/postgresql/$version/main" ]; then
    as_root pg_createcluster "$version" main >/dev/null
fi
if ! as_root pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    as_root pg_ctlcluster "$version" main start -- -o "-c listen_addresses=127.0.0.1 -c max_connections=200"
fi
for _ in $(seq 50); do as_root runuser -u postgres -- pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
psql_root() { as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q "$@"; }
if [ "$(psql_root -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'hookyard_test'")" != 1 ]; then
    psql_root -c "CREATE ROLE hookyard_test LOGIN CREATEDB PASSWORD 'hookyard-test-only'"
fi
if [ "$(psql_root -tAc "SELECT 1 FROM pg_database WHERE datname = 'hookyard_test'")" != 1 ]; then
    psql_root -c "CREATE DATABASE hookyard_test OWNER hookyard_test"
fi

# Mosquitto: one loopback listener on 1883 with a password file.
dir=/tmp/hookyard-test-mosquitto
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    mkdir -p "$dir"
    rm -f "$dir/passwd"
    touch "$dir/passwd" && chmod 0700 "$dir/passwd"
    mosquitto_passwd -b "$dir/passwd" hookyard_test hookyard-test-only
    cat >"$dir/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous false
password_file $dir/passwd
persistence false
log_dest file $dir/mosquitto.log
CONF
    chown -R mosquitto "$dir" 2>/dev/null || true
    as_root mosquitto -d -c "$dir/mosquitto.conf"
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
fi
echo "== services: PostgreSQL $version on 127.0.0.1:5432, Mosquitto on 127.0.0.1:1883"
