"""`ironbridge discover opcua` and `POST /api/discover/opcua` against asyncua (a server nobody on this team wrote): the file it
prints names every variable below the Objects folder (nested folders and arrays included, the
method skipped) with its data type, passes `ironbridge validate` as it is, installs through the
REST API and delivers the server's values on MQTT, under the service and under the UNS tree.
Security, credentials and an unreachable server are handled with a clear message."""

import os
import subprocess
import tempfile

import pytest

from conftest import free_port, start_gateway, stop_gateway
from test_modbus_pymodbus import wait_for, watch
from test_opcua_asyncua import AsyncuaServer
from test_system import api, login

BINARY = os.environ.get("IRONBRIDGE_BIN", "target/debug/ironbridge")


def discover(*args, password=None):
    env = dict(os.environ)
    env.pop("IRONBRIDGE_OPCUA_PASSWORD", None)
    if password is not None:
        env["IRONBRIDGE_OPCUA_PASSWORD"] = password
    return subprocess.run([BINARY, "discover", "opcua", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def server():
    with tempfile.TemporaryDirectory() as cert_dir:
        server = AsyncuaServer(free_port(), 1200.5, cert_dir)
        try:
            yield server
        finally:
            server.kill()


def test_the_discovered_file_validates_installs_and_delivers(server):
    url = f"opc.tcp://127.0.0.1:{server.port}/cnc"
    found = discover(url, "--uns", "acme/berlin/line1")
    assert found.returncode == 0, found.stderr
    yaml = found.stdout
    for comment in ("# Machine/SpindleSpeed (Double, writable)", "# Machine/Feed (Int32)",
                    "# Machine/Offsets (Double[])", "# Machine/Tools/T1/Wear (Float)",
                    "# Machine/Program (String)"):
        assert comment in yaml, yaml
    assert "Reset" not in yaml, "methods are skipped"
    assert "ServerStatus" not in yaml, "the server's own object is skipped"
    assert "variables" in found.stderr

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "discovered.yml")
        with open(path, "w") as f:
            f.write(yaml)
        validated = subprocess.run([BINARY, "validate", path], capture_output=True, text=True)
        assert validated.returncode == 0, validated.stdout

    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            client, messages = watch(gw, "services/#", "acme/#")
            status, body = api(gw, "POST", "/api/services", token, {"commissioningFile": yaml})
            assert status == 201 and body["state"] == "enabled", body
            service = body["id"]
            assert wait_for(messages, f"services/{service}/Machine/SpindleSpeed")["value"] == 1200.5
            assert wait_for(messages, f"services/{service}/Machine/Tools/T1/Wear")["value"] == 0.25
            assert wait_for(messages, "acme/berlin/line1/Machine/Feed")["value"] == 80
            client.loop_stop()
        finally:
            stop_gateway(gw)


def test_security_credentials_and_unreachable_servers(server):
    url = f"opc.tcp://127.0.0.1:{server.port}/cnc"
    secure = ["--security-policy", "Basic256Sha256", "--security-mode", "SignAndEncrypt",
              "--username", "operator", "--root", "ns=2;s=Machine.Tools"]
    found = discover(url, *secure, password="operator-secret")
    assert found.returncode == 0, found.stderr
    assert "securityPolicy: Basic256Sha256" in found.stdout
    assert "messageSecurityMode: SignAndEncrypt" in found.stdout
    assert "password: !ref opcuaPassword" in found.stdout
    assert "operator-secret" not in found.stdout, "the password is given at install"
    assert "# T1/Wear (Float)" in found.stdout, found.stdout

    refused = discover(url, *secure, password="wrong")
    assert refused.returncode == 1
    assert "refused the username or password" in refused.stderr, refused.stderr

    gone = discover(f"opc.tcp://127.0.0.1:{free_port()}")
    assert gone.returncode == 1
    assert "error:" in gone.stderr and "127.0.0.1" in gone.stderr, gone.stderr

    half = discover(url, "--security-policy", "Basic256Sha256")
    assert half.returncode == 1 and "together" in half.stderr, half.stderr


def test_the_rest_api_discovers_for_permitted_users(server):
    url = f"opc.tcp://127.0.0.1:{server.port}/cnc"
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            status, body = api(gw, "POST", "/api/discover/opcua", token,
                               {"url": url, "root": "ns=2;s=Machine", "uns": "acme/berlin/line1"})
            assert status == 200, body
            nodes = {"/".join(n["path"]): n for n in body["nodes"]}
            assert nodes["Offsets"] == {"path": ["Offsets"], "nodeId": "ns=2;s=Machine.Offsets",
                                        "dataType": "Double", "array": True, "writable": False}
            assert nodes["Override"]["writable"] is True
            assert "Tools/T1/Wear" in nodes and "Reset" not in nodes
            assert body["truncated"] is None and body["visited"] >= len(nodes)
            status, installed = api(gw, "POST", "/api/services", token, {"commissioningFile": body["yaml"]})
            assert status == 201 and installed["state"] == "enabled", installed

            status, body = api(gw, "POST", "/api/discover/opcua", token, {"url": url, "maxNodes": 3})
            assert status == 200 and "--max-nodes" in body["truncated"], body
            status, body = api(gw, "POST", "/api/discover/opcua", token, {"url": "http://plc"})
            assert status == 400, body
            status, body = api(gw, "POST", "/api/discover/opcua", token, {"url": url, "depthh": 2})
            assert status == 400, body
            status, body = api(gw, "POST", "/api/discover/opcua", token,
                               {"url": f"opc.tcp://127.0.0.1:{free_port()}"})
            assert status == 502 and body["error"]["code"] == "discovery_failed", body

            # Discovery makes the gateway connect where the caller says: it takes permission.
            status, body = api(gw, "POST", "/api/users", token, {
                "username": "viewer", "password": "viewer-password",
                "permissions": [{"resource": "/api/services", "operation": "read", "context": "http"}],
            })
            assert status == 201, body
            status, body = api(gw, "POST", "/api/discover/opcua", login(gw, "viewer", "viewer-password"),
                               {"url": url})
            assert status == 403, body
            status, body = api(gw, "POST", "/api/discover/opcua", None, {"url": url})
            assert status == 401, body
        finally:
            stop_gateway(gw)
