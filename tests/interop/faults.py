"""The fault test both device protocols share: kill the device, see the gateway report it, start a
new one on the same port, see the gateway reconnect and publish its value, and check that
reconnecting leaks no sockets."""

import os

from test_system import api


def socket_count(pid):
    fds = os.path.join("/proc", str(pid), "fd")
    count = 0
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def kill_and_restart(gw, token, wait_for, messages, service, connection, data_topic, kill, start, cycles=3):
    """`kill()` ends the device; `start(cycle)` starts a new one and returns the value it will
    publish on `data_topic`. `messages` must include `$SYS/ironbridge/#`."""
    status_topic = f"$SYS/ironbridge/services/{service}/connections/{connection}/status"
    sockets = None
    for cycle in range(cycles):
        kill()
        wait_for(messages, status_topic, lambda p: p["state"] == "reconnecting")
        _, report = api(gw, "GET", f"/api/services/{service}/status", token)
        assert report["deviated"] is True and connection in report["deviations"], report
        value = start(cycle)
        wait_for(messages, status_topic, lambda p: p["state"] == "connected")
        wait_for(messages, data_topic, lambda p: p["value"] == value)
        now = socket_count(gw.process.pid)
        if sockets is None:
            sockets = now
        assert now <= sockets + 1, f"sockets grow across reconnects: {sockets} -> {now}"
    _, report = api(gw, "GET", f"/api/services/{service}/status", token)
    assert report["deviated"] is False, report
