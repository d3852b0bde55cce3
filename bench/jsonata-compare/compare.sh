#!/usr/bin/env bash
# Runs the comparison recorded in BENCHMARKS.md ("JSONata engine choice"). A case that aborts
# jsonata-rs (stack overflow) or hangs it is counted as failed and the run resumes after it.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -q
bin=target/release/jsonata-compare
for engine in core rs; do
    log=$(mktemp)
    next=0
    while :; do
        timeout 60 "$bin" conformance "$engine" "$next" >>"$log" 2>/dev/null && break || true
        last=$(grep START "$log" | tail -1 | cut -d' ' -f1)
        echo "$last CRASH" >>"$log"
        next=$((last + 1))
    done
    total=$(grep -c START "$log")
    passed=$(grep -c " PASS" "$log")
    crashed=$(grep -c " CRASH" "$log" || true)
    echo "$engine: $passed of $total cases pass ($crashed aborted or hung the process)"
done
for expression in 'value * 1.8 + 32' \
    '{"temp": $round(value * 1.8 + 32, 1), "machine": machine.id, "at": $fromMillis(timestamp)}'; do
    echo "== $expression"
    for engine in core-vm core-tree rs; do
        "$bin" speed "$engine" "$expression" 300000
    done
    "$bin" speed core-tree "$expression" 3000000
done
