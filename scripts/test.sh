#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against throwaway servers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
# The server matrix the integration tests run on (tests/common/servers.rs):
# every server setup installed, unless WRAITH_TEST_SERVERS names some.
export WRAITH_TEST_SERVERS="${WRAITH_TEST_SERVERS:-all}"
cargo test --all-targets "$@"
