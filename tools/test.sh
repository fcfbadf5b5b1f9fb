#!/usr/bin/env bash
# The whole test suite: starts the services it uses (tools/services.sh), then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/services.sh
export HOOKYARD_TEST_POSTGRES="${HOOKYARD_TEST_POSTGRES:-postgres://hookyard_test:hookyard-test-only@127.0.0.1:5432/hookyard_test}"
export HOOKYARD_TEST_MQTT="${HOOKYARD_TEST_MQTT:-127.0.0.1:1883}"
exec cargo test --locked --workspace "$@"
