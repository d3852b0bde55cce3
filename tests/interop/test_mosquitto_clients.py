"""Interoperability with Mosquitto's command-line clients (mosquitto_pub / mosquitto_sub)."""

import subprocess
import uuid

import pytest


def sub(gateway, *args, count=1, timeout=5):
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "localhost", "-C", str(count), "-W", str(timeout), "-v", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def pub(*args):
    subprocess.run(["mosquitto_pub", "-h", "localhost", *args], check=True, timeout=10)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_pub_sub(gateway, version, qos):
    topic = f"mosq/{uuid.uuid4().hex[:6]}"
    s = sub(gateway, "-p", str(gateway.mqtt), "-V", version, "-q", qos, "-t", topic)
    # Wait for the subscription: a retained marker published after subscribing would race, so
    # poll by publishing until the subscriber answers.
    for _ in range(50):
        pub("-p", str(gateway.mqtt), "-V", version, "-q", qos, "-t", topic, "-m", "hello")
        try:
            out, err = s.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        s.kill()
        raise AssertionError("mosquitto_sub received nothing")
    assert s.returncode == 0, err
    assert out.strip() == f"{topic} hello"


def test_retained_over_tls(gateway):
    topic = f"tls/{uuid.uuid4().hex[:6]}"
    tls = ["-p", str(gateway.mqtts), "--cafile", gateway.ca_file]
    pub(*tls, "-q", "1", "-r", "-t", topic, "-m", "kept")
    s = sub(gateway, *tls, "-t", topic)
    out, err = s.communicate(timeout=10)
    assert s.returncode == 0, err
    assert out.strip() == f"{topic} kept"


def test_user_properties_v5(gateway):
    topic = f"props/{uuid.uuid4().hex[:6]}"
    pub("-p", str(gateway.mqtt), "-V", "mqttv5", "-q", "1", "-r", "-t", topic, "-m", "x",
        "-D", "publish", "user-property", "site", "berlin")
    s = sub(gateway, "-p", str(gateway.mqtt), "-V", "mqttv5", "-t", topic, "-F", "%t %P")
    out, err = s.communicate(timeout=10)
    assert s.returncode == 0, err
    assert "site:berlin" in out
