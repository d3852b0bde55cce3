#!/usr/bin/env bash
# Checks the deployment files as far as this machine can without a container engine or helm
# (see deploy/README.md for what is not checked). Needs the test environment of
# scripts/test-all.sh (.venv with yamllint and check-jsonschema, Debian's mosquitto and
# systemd-analyze) and the debug binary. Exits non-zero on the first problem.
set -euo pipefail
cd "$(dirname "$0")"
venv=../.venv/bin
binary=${IRONBRIDGE_BIN:-../target/debug/ironbridge}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- YAML style (yamllint)"
"$venv/yamllint" -c .yamllint compose/compose.yaml helm/ironbridge/Chart.yaml helm/ironbridge/values.yaml

echo "-- compose file against the Compose specification's schema"
"$venv/check-jsonschema" --builtin-schema vendor.compose-spec compose/compose.yaml

echo "-- Mosquitto accepts the compose example's configuration"
mkdir -m 0777 "$work/mosquitto"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s#/mosquitto/data/#$work/mosquitto/#" -e "s#^listener 1883#listener $port 127.0.0.1#" \
  compose/mosquitto.conf > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!
for _ in $(seq 50); do
  if mosquitto_pub -p "$port" -t deploy/check -m ok 2>/dev/null; then break; fi
  sleep 0.1
done
mosquitto_pub -p "$port" -t deploy/check -m ok || { cat "$work/mosquitto.log"; exit 1; }
kill "$mosquitto_pid"

echo "-- systemd unit (systemd-analyze verify, offline security exposure <= 2.0)"
sed "s#/usr/local/bin/ironbridge#$(realpath "$binary")#" systemd/ironbridge.service > "$work/ironbridge.service"
systemd-analyze verify "$work/ironbridge.service"
exposure=$(systemd-analyze security --offline=true "$work/ironbridge.service" 2>&1 |
  sed -n 's/.*Overall exposure level for ironbridge.service: \([0-9.]*\).*/\1/p')
echo "exposure $exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" ||
  { echo "the unit's hardening got weaker: exposure $exposure"; exit 1; }

echo "-- Helm chart: every .Values path in the templates is defined in values.yaml"
"$venv/python" - helm/ironbridge <<'PY'
import pathlib, re, sys, yaml
chart = pathlib.Path(sys.argv[1])
values = yaml.safe_load((chart / "values.yaml").read_text())
problems = []
for template in sorted((chart / "templates").iterdir()):
    text = template.read_text()
    if text.count("{{") != text.count("}}"):
        problems.append(f"{template.name}: unbalanced {{{{ }}}}")
    for path in sorted(set(re.findall(r"\.Values((?:\.\w+)+)", text))):
        node = values
        for key in path.strip(".").split("."):
            if not isinstance(node, dict) or key not in node:
                problems.append(f"{template.name}: .Values{path} is not in values.yaml")
                break
            node = node[key]
chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text())
for key in ("apiVersion", "name", "version", "appVersion"):
    if key not in chart_meta:
        problems.append(f"Chart.yaml: no {key}")
print("\n".join(problems) or "ok")
sys.exit(1 if problems else 0)
PY

echo "-- Dockerfile: the health check command exists in the binary"
grep -q '"health", "--url"' docker/Dockerfile
"$binary" health --help > /dev/null

echo "deploy files: ok"
