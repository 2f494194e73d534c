#!/usr/bin/env bash
# The main job: a live online migration on a scratch PostgreSQL that wraith starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
cargo run --release --quiet -- demo "$@"
