"""Interoperability with Eclipse Paho (Python) for MQTT 3.1.1 and 5.0 over TCP, TLS and WebSocket."""

import queue
import ssl
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
import pytest

TIMEOUT = 5


class Client:
    """A paho client running its network loop in a thread, collecting messages in a queue."""

    def __init__(self, gw, protocol=mqtt.MQTTv311, transport="tcp", tls=False, client_id=None,
                 clean=True, session_expiry=None, will=None):
        self.messages: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.subscribed: queue.Queue = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"paho-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            transport=transport,
            clean_session=clean if protocol != mqtt.MQTTv5 else None,
        )
        self.protocol = protocol
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if tls:
            self.client.tls_set(ca_certs=gw.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will:
            self.client.will_set(*will)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connected.put((flags, rc))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subscribed.put(rcs)
        if transport == "websockets":
            port = gw.https if tls else gw.http
        else:
            port = gw.mqtts if tls else gw.mqtt
        host = "localhost"
        if protocol == mqtt.MQTTv5:
            props = None
            if session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = session_expiry
            self.client.connect(host, port, keepalive=30, clean_start=clean, properties=props)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.flags, self.rc = self.connected.get(timeout=TIMEOUT)
        assert not self.rc.is_failure, f"connect failed: {self.rc}"

    def subscribe(self, topic, qos=1):
        self.client.subscribe(topic, qos)
        return self.subscribed.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos, retain, properties)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published()

    def next(self):
        return self.messages.get(timeout=TIMEOUT)

    def nothing(self, wait=0.3):
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=wait)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def vanish(self):
        """Drops the socket without DISCONNECT."""
        self.client.loop_stop()
        self.client.socket().close()


TRANSPORTS = [
    pytest.param("tcp", False, id="tcp"),
    pytest.param("tcp", True, id="tls"),
    pytest.param("websockets", False, id="ws"),
    pytest.param("websockets", True, id="wss"),
]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5.0"])
@pytest.mark.parametrize("transport,tls", TRANSPORTS)
def test_publish_subscribe_every_qos(gateway, protocol, transport, tls):
    sub = Client(gateway, protocol, transport, tls)
    pub = Client(gateway, protocol, transport, tls)
    base = f"interop/{uuid.uuid4().hex[:6]}"
    sub.subscribe(f"{base}/#", qos=2)
    for qos in (0, 1, 2):
        pub.publish(f"{base}/q{qos}", f"value-{qos}".encode(), qos=qos)
        msg = sub.next()
        assert (msg.topic, msg.payload, msg.qos) == (f"{base}/q{qos}", f"value-{qos}".encode(), qos)
    sub.close()
    pub.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5.0"])
def test_retained_and_will(gateway, protocol):
    base = f"cell/{uuid.uuid4().hex[:6]}"
    pub = Client(gateway, protocol)
    pub.publish(f"{base}/state", b"running", qos=1, retain=True)
    watcher = Client(gateway, protocol)
    watcher.subscribe(f"{base}/#")
    msg = watcher.next()
    assert (msg.payload, msg.retain) == (b"running", True)

    doomed = Client(gateway, protocol, will=(f"{base}/conn", b"lost", 1, False))
    doomed.vanish()
    msg = watcher.next()
    assert (msg.topic, msg.payload) == (f"{base}/conn", b"lost")

    pub.publish(f"{base}/state", b"", qos=1, retain=True)
    assert watcher.next().payload == b""
    late = Client(gateway, protocol)
    late.subscribe(f"{base}/state")
    late.nothing()


def test_v5_properties_roundtrip(gateway):
    sub = Client(gateway, mqtt.MQTTv5)
    pub = Client(gateway, mqtt.MQTTv5)
    sub.subscribe("rpc/req/#")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "rpc/res/1"
    props.CorrelationData = b"42"
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.UserProperty = [("machine", "press-3")]
    props.MessageExpiryInterval = 60
    pub.publish("rpc/req/1", b'{"cmd":"reset"}', qos=1, properties=props)
    msg = sub.next()
    got = msg.properties
    assert got.ResponseTopic == "rpc/res/1"
    assert got.CorrelationData == b"42"
    assert got.ContentType == "application/json"
    assert got.UserProperty == [("machine", "press-3")]
    assert 0 < got.MessageExpiryInterval <= 60


def test_v5_persistent_session_across_reconnect(gateway):
    cid = f"historian-{uuid.uuid4().hex[:6]}"
    first = Client(gateway, mqtt.MQTTv5, client_id=cid, clean=False, session_expiry=300)
    first.subscribe("batch/#", qos=1)
    first.close()
    pub = Client(gateway, mqtt.MQTTv5)
    pub.publish("batch/1", b"queued", qos=1)
    again = Client(gateway, mqtt.MQTTv5, client_id=cid, clean=False, session_expiry=300)
    assert again.flags.session_present
    assert again.next().payload == b"queued"


def test_sys_topics(gateway):
    c = Client(gateway, mqtt.MQTTv311)
    c.subscribe("$SYS/broker/uptime", qos=0)
    assert c.next().payload.endswith(b"seconds")
