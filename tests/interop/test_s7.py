"""S7 against python-snap7's server, a CPU nobody on this team wrote: every data type read onto
MQTT, writes landing in the CPU (checked with python-snap7's own client), a bit written without
touching its neighbours, an address the CPU refuses failing alone, and the CPU killed and
started again. commissioning-examples/s7-plc.yml is installed through the REST API."""

import json
import os
import struct
import subprocess
import sys
import tempfile

import pytest
import snap7

from conftest import free_port, start_gateway, stop_gateway, wait_for_port
from test_http import next_on, resource_states, wait_until
from test_system import ADMIN_PASSWORD, Client, api, example, login

SERVER = os.path.join(os.path.dirname(__file__), "snap7_server.py")

ENDPOINTS = {
    "subscribe": {
        "bool": "'DB1,X0.1'",
        "bools": "'DB1,X28.0.4'",
        "int": "'DB1,INT2'",
        "word": "'DB1,WORD4'",
        "dword": "'DB1,DWORD6'",
        "lreal": "'DB1,LREAL10'",
        "bytes": "'DB1,B18,4'",
        "chars": "'DB1,C22.5'",
        "dint": "DB1.DBD32, dataType: DINT",
        "flagword": "MW10",
        "output": "Q1.2",
        "missing": "'DB99,INT0'",
        "beyond": "'DB1,REAL62'",
    },
    "write": {
        "setint": "'DB1,INT2'",
        "setbit": "'DB1,X0.3'",
        "settext": "'DB3,S20.10'",
        "setbeyond": "'DB1,REAL62'",
    },
    "read": {"readint": "'DB1,INT2'"},
}

EVERY_TYPE = """
metadata: {name: Types}
parameters:
  port: {type: integer}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: S7
      connection:
        host: 127.0.0.1
        port: !ref port
        pollInterval: 200
        connectionStrategy: {initialDelay: 100, maxDelay: 500}
""" + "".join(
    f"  {name}: {{type: Cybus::Endpoint, properties: {{protocol: S7, connection: !ref plc, "
    f"{operation}: {{address: {address}}}}}}}\n"
    for operation, endpoints in ENDPOINTS.items()
    for name, address in endpoints.items()
)


@pytest.fixture(scope="module")
def gw():
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(data_dir, anonymous=False)
        try:
            yield gateway
        finally:
            stop_gateway(gateway)


