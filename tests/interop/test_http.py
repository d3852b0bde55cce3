"""HTTP/REST connections against a machine's REST API that nobody on this team wrote: Python's
standard-library server over HTTPS with a CA made by trustme, run as its own process so it can
be killed. The real binary installs commissioning-examples/rest-machine.yml through the REST
API; a paho client sees the polled values, reads, writes, endpoint errors and the reconnect."""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
import trustme

from conftest import free_port, start_gateway, stop_gateway, wait_for_port
from test_system import Client, api, example, login, ADMIN_PASSWORD

SERVER = os.path.join(os.path.dirname(__file__), "rest_machine_server.py")


@pytest.fixture(scope="module")
def certificates():
    """A CA and a server certificate for 127.0.0.1, as PEM files and the CA's text."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as folder:
        cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        server.private_key_pem.write_to_path(key)
        server.cert_chain_pems[0].write_to_path(cert)
        yield {"cert": cert, "key": key, "ca": ca.cert_pem.bytes().decode()}


def start_machine(port, certificates):
    process = subprocess.Popen([sys.executable, SERVER, str(port), certificates["cert"], certificates["key"]])
    wait_for_port(port, process=process)
    return process


@pytest.fixture(scope="module")
def gw():
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(data_dir, anonymous=False)
        try:
            yield gateway
        finally:
            stop_gateway(gateway)


def next_on(client, topic, timeout=10):
    """The next message on `topic` as JSON, skipping others."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.messages.get(timeout=max(0.1, deadline - time.monotonic()))
        if message.topic == topic:
            return json.loads(message.payload)
    raise AssertionError(f"nothing on {topic}")


def resource_states(gw, token, service):
    status, body = api(gw, "GET", f"/api/services/{service}", token)
    assert status == 200, body
    return {r["id"]: r for r in body["resources"]}


def wait_until(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_polls_reads_and_writes_a_rest_api_over_https_and_reconnects_after_a_kill(gw, certificates):
    token = login(gw)
    port = free_port()
    machine = start_machine(port, certificates)
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    try:
        assert admin.subscribe("services/restmachine/#").value == 1
        parameters = {"host": "127.0.0.1", "port": port, "apiToken": "t0ken", "pollInterval": 200,
                      "caCert": certificates["ca"]}
        status, body = api(gw, "POST", "/api/services", token,
                           {"commissioningFile": example("rest-machine.yml"), "parameters": parameters})
        assert status == 201, body
        # The bearer token is a secret: never shown back.
        assert body["parameters"]["apiToken"] == "********", body["parameters"]

        state = next_on(admin, "services/restmachine/state")
        assert state["value"]["mode"] == "auto" and state["value"]["cycle"] >= 1, state
        later = next_on(admin, "services/restmachine/state")
        assert later["value"]["cycle"] > state["value"]["cycle"], later

        admin.publish("services/restmachine/counters/req", json.dumps({"id": 1}))
        answer = next_on(admin, "services/restmachine/counters/res")
        assert answer == {"id": 1, "timestamp": answer["timestamp"],
                          "result": {"value": {"parts": 42, "shift": "current"}}}, answer

        admin.publish("services/restmachine/setpoint/set", json.dumps({"id": "s", "value": {"rpm": 1800}}))
        answer = next_on(admin, "services/restmachine/setpoint/res")
        assert answer["result"]["value"] == {"status": 200, "body": {"accepted": {"rpm": 1800}}}, answer

        # The controller loses power: the connection reconnects with its back-off and says why.
        machine.kill()
        machine.wait()
        connection = wait_until(lambda: (r := resource_states(gw, token, "restmachine")["restConnection"])
                                ["state"] == "reconnecting" and r)
        assert "127.0.0.1" in (connection.get("message") or ""), connection
        admin.publish("services/restmachine/counters/req", json.dumps({"id": 2}))
        answer = next_on(admin, "services/restmachine/counters/res")
        assert answer["error"]["message"] == "not connected to the device", answer

        machine = start_machine(port, certificates)
        wait_until(lambda: resource_states(gw, token, "restmachine")["restConnection"]["state"] == "connected")
        state = next_on(admin, "services/restmachine/state")
        assert state["value"]["cycle"] >= 1, state
    finally:
        admin.close()
        machine.kill()
        machine.wait()
        api(gw, "DELETE", "/api/services/restmachine", token)


BROKEN = """
metadata: {name: Broken Controller}
parameters:
  port: {type: integer}
  caCert: {type: string}
resources:
  rest:
    type: Cybus::Connection
    properties:
      protocol: Http
      connection: {host: 127.0.0.1, port: !ref port, caCert: !ref caCert, prefix: /api/v1/machine, requestTimeout: 1000}
  broken:
    type: Cybus::Endpoint
    properties:
      protocol: Http
      connection: !ref rest
      subscribe: {path: /broken, interval: 200}
  slow:
    type: Cybus::Endpoint
    properties:
      protocol: Http
      connection: !ref rest
      subscribe: {path: /slow, interval: 200}
"""


def test_a_5xx_and_a_slow_answer_are_errors_of_their_endpoint_and_a_wrong_ca_of_the_connection(gw, certificates):
    token = login(gw)
    port = free_port()
    machine = start_machine(port, certificates)
    try:
        status, body = api(gw, "POST", "/api/services", token,
                           {"commissioningFile": BROKEN, "parameters": {"port": port, "caCert": certificates["ca"]}})
        assert status == 201, body
        resources = wait_until(lambda: (r := resource_states(gw, token, "brokencontroller"))
                               ["broken"].get("message") and r["slow"].get("message") and r)
        assert resources["broken"]["message"] == "HTTP 500 Internal Server Error: spindle overheated", resources
        assert resources["slow"]["message"] == "no answer within 1000 ms", resources
        assert resources["rest"]["state"] == "connected", resources

        # Another CA: the server's certificate is not trusted, and the status says so.
        other = trustme.CA().cert_pem.bytes().decode()
        status, body = api(gw, "PUT", "/api/services/brokencontroller", token,
                           {"parameters": {"port": port, "caCert": other}})
        assert status == 200, body
        connection = wait_until(lambda: (r := resource_states(gw, token, "brokencontroller")["rest"])
                                ["state"] == "reconnecting" and r)
        assert "certificate" in connection["message"].lower(), connection
    finally:
        machine.kill()
        machine.wait()
        api(gw, "DELETE", "/api/services/brokencontroller", token)


def test_a_machine_posts_to_an_http_node_of_the_real_binary(gw):
    """commissioning-examples/http-intake.yml: Python's urllib as the machine, paho as the
    subscriber."""
    import base64
    import urllib.request

    token = login(gw)
    status, body = api(gw, "POST", "/api/services", token,
                       {"commissioningFile": example("http-intake.yml"),
                        "parameters": {"machinePassword": "press-secret-1"}})
    assert status == 201 and body["state"] == "enabled", body
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    try:
        assert admin.subscribe("services/pressintake/#").value == 1
        credentials = base64.b64encode(b"pressintake.machine:press-secret-1").decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{gw.http}/data/press/counter", data=b'{"parts": 5}', method="POST",
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204
        counter = next_on(admin, "services/pressintake/counter")
        assert counter["value"] == {"parts": 5}, counter
    finally:
        admin.close()
        api(gw, "DELETE", "/api/services/pressintake", token)
