#!/usr/bin/env bash
# Benchmarks Ironbridge's broker against Debian's Mosquitto and rumqttd (installed from crates.io
# into target/bench-tools on first use). Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null || { echo "install Debian's mosquitto first (apt-get install mosquitto)"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p gateway -p bench
exec target/release/ironbridge-bench broker "$@"