class Cpu:
    """python-snap7's server in its own process, killed and started again like a CPU switched
    off and on."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self, temperature=21.5):
        self.process = subprocess.Popen([sys.executable, SERVER, str(self.port), str(temperature)])
        wait_for_port(self.port, process=self.process)

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def client(self):
        client = snap7.client.Client()
        client.connect("127.0.0.1", 0, 1, self.port)
        return client


@pytest.fixture
def cpu():
    cpu = Cpu()
    cpu.start()
    try:
        yield cpu
    finally:
        cpu.kill()


def test_every_type_is_read_and_written(gw, cpu):
    token = login(gw)
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    check = cpu.client()
    try:
        assert admin.subscribe("services/types/#").value == 1
        status, body = api(gw, "POST", "/api/services", token,
                           {"commissioningFile": EVERY_TYPE, "parameters": {"port": cpu.port}})
        assert status == 201, body
        expected = {
            "bool": True,
            "bools": [True, False, True, False],
            "int": -1234,
            "word": 65000,
            "dword": 4_000_000_000,
            "lreal": 2.25,
            "bytes": [1, 2, 3, 4],
            "chars": "PRESS",
            "dint": -42,
            "flagword": 777,
            "output": True,
        }
        for name, value in expected.items():
            assert next_on(admin, f"services/types/{name}")["value"] == value, name

        # The CPU refuses two addresses; they fail alone and the connection stays up.
        resources = wait_until(lambda: (r := resource_states(gw, token, "types"))
                               ["missing"].get("message") and r["beyond"].get("message") and r)
        assert "0x0a" in resources["missing"]["message"], resources["missing"]
        assert "0x05" in resources["beyond"]["message"], resources["beyond"]
        assert resources["plc"]["state"] == "connected", resources["plc"]
        assert next_on(admin, "services/types/int")["value"] == -1234

        # Writes land in the CPU, as its own client reads them.
        admin.publish("services/types/setint/set", json.dumps({"id": 1, "value": 4321}))
        assert next_on(admin, "services/types/setint/res")["result"] == {"value": 4321}
        assert struct.unpack(">h", check.db_read(1, 2, 2))[0] == 4321
        admin.publish("services/types/readint/req", json.dumps({"id": 2}))
        assert next_on(admin, "services/types/readint/res")["result"] == {"value": 4321}

        admin.publish("services/types/setbit/set", json.dumps({"id": 3, "value": True}))
        assert next_on(admin, "services/types/setbit/res")["result"] == {"value": True}
        assert check.db_read(1, 0, 1)[0] == 0b0000_1010, "bit 3 set, bit 1 untouched"

        admin.publish("services/types/settext/set", json.dumps({"id": 4, "value": "recipe-9"}))
        assert next_on(admin, "services/types/settext/res")["result"] == {"value": "recipe-9"}
        assert bytes(check.db_read(3, 20, 10)) == bytes([10, 8]) + b"recipe-9"

        admin.publish("services/types/setbeyond/set", json.dumps({"id": 5, "value": 1.0}))
        answer = next_on(admin, "services/types/setbeyond/res")
        assert "error" in answer and answer["error"]["message"].startswith("S7"), answer
    finally:
        check.disconnect()
        admin.close()
        api(gw, "DELETE", "/api/services/types", token)


def test_the_example_file_runs_and_the_cpu_going_away_is_reconnected(gw, cpu):
    token = login(gw)
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    check = cpu.client()
    try:
        assert admin.subscribe("services/pressplc/#").value == 1
        status, body = api(gw, "POST", "/api/services", token,
                           {"commissioningFile": example("s7-plc.yml"),
                            "parameters": {"plcHost": "127.0.0.1", "plcPort": cpu.port}})
        assert status == 201, body
        assert next_on(admin, "services/pressplc/temperature")["value"] == 21.5
        assert next_on(admin, "services/pressplc/pressures")["value"] == [1.5, 2.5, 3.5, 4.5]
        assert next_on(admin, "services/pressplc/running")["value"] is True
        assert next_on(admin, "services/pressplc/recipe")["value"] == "recipe-7"
        assert next_on(admin, "services/pressplc/counter")["value"] == -42
        assert next_on(admin, "services/pressplc/emergencyStop")["value"] is True

        admin.publish("services/pressplc/setpoint/set", json.dumps({"id": 1, "value": 180.5}))
        assert next_on(admin, "services/pressplc/setpoint/res")["result"] == {"value": 180.5}
        assert struct.unpack(">f", check.db_read(10, 0, 4))[0] == 180.5
        admin.publish("services/pressplc/lamp/set", json.dumps({"id": 2, "value": True}))
        assert next_on(admin, "services/pressplc/lamp/res")["result"] == {"value": True}
        assert check.mb_read(200, 1)[0] == 0b1000_0001
        check.disconnect()

        # The CPU goes away: the connection reconnects with back-off and says why, then reads
        # the new CPU's values.
        cpu.kill()
        connection = wait_until(lambda: (r := resource_states(gw, token, "pressplc")["plc"])
                                ["state"] == "reconnecting" and r)
        assert connection.get("message"), connection
        cpu.start(temperature=30.0)
        wait_until(lambda: resource_states(gw, token, "pressplc")["plc"]["state"] == "connected",
                   timeout=40)
        wait_until(lambda: next_on(admin, "services/pressplc/temperature")["value"] == 30.0,
                   timeout=20)
    finally:
        admin.close()
        api(gw, "DELETE", "/api/services/pressplc", token)
