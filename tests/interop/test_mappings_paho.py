"""Mappings in the real binary, driven the way an operator and a plant client would: the
commissioning file installed over REST, paho publishing and subscribing over MQTT with a
password, and a pymodbus server as the device a mapping writes to."""

import json
import time

from conftest import free_port
from test_modbus_pymodbus import PymodbusServer, watch
# `gw`: a module-scoped gateway with the embedded defaults (anonymous MQTT off).
from test_system import Client, api, example, gw, login  # noqa: F401


def messages_on(messages, topic, wait=1.0):
    """Every payload on `topic` within `wait` seconds."""
    found, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            got_topic, payload = messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        if got_topic == topic:
            found.append(payload)
    return found


def test_unit_conversion_mapping_converts_and_writes_to_a_pymodbus_device(gw):
    plc = PymodbusServer(free_port())
    try:
        token = login(gw)
        file = example("unit-conversion.yml")
        status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": file, "parameters": {"plcPort": plc.port}})
        assert status == 201 and body["state"] == "enabled", body
        service = body["id"]
        watcher, messages = watch(gw, f"services/{service}/#")

        # A sensor nobody configured by name: the wildcard picks the output topic.
        sensor = Client(gw, "admin", "interop-admin-password")
        sensor.publish(f"services/{service}/sensors/kiln7/celsius", json.dumps({"timestamp": 1, "value": 37.5}))
        converted = messages_on(messages, f"services/{service}/sensors/kiln7/fahrenheit")
        assert converted == [{"timestamp": 1, "value": 99.5, "unit": "°F", "sensor": "kiln7"}]

        # 212 °F is 100 °C: 1000 tenths land in holding register 20 of the pymodbus server.
        sensor.publish(f"services/{service}/setpoint/fahrenheit", json.dumps({"value": 212}))
        answers = messages_on(messages, f"services/{service}/setpoint/res", wait=2.0)
        assert answers and answers[0]["result"]["value"] == 1000, answers
        assert plc.get(3, 20, 1) == [1000]

        status, body = api(gw, "GET", f"/api/services/{service}/status", token)
        assert status == 200 and not body["deviated"], body
        sensor.close()
        watcher.loop_stop()
        api(gw, "DELETE", f"/api/services/{service}", token)
    finally:
        plc.stop()


def test_a_bad_expression_is_refused_with_its_line_and_column(gw):
    token = login(gw)
    file = """
metadata: {name: Broken Rules}
resources:
  scale:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {topic: in/+sensor}
          rules:
            - transform: {expression: '{"v": value *}'}
          publish: {topic: 'out/{sensor}'}
"""
    status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": file})
    assert status == 422, body
    [problem] = body["error"]["details"]["diagnostics"]
    assert problem["path"] == "resources.scale.properties.mappings[0].rules[0].transform.expression"
    assert problem["message"].startswith("not a valid JSONata expression")
    assert (problem["line"], problem["column"]) == (10, 39)
    status, body = api(gw, "GET", "/api/services", token)
    assert all(s["id"] != "brokenrules" for s in body), "nothing was installed"
