"""The whole system as an operator uses it: the real `ironbridge` binary with its embedded
defaults (anonymous MQTT off), the REST API over HTTP, commissioning files from
commissioning-examples/, and a real MQTT client (paho) proving what a user may do."""

import json
import os
import queue
import tempfile
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as mqtt
import pytest

from conftest import ADMIN_PASSWORD, free_port, start_gateway, stop_gateway

TIMEOUT = 5
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "commissioning-examples")


def api(gw, method, path, token=None, body=None, content_type="application/json"):
    """Calls the REST API; returns (status, parsed JSON or None)."""
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{gw.http}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def login(gw, username="admin", password=ADMIN_PASSWORD):
    status, body = api(gw, "POST", "/api/login", body={"username": username, "password": password})
    assert status == 200, body
    return body["token"]


def example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


class Client:
    """A paho MQTT 5 client with credentials; messages and acknowledgements land in queues."""

    def __init__(self, gw, username, password):
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.connected = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sys-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connected.put(rc)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.connect("127.0.0.1", gw.mqtt, keepalive=30)
        self.client.loop_start()
        self.rc = self.connected.get(timeout=TIMEOUT)

    def subscribe(self, topic):
        self.client.subscribe(topic, 1)
        return self.subacks.get(timeout=TIMEOUT)[0]

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, 1)
        info.wait_for_publish(timeout=TIMEOUT)
        return info

    def next(self):
        return self.messages.get(timeout=TIMEOUT)

    def nothing(self, wait=0.5):
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=wait)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def gw():
    with tempfile.TemporaryDirectory() as data_dir:
        gateway = start_gateway(data_dir, anonymous=False)
        try:
            yield gateway
        finally:
            stop_gateway(gateway)


def test_install_enable_status_reconfigure_disable_delete(gw):
    token = login(gw)
    admin = Client(gw, "admin", ADMIN_PASSWORD)
    assert admin.subscribe("$SYS/ironbridge/services/+/status").value == 1

    # Nothing listens on this port: the connection is refused.
    closed_port = free_port()
    status, body = api(gw, "POST", f"/api/services?plcHost=127.0.0.1&plcPort={closed_port}", token,
                       example("modbus-plc.yml"), "application/yaml")
    assert status == 201, body
    assert (body["id"], body["state"]) == ("modbusplc", "enabled")
    # The service is enabled but deviated, and says why.
    assert body["deviated"] is True, body["resources"]
    resources = {r["id"]: r for r in body["resources"]}
    assert resources["plcConnection"]["state"] in ("connecting", "reconnecting"), resources
    assert resources["temperature"]["state"] == "waiting for its connection", resources

    retained = json.loads(admin.next().payload)
    assert retained["state"] in ("enabling", "enabled")

    status, report = api(gw, "GET", "/api/services/modbusplc/status", token)
    assert status == 200
    assert report["state"] == "enabled" and report["deviated"] is True
    assert sorted(report["deviations"]) == ["plcConnection", "pressure", "setpoint", "temperature"]

    status, body = api(gw, "PUT", "/api/services/modbusplc", token,
                       {"parameters": {"plcHost": "127.0.0.1", "plcPort": free_port(), "pollInterval": 1000}})
    assert status == 200, body
    # The connection changed; the endpoints on it restart with it.
    assert body["changedResources"] == ["plcConnection", "pressure", "setpoint", "temperature"]
    status, body = api(gw, "PUT", "/api/services/modbusplc", token, {"parameters": {"pollInterval": 5}})
    assert status == 422 and body["error"]["details"]["diagnostics"][0]["path"] == "parameters.pollInterval"

    status, body = api(gw, "POST", "/api/services/modbusplc/operation", token, {"operation": "disable"})
    assert (status, body["state"]) == (200, "disabled")
    states = []
    while True:
        try:
            states.append(json.loads(admin.messages.get(timeout=1).payload)["state"])
        except queue.Empty:
            break
    assert states[-1] == "disabled", states

    assert api(gw, "DELETE", "/api/services/modbusplc", token)[0] == 204
    assert api(gw, "GET", "/api/services/modbusplc", token)[0] == 404
    admin.close()


