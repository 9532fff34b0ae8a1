#!/usr/bin/env bash
# bench/run.sh [x2gobroker-bench all options] — build in release and run every benchmark in one go:
# installs the reference broker from Debian if missing, compares it with ours and a bare "hello"
# server, then runs the synthetic farms. Prints the report and writes it to bench/results/latest.md.
# Measure on an otherwise idle machine (the load average is recorded with the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p x2gobroker-bench -p x2gobroker
mkdir -p bench/results
exec target/release/x2gobroker-bench all --output bench/results/latest.md "$@"
