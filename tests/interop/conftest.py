"""Starts the real `ironbridge` binary for the interoperability tests.

The binary is taken from IRONBRIDGE_BIN (set by scripts/test-all.sh); each test module gets its
own gateway with free ports, a fresh data directory and a self-signed TLS certificate.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    """Waits until something listens on `port`; stops early when `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before port {port} listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


@dataclass
class Gateway:
    process: subprocess.Popen
    data_dir: str
    mqtt: int
    mqtts: int
    http: int
    https: int

    @property
    def ca_file(self) -> str:
        return os.path.join(self.data_dir, "tls", "tls-cert.pem")


ADMIN_PASSWORD = "interop-admin-password"


def start_gateway(data_dir: str, anonymous: bool = True, extra_env: dict | None = None) -> Gateway:
    """Starts the binary. The broker protocol suites run with anonymous access on; the
    whole-system suite turns it off, as the embedded default is."""
    # A port free when chosen may be taken before the gateway binds it (another process's
    # outgoing connection): then the gateway exits saying so, and it starts again on new ports.
    for attempt in range(3):
        try:
            return launch_gateway(data_dir, anonymous, extra_env)
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    pass


def launch_gateway(data_dir: str, anonymous: bool, extra_env: dict | None) -> Gateway:
    binary = os.environ.get("IRONBRIDGE_BIN", "target/debug/ironbridge")
    ports = {name: free_port() for name in ("mqtt", "mqtts", "http", "https")}
    env = dict(os.environ)
    env.update(
        IRONBRIDGE_DATA_DIR=data_dir,
        IRONBRIDGE_MQTT_PORT=str(ports["mqtt"]),
        IRONBRIDGE_MQTTS_PORT=str(ports["mqtts"]),
        IRONBRIDGE_HTTP_PORT=str(ports["http"]),
        IRONBRIDGE_HTTPS_PORT=str(ports["https"]),
        IRONBRIDGE_TLS="self-signed",
        IRONBRIDGE_BROKER_SYS_INTERVAL_SECS="1",
        IRONBRIDGE_BROKER_ALLOW_ANONYMOUS="true" if anonymous else "false",
        IRONBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    env.update(extra_env or {})
    log_path = os.path.join(data_dir, "gateway.log")
    log = open(log_path, "ab")
    process = subprocess.Popen([binary, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for port in ports.values():
            wait_for_port(port, process=process)
    except RuntimeError as error:
        process.kill()
        process.wait()
        with open(log_path, "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
        if "in use" in tail:
            raise PortTaken(f"{error}; the gateway's log:\n{tail}") from None
        raise RuntimeError(f"{error}; the gateway's log:\n{tail}") from None
    return Gateway(process, data_dir, **ports)


def stop_gateway(gateway: Gateway) -> int:
    gateway.process.send_signal(signal.SIGTERM)
    return gateway.process.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway():
    with tempfile.TemporaryDirectory() as data_dir:
        gw = start_gateway(data_dir)
        try:
            yield gw
        finally:
            if gw.process.poll() is None:
                stop_gateway(gw)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell whether the test failed
    (the console tests then save screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
