"""Store-and-forward across a hard crash, as the README's "Forwarding to cloud brokers" promises: Debian's Mosquitto stands
in for the cloud broker, the real `ironbridge` binary forwards to it, and paho plays both the
plant publisher and the cloud application.

Order of events (the issue's words): stop Mosquitto, publish N messages, kill -9 the gateway,
start it, start Mosquitto; all N arrive."""

import json
import os
import queue
import signal
import subprocess
import tempfile
import time

import paho.mqtt.client as mqtt

from conftest import ADMIN_PASSWORD, free_port, start_gateway, stop_gateway, wait_for_port
from test_system import api, login

N = 500
SERVICE = """
metadata: {name: Restart Uplink}
resources:
  cloud:
    type: Cybus::Connection
    properties:
      protocol: Mqtt
      connection:
        host: 127.0.0.1
        port: %d
        clientId: restart-uplink
        connectionStrategy: {initialDelay: 200, incrementFactor: 2, maxDelay: 1000}
  uplink:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {topic: 'numbers/+n', qos: 1}
          publish: {connection: !ref cloud, topic: factory/numbers, qos: 1}
"""


class Mosquitto:
    """Mosquitto with persistence in its own folder, stopped with SIGTERM so it saves sessions."""

    def __init__(self, folder):
        self.folder = folder
        # Started as root, Mosquitto drops to its own user, which must write here.
        os.chmod(folder, 0o777)
        self.port = free_port()
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write(f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
                    f"max_queued_messages 0\nallow_anonymous true\nlistener {self.port} 127.0.0.1\n")
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(["mosquitto", "-c", self.config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


def cloud_application(port, messages=None):
    """The cloud side: a persistent session (clean_session off) so Mosquitto keeps what
    arrives while it is away."""
    subscribed = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="restart-cloud-app", clean_session=False)
    client.on_subscribe = lambda *args: subscribed.put(True)
    if messages is not None:
        client.on_message = lambda c, u, msg: messages.put(int(msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("factory/numbers", 1)
    subscribed.get(timeout=5)
    return client


def connection_status(gw, token):
    status, body = api(gw, "GET", "/api/services/restartuplink/status", token)
    assert status == 200, body
    return next(r for r in body["resources"] if r["id"] == "cloud")


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


def test_queued_messages_survive_kill_9_and_arrive_in_order():
    with tempfile.TemporaryDirectory() as broker_dir, tempfile.TemporaryDirectory() as data_dir:
        cloud = Mosquitto(broker_dir)
        app = cloud_application(cloud.port)
        app.disconnect()
        app.loop_stop()

        gw = start_gateway(data_dir, anonymous=False)
        token = login(gw)
        status, body = api(gw, "POST", "/api/services", token, SERVICE % cloud.port, "application/yaml")
        assert status == 201, body
        wait_until(lambda: connection_status(gw, token)["state"] == "connected", 10, "connected")

        cloud.stop()
        wait_until(lambda: connection_status(gw, token)["state"] == "reconnecting", 10, "link loss noticed")
        plant = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="restart-plant", protocol=mqtt.MQTTv5)
        plant.username_pw_set("admin", ADMIN_PASSWORD)
        plant.connect("127.0.0.1", gw.mqtt)
        plant.loop_start()
        for n in range(N):
            plant.publish(f"numbers/{n}", str(n), 1).wait_for_publish(timeout=5)
        plant.disconnect()
        plant.loop_stop()
        # Every message is on disk once the queue counts it; then the process dies hard.
        wait_until(lambda: connection_status(gw, token)["metrics"]["queuedMessages"] == N, 10,
                   f"{N} messages queued")
        gw.process.kill()
        assert gw.process.wait(timeout=10) == -signal.SIGKILL

        gw = start_gateway(data_dir, anonymous=False)
        try:
            token = login(gw)
            # Restored with the service, still waiting for the broker.
            cloud_state = connection_status(gw, token)
            assert cloud_state["metrics"]["queuedMessages"] == N, cloud_state
            cloud.start()
            messages = queue.Queue()
            app = cloud_application(cloud.port, messages)
            received = []
            deadline = time.monotonic() + 30
            while len(set(received)) < N and time.monotonic() < deadline:
                try:
                    received.append(messages.get(timeout=1))
                except queue.Empty:
                    pass
            first_seen = list(dict.fromkeys(received))
            print(f"restart: {N} queued before kill -9, {len(received)} received, "
                  f"{len(received) - len(first_seen)} duplicates")
            assert first_seen == list(range(N))
            wait_until(lambda: connection_status(gw, token)["metrics"]["queuedMessages"] == 0, 10, "queue drained")
            app.disconnect()
            app.loop_stop()
        finally:
            stop_gateway(gw)
            cloud.stop()
