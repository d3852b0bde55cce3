"""The gateway's OPC UA server (`Cybus::Server::Opcua`, `Cybus::Node::Opcua`) against asyncua's
client, which nobody on this team wrote: anonymous access refused when not allowed, a user name
only over a secure channel, the client's certificate trusted once an administrator moves it from
`rejected/` to `trusted/` in the data directory, the gateway's users and passwords, then browse,
read, a subscription fed from MQTT, and a client's write published on MQTT."""

import asyncio
import json
import os
import pathlib
import queue
import shutil
import tempfile
import time

import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.sync import Client as UaClient
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import free_port, start_gateway, stop_gateway, wait_for_port
from test_http import next_on
from test_system import ADMIN_PASSWORD, Client, api, login

FILE = """
metadata: {name: Plant Server}
parameters:
  port: {type: integer}
resources:
  server:
    type: Cybus::Server::Opcua
    properties:
      port: !ref port
      resourcePath: /plant
      hostname: 127.0.0.1
      securityPolicies: [None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss]
      securityModes: [None, Sign, SignAndEncrypt]
  machine:
    type: Cybus::Node::Opcua
    properties: {parent: !ref server, nodeType: Object, browseName: Machine}
  temperature:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref machine
      nodeType: Variable
      browseName: Temperature
      nodeId: ns=1;s=Machine.Temperature
      dataType: Double
  setpoint:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref machine
      nodeType: Variable
      browseName: Setpoint
      nodeId: ns=1;s=Machine.Setpoint
      dataType: Int32
      operation: serverReceives
"""


class Changes:
    def __init__(self):
        self.values = queue.Queue()

    def datachange_notification(self, node, value, data):
        self.values.put(value)


@pytest.fixture(scope="module")
def plant():
    """A gateway with the plant server installed, and an asyncua client certificate."""
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as certs:
        gw = start_gateway(data_dir, anonymous=False)
        port = free_port()
        try:
            token = login(gw)
            status, body = api(gw, "POST", "/api/services", token,
                               {"commissioningFile": FILE, "parameters": {"port": port}})
            assert status == 201 and body["state"] == "enabled", body
            wait_for_port(port)
            key, cert = pathlib.Path(certs) / "client-key.pem", pathlib.Path(certs) / "client-cert.der"
            asyncio.run(setup_self_signed_certificate(
                key, cert, "urn:ironbridge:test:uaclient", "localhost",
                [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "asyncua test client"}))
            yield gw, port, data_dir, key, cert
        finally:
            stop_gateway(gw)


def secure_client(port, key, cert, user="admin", password=ADMIN_PASSWORD,
                  security="Basic256Sha256,SignAndEncrypt"):
    client = UaClient(f"opc.tcp://127.0.0.1:{port}/plant", timeout=5)
    client.application_uri = "urn:ironbridge:test:uaclient"
    client.set_security_string(f"{security},{cert},{key}")
    client.set_user(user)
    client.set_password(password)
    return client


def refused(client):
    """The server refuses `client`. asyncua's sync client runs a thread that only a disconnect
    ends; a refused one never connected, so its thread is stopped here (or pytest never exits)."""
    try:
        with pytest.raises(Exception):
            client.connect()
    finally:
        client.tloop.stop()


def trust_rejected_certificates(data_dir):
    pki = pathlib.Path(data_dir) / "opcua-server" / "pki"
    rejected = list((pki / "rejected").glob("*.der"))
    assert rejected, f"no rejected certificate in {pki}"
    (pki / "trusted").mkdir(parents=True, exist_ok=True)
    for certificate in rejected:
        shutil.move(str(certificate), str(pki / "trusted" / certificate.name))


def test_only_trusted_clients_of_gateway_users_get_in(plant):
    gw, port, data_dir, key, cert = plant
    # Anonymous access is off unless the file allows it.
    refused(UaClient(f"opc.tcp://127.0.0.1:{port}/plant", timeout=5))
    # A password never crosses an unencrypted channel: no user name on the None endpoint.
    plain = UaClient(f"opc.tcp://127.0.0.1:{port}/plant", timeout=5)
    plain.set_user("admin")
    plain.set_password(ADMIN_PASSWORD)
    refused(plain)
    # An unknown client certificate is refused and kept for the administrator to trust.
    refused(secure_client(port, key, cert))
    trust_rejected_certificates(data_dir)
    refused(secure_client(port, key, cert, password="wrong-password"))
    # Every policy and mode the file offers, with a gateway user.
    for policy in ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"):  # asyncua spelling
        for mode in ("Sign", "SignAndEncrypt"):
            client = secure_client(port, key, cert, security=f"{policy},{mode}")
            client.connect()
            assert client.get_node("ns=2;s=Machine.Temperature").read_browse_name().Name == "Temperature"
            client.disconnect()


def test_browse_read_subscribe_and_write(plant):
    gw, port, data_dir, key, cert = plant
    pki = pathlib.Path(data_dir) / "opcua-server" / "pki"
    if not (pki / "trusted").exists():
        refused(secure_client(port, key, cert))
        trust_rejected_certificates(data_dir)
    mqtt = Client(gw, "admin", ADMIN_PASSWORD)
    assert mqtt.subscribe("services/plantserver/#").value == 1
    client = secure_client(port, key, cert)
    client.connect()
    try:
        objects = client.nodes.objects
        machine = next(n for n in objects.get_children() if n.read_browse_name().Name == "Machine")
        names = sorted(n.read_browse_name().Name for n in machine.get_children())
        assert names == ["Setpoint", "Temperature"]
        temperature = client.get_node("ns=2;s=Machine.Temperature")
        assert temperature.read_data_type_as_variant_type() == ua.VariantType.Double

        changes = Changes()
        subscription = client.create_subscription(50, changes)
        subscription.subscribe_data_change(temperature)
        stamped = int(time.time() * 1000)
        mqtt.publish("services/plantserver/temperature", json.dumps({"timestamp": stamped, "value": 21.5}))
        deadline = time.monotonic() + 10
        while changes.values.get(timeout=10) != 21.5:
            assert time.monotonic() < deadline
        value = temperature.read_data_value()
        assert value.Value.Value == 21.5
        assert abs(value.SourceTimestamp.timestamp() * 1000 - stamped) < 1000, value

        setpoint = client.get_node("ns=2;s=Machine.Setpoint")
        setpoint.write_value(ua.DataValue(ua.Variant(42, ua.VariantType.Int32)))
        written = next_on(mqtt, "services/plantserver/setpoint")
        assert written["value"] == 42, written
        assert setpoint.read_value() == 42
        with pytest.raises(ua.UaStatusCodeError):
            temperature.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
        subscription.delete()
    finally:
        client.disconnect()
        mqtt.close()
