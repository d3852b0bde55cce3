"""Interoperability with asyncua (a Python OPC UA server nobody on this team wrote): a commissioning
file installed through the REST API subscribes to its nodes over Basic256Sha256/SignAndEncrypt
with a username, publishes their values on MQTT, and writes through `/set` land on the server,
checked with asyncua's own client. Then the server is killed and restarted while the gateway
runs."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
from asyncua import ua
from asyncua.sync import Client as UaClient

from conftest import free_port, start_gateway, stop_gateway, wait_for_port
from faults import kill_and_restart
from test_modbus_pymodbus import wait_for, watch
from test_system import api, login

FILE = """
metadata: {name: Asyncua CNC}
parameters:
  port: {type: integer}
  securityMode: {type: string, default: SignAndEncrypt}
resources:
  cnc:
    type: Cybus::Connection
    properties:
      protocol: Opcua
      connection:
        host: 127.0.0.1
        port: !ref port
        resourcePath: /cnc
        username: operator
        password: operator-secret
        options:
          securityPolicy: Basic256Sha256
          messageSecurityMode: !ref securityMode
          connectionStrategy: {initialDelay: 200, maxDelay: 1000}
  speed:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref cnc
      topic: spindle/speed
      subscribe: {nodeId: ns=2;s=Machine.Spindle.Speed, samplingInterval: 50, publishInterval: 100}
  feed:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref cnc
      subscribe: {browsePath: /0:Objects/2:Machine/2:Feed, publishInterval: 500}
  program:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref cnc
      read: {nodeId: ns=2;s=Machine.Program}
  offsets:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref cnc
      read: {nodeId: ns=2;s=Machine.Offsets}
  override:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref cnc
      write: {nodeId: ns=2;s=Machine.Override}
"""


class AsyncuaServer:
    """asyncua in a child process, killed with SIGKILL: the session just vanishes."""

    def __init__(self, port, speed, cert_dir):
        self.port = port
        script = os.path.join(os.path.dirname(__file__), "asyncua_server.py")
        self.process = subprocess.Popen(
            [sys.executable, script, str(port), str(speed), cert_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout.readline().strip() == b"ready", "asyncua did not start"
        wait_for_port(port)

    def client(self):
        """asyncua's own client, to drive values and check writes on the server side."""
        client = UaClient(f"opc.tcp://127.0.0.1:{self.port}/cnc")
        client.set_user("operator")
        client.set_password("operator-secret")
        client.connect()
        return client

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)


def first_values(messages, *topics):
    """The first value on each topic; subscriptions deliver them in any order."""
    seen = {}
    deadline = time.monotonic() + 10
    while len(seen) < len(topics) and time.monotonic() < deadline:
        topic, payload = messages.get(timeout=10)
        if topic in topics and topic not in seen:
            seen[topic] = payload["value"]
    return seen


@pytest.fixture
def cert_dir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


def test_subscribes_reads_and_writes_an_asyncua_server_with_sign_and_encrypt(cert_dir):
    server = AsyncuaServer(free_port(), 1200.5, cert_dir)
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        ua_client = None
        try:
            token = login(gw)
            client, messages = watch(gw, "services/asyncuacnc/#")
            status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": FILE, "parameters": {"port": server.port}})
            assert status == 201 and body["state"] == "enabled", body

            first = first_values(messages, "services/asyncuacnc/spindle/speed", "services/asyncuacnc/feed")
            assert first == {"services/asyncuacnc/spindle/speed": 1200.5, "services/asyncuacnc/feed": 80}
            ua_client = server.client()
            ua_client.get_node("ns=2;s=Machine.Spindle.Speed").write_value(1500.25)
            changed = wait_for(messages, "services/asyncuacnc/spindle/speed", lambda p: p["value"] == 1500.25)
            # The payload carries the server's source timestamp of the change.
            assert abs(changed["timestamp"] - time.time() * 1000) < 5000, changed

            client.publish("services/asyncuacnc/program/req", json.dumps({"id": "p"}), 1)
            answer = wait_for(messages, "services/asyncuacnc/program/res")
            assert answer == {"id": "p", "timestamp": answer["timestamp"], "result": {"value": "O1000"}}
            client.publish("services/asyncuacnc/offsets/req", "{}", 1)
            assert wait_for(messages, "services/asyncuacnc/offsets/res")["result"]["value"] == [0.5, 1.5, 2.5]

            # 85 arrives as a JSON number and is written as the node's UInt16.
            client.publish("services/asyncuacnc/override/set", json.dumps({"id": 1, "value": 85}), 1)
            assert wait_for(messages, "services/asyncuacnc/override/res")["result"]["value"] == 85
            node = ua_client.get_node("ns=2;s=Machine.Override")
            assert node.read_value() == 85
            assert node.read_data_value().Value.VariantType == ua.VariantType.UInt16
            client.publish("services/asyncuacnc/override/set", json.dumps({"id": 2, "value": -1}), 1)
            refused = wait_for(messages, "services/asyncuacnc/override/res")
            assert refused["error"]["message"] == "-1 does not fit in UInt16", refused
            assert node.read_value() == 85

            status, report = api(gw, "GET", "/api/services/asyncuacnc/status", token)
            assert report["deviated"] is False, report
            client.loop_stop()
        finally:
            if ua_client is not None:
                ua_client.disconnect()
            stop_gateway(gw)
            server.kill()


def test_the_gateway_resubscribes_when_the_asyncua_server_is_killed_and_leaks_no_sockets(cert_dir):
    port = free_port()
    server = AsyncuaServer(port, 10.0, cert_dir)
    servers = [server]
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            client, messages = watch(gw, "services/#", "$SYS/ironbridge/#")
            status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": FILE, "parameters": {"port": port, "securityMode": "Sign"}})
            assert status == 201, body
            wait_for(messages, "services/asyncuacnc/spindle/speed", lambda p: p["value"] == 10.0)

            def start(cycle):
                # A fresh server knows nothing of the old session: the value can only arrive if
                # the gateway created the subscription and its monitored items again.
                servers.append(AsyncuaServer(port, 20.0 + cycle, cert_dir))
                return 20.0 + cycle

            kill_and_restart(gw, token, wait_for, messages, "asyncuacnc", "cnc",
                             "services/asyncuacnc/spindle/speed", lambda: servers[-1].kill(), start)
            client.loop_stop()
        finally:
            stop_gateway(gw)
            servers[-1].kill()
