#!/usr/bin/env bash
# run.sh — the whole test suite on a fresh Debian bookworm machine (as root): installs what it needs
# (idempotently), builds the real X2Go session database fixture, builds every binary, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

tests/install-deps.sh
if [ -x tests/fixtures/x2go-farm.sh ]; then
  tests/fixtures/x2go-farm.sh
fi

export CARGO_TERM_COLOR=never
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads=2

echo "run.sh: suite finished in $(( $(date +%s) - start )) s"
