"""Modbus RTU against pymodbus, a server nobody on this team wrote: on a serial line made of a
socat pseudo-terminal pair (two devices, unit 1 and unit 2, taking turns on it), and RTU frames
over TCP as serial gateways pass them. Pulling the line (killing socat) is reconnected like a TCP
drop. commissioning-examples/modbus-rtu.yml is installed through the REST API."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import free_port, start_gateway, stop_gateway, wait_for_port
from test_http import next_on, resource_states, wait_until
from test_system import ADMIN_PASSWORD, Client, api, example, login

SERVER = os.path.join(os.path.dirname(__file__), "pymodbus_rtu_server.py")
BAUD = 19200

@pytest.fixture(scope="module")
def gw():
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(data_dir, anonymous=False)
        try:
            yield gateway
        finally:
            stop_gateway(gateway)


class SerialLine:
    """A null-modem cable: two pseudo-terminals joined by socat, the gateway's end and the
    devices' end, with pymodbus serving on the devices' end."""

    def __init__(self, folder):
        self.gateway_end = os.path.join(folder, "ttyGW")
        self.device_end = os.path.join(folder, "ttyDEV")
        self.socat = self.server = None

    def plug(self):
        self.socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.gateway_end}", f"pty,raw,echo=0,link={self.device_end}"],
            stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(self.gateway_end) and os.path.exists(self.device_end), timeout=5)
        self.server = subprocess.Popen([sys.executable, SERVER, "serial", self.device_end, str(BAUD)])
        time.sleep(0.5)  # pymodbus opens the port

    def pull(self):
        for process in (self.server, self.socat):
            if process and process.poll() is None:
                process.kill()
                process.wait()


def test_two_devices_share_a_serial_line_and_a_pulled_line_reconnects(gw):
    token = login(gw)
    with tempfile.TemporaryDirectory() as folder:
        line = SerialLine(folder)
        line.plug()
        admin = Client(gw, "admin", ADMIN_PASSWORD)
        try:
            assert admin.subscribe("services/meterline/#").value == 1
            status, body = api(gw, "POST", "/api/services", token,
                               {"commissioningFile": example("modbus-rtu.yml"),
                                "parameters": {"device": line.gateway_end, "baudRate": BAUD}})
            assert status == 201, body
            assert next_on(admin, "services/meterline/temperature")["value"] == 21.5
            assert next_on(admin, "services/meterline/pressure")["value"] == 1013

            admin.publish("services/meterline/limit/set", json.dumps({"id": 1, "value": 1100}))
            answer = next_on(admin, "services/meterline/limit/res")
            assert answer["result"] == {"value": 1100}, answer

            # The line is pulled: the connection reconnects with its back-off and says why.
            line.pull()
            connection = wait_until(lambda: (r := resource_states(gw, token, "meterline")["meterLine"])
                                    ["state"] == "reconnecting" and r)
            assert connection.get("message"), connection
            line.plug()
            wait_until(lambda: resource_states(gw, token, "meterline")["meterLine"]["state"] == "connected",
                       timeout=20)
            assert next_on(admin, "services/meterline/pressure")["value"] == 1013
        finally:
            admin.close()
            line.pull()
            api(gw, "DELETE", "/api/services/meterline", token)


def test_rtu_frames_over_tcp_reach_a_serial_gateway(gw):
    token = login(gw)
    port = free_port()
    server = subprocess.Popen([sys.executable, SERVER, "tcp", str(port)])
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    try:
        wait_for_port(port, process=server)
        assert admin.subscribe("services/meterline/#").value == 1
        file = (example("modbus-rtu.yml")
                .replace("transport: rtu", "transport: rtuOverTcp")
                .replace("device: !ref device", f"host: 127.0.0.1\n        port: {port}"))
        status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": file})
        assert status == 201, body
        assert next_on(admin, "services/meterline/temperature")["value"] == 21.5
        assert next_on(admin, "services/meterline/pressure")["value"] == 1013
    finally:
        admin.close()
        server.kill()
        server.wait()
        api(gw, "DELETE", "/api/services/meterline", token)
