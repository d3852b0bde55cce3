#!/usr/bin/env bash
# Runs every test of Ironbridge on a fresh Debian machine: installs what the tests need
# (Mosquitto's clients, PostgreSQL, Chromium for the web console's tests, a Python virtual
# environment with paho-mqtt, pytest, pymodbus, asyncua and Playwright),
# checks formatting and lints, runs the Rust test suites (the admin API suite twice: SQLite and
# PostgreSQL) and the interoperability tests against the real binary. Exits non-zero on the
# first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# A CI run builds everything once: incremental compilation would only add a gigabyte of caches.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# Linkers die with SIGBUS, not a clear message, when the disk fills: say how much there was.
disk_report() { df -h . | awk 'NR == 2 { print "disk: " $4 " free of " $2 " on " $6 }'; }
step "Disk"
disk_report

step "System packages"
missing=()
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v socat >/dev/null || missing+=(socat)  # serial lines for Modbus RTU tests
# The web console's tests: Playwright drives Debian's Chromium (it cannot download its own).
command -v chromium >/dev/null || missing+=(chromium)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi

step "Python environment (.venv)"
if [ ! -x .venv/bin/pip ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# Always: a pinned version added to the requirements reaches existing environments too.
.venv/bin/pip install -q -r tests/interop/requirements.txt

step "Formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Architecture invariants (which crate and module may use which library)"
scripts/check-architecture.sh

step "Rust tests (SQLite)"
cargo test --workspace --locked

step "Admin API tests against PostgreSQL"
pg_url=$(scripts/start-postgres.sh 2>"${TMPDIR:-/tmp}/ironbridge-pg-dir")
pg_dir=$(cat "${TMPDIR:-/tmp}/ironbridge-pg-dir")
trap 'scripts/start-postgres.sh stop "$pg_dir"' EXIT
IRONBRIDGE_TEST_DATABASE_URL="$pg_url" cargo test -p admin-api --locked

step "Interoperability and whole-system tests (paho-mqtt, mosquitto clients, REST, the web console in Chromium) against the real binary"
cargo build -p gateway --locked
IRONBRIDGE_BIN="$PWD/target/debug/ironbridge" .venv/bin/pytest -q tests/interop

step "Disk after the build"
disk_report
du -sh target 2>/dev/null || true

step "Deployment files (compose schema, systemd unit, Helm values, YAML style)"
IRONBRIDGE_BIN="$PWD/target/debug/ironbridge" deploy/check.sh
