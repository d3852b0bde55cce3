"""Interoperability with pymodbus (a Modbus TCP server nobody on this team wrote): a commissioning
file installed through the REST API reads its registers and coils onto MQTT, and writes through
`/set` land in the server's memory."""

import asyncio
import json
import os
import subprocess
import sys
import queue
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import ServerAsyncStop, StartAsyncTcpServer

from faults import kill_and_restart
from conftest import ADMIN_PASSWORD, free_port, start_gateway, stop_gateway, wait_for_port
from test_system import api, login

TIMEOUT = 10

FILE = """
metadata: {name: Pymodbus PLC}
parameters:
  port: {type: integer}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection:
        host: 127.0.0.1
        port: !ref port
        socketTimeout: 1000
        batchReadEnabled: true
        connectionStrategy: {initialDelay: 100, maxDelay: 500}
  temperature:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 3, address: 0, length: 2, dataType: floatBE, interval: 100}
  counter:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 4, address: 5, length: 2, dataType: uint32LE, interval: 100}
  alarm:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 1, address: 2, length: 1, interval: 100}
  label:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      read: {fc: 3, address: 20, length: 3, dataType: stringBE}
  setpoint:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      write: {fc: 16, address: 40, dataType: floatBEWS}
  pump:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      write: {fc: 5, address: 7}
"""


class PymodbusServer:
    """pymodbus 3.7 TCP server on its own event loop in a thread; `slave` is its memory."""

    def __init__(self, port):
        self.port = port
        block = lambda: ModbusSequentialDataBlock(0, [0] * 100)
        self.slave = ModbusSlaveContext(di=block(), co=block(), hr=block(), ir=block())
        self.context = ModbusServerContext(slaves=self.slave, single=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pymodbus did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(StartAsyncTcpServer(context=self.context, address=("127.0.0.1", self.port)))

    def set(self, fc, address, values):
        self.slave.setValues(fc, address, values)

    def get(self, fc, address, count):
        return self.slave.getValues(fc, address, count)

    def stop(self):
        asyncio.run_coroutine_threadsafe(ServerAsyncStop(), self.loop).result(timeout=10)
        self.thread.join(timeout=10)


@pytest.fixture
def plc():
    server = PymodbusServer(free_port())
    yield server
    server.stop()


def watch(gw, *topics):
    messages = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("admin", ADMIN_PASSWORD)
    client.on_message = lambda c, u, msg: messages.put((msg.topic, json.loads(msg.payload)))
    subscribed = queue.Queue()
    connected = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: connected.put(rc)
    client.on_subscribe = lambda *args: subscribed.put(True)
    client.connect("127.0.0.1", gw.mqtt)
    client.loop_start()
    # Subscribe only once the broker has accepted the login, and say which step failed.
    rc = connected.get(timeout=TIMEOUT)
    assert not rc.is_failure, f"CONNACK {rc}"
    for topic in topics:
        result, _ = client.subscribe(topic, 1)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe {topic}: {result}"
        try:
            subscribed.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic} within {TIMEOUT}s") from None
    return client, messages


def wait_for(messages, topic, predicate=lambda payload: True):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        got_topic, payload = messages.get(timeout=TIMEOUT)
        if got_topic == topic and predicate(payload):
            return payload
    raise AssertionError(f"nothing matching on {topic}")


def test_reads_and_writes_a_pymodbus_server_through_a_commissioning_file(plc):
    plc.set(3, 0, [0x41AC, 0x0000])       # 21.5 as floatBE
    plc.set(4, 5, [0x0200, 0x0000])       # 2 as uint32LE (bytes 02 00 00 00)
    plc.set(1, 2, [True])
    plc.set(3, 20, [0x4C49, 0x4E45, 0x3100])  # "LINE1"
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            client, messages = watch(gw, "services/pymodbusplc/#")
            status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": FILE, "parameters": {"port": plc.port}})
            assert status == 201 and body["state"] == "enabled", body

            assert wait_for(messages, "services/pymodbusplc/temperature")["value"] == 21.5
            assert wait_for(messages, "services/pymodbusplc/counter")["value"] == 2
            assert wait_for(messages, "services/pymodbusplc/alarm")["value"] is True
            plc.set(3, 0, [0x41B0, 0x0000])   # 22.0
            wait_for(messages, "services/pymodbusplc/temperature", lambda p: p["value"] == 22.0)

            client.publish("services/pymodbusplc/label/req", json.dumps({"id": "l"}), 1)
            answer = wait_for(messages, "services/pymodbusplc/label/res")
            assert answer == {"id": "l", "timestamp": answer["timestamp"], "result": {"value": "LINE1"}}

            client.publish("services/pymodbusplc/setpoint/set", json.dumps({"id": 2, "value": 12.5}), 1)
            assert wait_for(messages, "services/pymodbusplc/setpoint/res")["result"]["value"] == 12.5
            assert plc.get(3, 40, 2) == [0x0000, 0x4148], "floatBEWS: low word first"
            client.publish("services/pymodbusplc/pump/set", "true", 1)
            assert wait_for(messages, "services/pymodbusplc/pump/res")["result"]["value"] is True
            assert plc.get(1, 7, 1) == [True]

            status, report = api(gw, "GET", "/api/services/pymodbusplc/status", token)
            assert report["deviated"] is False, report
            client.loop_stop()
        finally:
            stop_gateway(gw)


class KillablePymodbus:
    """pymodbus in a child process, killed with SIGKILL: the connection just vanishes."""

    def __init__(self, port, temperature):
        script = os.path.join(os.path.dirname(__file__), "pymodbus_server.py")
        self.process = subprocess.Popen([sys.executable, script, str(port), str(temperature)])
        wait_for_port(port)

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)


def test_the_gateway_reconnects_when_the_pymodbus_server_is_killed_and_leaks_no_sockets():
    port = free_port()
    plc = KillablePymodbus(port, 21.5)
    devices = [plc]
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            # `#` does not match `$SYS/...` topics: status needs its own subscription.
            client, messages = watch(gw, "services/#", "$SYS/ironbridge/#")
            status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": FILE, "parameters": {"port": port}})
            assert status == 201, body
            wait_for(messages, "services/pymodbusplc/temperature", lambda p: p["value"] == 21.5)

            def start(cycle):
                devices.append(KillablePymodbus(port, 30.0 + cycle))
                return 30.0 + cycle

            kill_and_restart(gw, token, wait_for, messages, "pymodbusplc", "plc",
                             "services/pymodbusplc/temperature", lambda: devices[-1].kill(), start)
            client.loop_stop()
        finally:
            stop_gateway(gw)
            devices[-1].kill()
