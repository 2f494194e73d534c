#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against throwaway servers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo test --all-targets "$@"