def test_a_user_with_a_narrow_mqtt_permission_can_do_exactly_that(gw):
    token = login(gw)
    status, body = api(gw, "POST", "/api/users", token, {
        "username": "line1-sensor",
        "password": "sensor-password",
        "permissions": [
            {"resource": "plant/line1/#", "operation": "write", "context": "mqtt"},
            {"resource": "plant/line1/commands", "operation": "read", "context": "mqtt"},
        ],
    })
    assert status == 201, body

    watcher = Client(gw, "admin", ADMIN_PASSWORD)
    assert watcher.subscribe("plant/#").value == 1
    sensor = Client(gw, "line1-sensor", "sensor-password")
    assert not sensor.rc.is_failure

    assert sensor.subscribe("plant/line1/commands").value == 1
    assert sensor.subscribe("plant/#").value == 0x87, "subscribing wider than allowed is refused"
    assert sensor.subscribe("plant/line1/+").value == 0x87

    sensor.publish("plant/line1/temperature", b"21.5")
    message = watcher.next()
    assert (message.topic, message.payload) == ("plant/line1/temperature", b"21.5")
    sensor.publish("plant/line2/temperature", b"99")
    watcher.nothing()

    watcher.client.publish("plant/line1/commands", b"stop", 1)
    assert sensor.next().payload == b"stop"
    assert watcher.next().topic == "plant/line1/commands"  # its own message, via plant/#

    # Taking the permission away applies to the open connection at once.
    status, _ = api(gw, "PUT", "/api/users/line1-sensor", token, {"permissions": []})
    assert status == 200
    sensor.publish("plant/line1/temperature", b"22.0")
    watcher.nothing()
    sensor.close()
    watcher.close()

    # A will message is a publish too: a will outside the user's permissions refuses the CONNECT.
    status, _ = api(gw, "PUT", "/api/users/line1-sensor", token, {"permissions": [
        {"resource": "plant/line1/#", "operation": "write", "context": "mqtt"}]})
    assert status == 200
    for will_topic, refused in [("plant/line1/offline", False), ("plant/line2/offline", True)]:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set("line1-sensor", "sensor-password")
        client.will_set(will_topic, b"gone", 1)
        results = queue.Queue()
        client.on_connect = lambda c, u, flags, rc, props: results.put(rc)
        client.connect("127.0.0.1", gw.mqtt)
        client.loop_start()
        rc = results.get(timeout=TIMEOUT)
        assert rc.is_failure == refused, (will_topic, rc)
        if refused:
            assert rc.value == 0x87
        client.disconnect()
        client.loop_stop()

    wrong = Client(gw, "line1-sensor", "not-the-password")
    assert wrong.rc.is_failure
    wrong.client.loop_stop()
    anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    results = queue.Queue()
    anonymous.on_connect = lambda c, u, flags, rc, props: results.put(rc)
    anonymous.connect("127.0.0.1", gw.mqtt)
    anonymous.loop_start()
    assert results.get(timeout=TIMEOUT).is_failure, "anonymous access is off by default"
    anonymous.loop_stop()


def test_user_management_example_creates_users_that_reach_the_broker(gw):
    token = login(gw)
    status, body = api(gw, "POST", "/api/services", token, {
        "commissioningFile": example("user-management.yml"),
        "parameters": {"dashboardPassword": "dashboard-password-1"},
    })
    assert status == 201 and body["state"] == "enabled", body
    dashboard = Client(gw, "plantusers.dashboard", "dashboard-password-1")
    assert not dashboard.rc.is_failure
    assert dashboard.subscribe("services/+/#").value == 1
    assert dashboard.subscribe("secret/#").value == 0x87
    dashboard.close()
    assert api(gw, "DELETE", "/api/services/plantusers", token)[0] == 204
    gone = Client(gw, "plantusers.dashboard", "dashboard-password-1")
    assert gone.rc.is_failure, "the user went with its service"
    gone.client.loop_stop()


def test_enabled_services_are_enabled_again_after_a_restart():
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            assert api(gw, "POST", "/api/services", token, {"commissioningFile": example("opcua-cnc.yml")})[0] == 201
            assert api(gw, "POST", "/api/services", token, {"commissioningFile": example("modbus-plc.yml"), "targetState": "disabled"})[0] == 201
        finally:
            assert stop_gateway(gw) == 0
        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            status, services = api(gw, "GET", "/api/services", token)
            assert status == 200
            assert {s["id"]: s["state"] for s in services} == {"opcuacnc": "enabled", "modbusplc": "disabled"}
        finally:
            stop_gateway(gw)


def test_password_guessing_is_slowed_down_per_address_on_http_and_mqtt():
    """Five wrong passwords from one address, each for a different user name: the sixth attempt
    from that address is answered 429 with Retry-After, and MQTT CONNECTs from it get "server
    busy" (0x89), even with the right password, until the delay has passed."""
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir, anonymous=False)
        try:
            for attempt in range(5):
                status, _ = api(gw, "POST", "/api/login", body={"username": f"guess{attempt}", "password": "x"})
                assert status == 401
            request = urllib.request.Request(
                f"http://127.0.0.1:{gw.http}/api/login",
                data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 429
            assert int(refused.value.headers["Retry-After"]) >= 1
            busy = Client(gw, "admin", ADMIN_PASSWORD)
            assert busy.rc.value == 0x89, busy.rc
            busy.client.loop_stop()
        finally:
            stop_gateway(gw)
