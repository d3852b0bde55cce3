"""The web console's explorer under load, measured in the browser.

Starts the gateway, logs into the console in Debian's Chromium (headless, Playwright), opens the
explorer on `bench/#` with every branch expanded and one topic selected (its chart drawing), and
then publishes N topics each once a second for the given time. In the page it records the
longest frame (the largest gap between animation frames: what a user feels as a stall), the
99th percentile frame, the long tasks, the JS heap of the tab and how long a click on a tree row
takes to show. The baseline, in the same run, is the same page with the same tree (every topic
published once) while no message arrives.

    IRONBRIDGE_BIN=target/release/ironbridge .venv/bin/python bench/console/explorer_bench.py \
        --topics 5000 --seconds 60
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from playwright.sync_api import sync_playwright

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "interop"))
from conftest import ADMIN_PASSWORD, start_gateway, stop_gateway  # noqa: E402
from console_browser import launch  # noqa: E402

# Installed in the page before measuring: frame gaps from requestAnimationFrame and long tasks
# from the PerformanceObserver, kept on window.__bench.
MEASURE = """() => {
  const bench = { frames: [], longTasks: [], last: performance.now(), running: true };
  window.__bench = bench;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) bench.longTasks.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
  const tick = (now) => {
    bench.frames.push(now - bench.last);
    bench.last = now;
    if (bench.running) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""

RESULT = """() => {
  const bench = window.__bench;
  bench.running = false;
  const frames = [...bench.frames].sort((a, b) => a - b);
  const at = (q) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))];
  return {
    frames: frames.length,
    longestFrameMs: frames[frames.length - 1],
    p99FrameMs: at(0.99),
    p50FrameMs: at(0.5),
    longTasks: bench.longTasks.length,
    longTaskMs: bench.longTasks.reduce((a, b) => a + b, 0),
    heapBytes: performance.memory ? performance.memory.usedJSHeapSize : null,
  };
}"""

# How long a click on a tree row takes until the next frame shows it.
CLICK_LATENCY = """async () => {
  const row = document.querySelector('.tree .row[aria-expanded]');
  const start = performance.now();
  row.click();
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const toggled = performance.now() - start;
  row.click();
  return toggled;
}"""


class Publisher(threading.Thread):
    """Publishes every topic once a second (QoS 0), spread evenly over the second."""

    def __init__(self, port: int, topics: list[str]):
        super().__init__(daemon=True)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="explorer-bench", protocol=mqtt.MQTTv5)
        self.client.username_pw_set("admin", ADMIN_PASSWORD)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.topics = topics
        self.stop = threading.Event()
        self.active = threading.Event()
        self.sent = 0
        self.late_seconds = 0

    def run(self):
        batch = 100
        while not self.stop.is_set():
            if not self.active.wait(timeout=0.2):
                continue
            second = time.monotonic()
            for i in range(0, len(self.topics), batch):
                now_ms = int(time.time() * 1000)
                for topic in self.topics[i : i + batch]:
                    payload = json.dumps({"timestamp": now_ms, "value": round(random.uniform(20, 80), 2)})
                    self.client.publish(topic, payload)
                    self.sent += 1
                # Spread the batches over the second rather than one burst.
                due = second + (i + batch) / len(self.topics)
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            left = second + 1 - time.monotonic()
            if left > 0:
                time.sleep(left)
            else:
                self.late_seconds += 1

    def close(self):
        self.stop.set()
        self.join(timeout=5)
        self.client.loop_stop()
        self.client.disconnect()


def measure(page, seconds: float) -> dict:
    page.evaluate(MEASURE)
    clicks = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(min(5, max(0, until - time.monotonic())))
        clicks.append(page.evaluate(CLICK_LATENCY))
    result = page.evaluate(RESULT)
    result["clickToFrameMsMax"] = max(clicks) if clicks else None
    result["clickToFrameMsMedian"] = sorted(clicks)[len(clicks) // 2] if clicks else None
    result["shown"] = page.locator("#explorer-title + .muted").text_content()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    topics = [f"bench/line{i // 500}/machine{(i // 10) % 50}/sensor{i % 10}" for i in range(args.topics)]

    with tempfile.TemporaryDirectory() as data_dir, sync_playwright() as playwright:
        gw = start_gateway(data_dir, anonymous=False)
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            base = f"http://127.0.0.1:{gw.http}"
            page.goto(base + "/")
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.goto(base + "/#/explorer")
            page.get_by_label("Subscribe to").fill("bench/#")
            page.get_by_role("button", name="Apply").click()

            publisher = Publisher(gw.mqtt, topics)
            publisher.start()
            publisher.active.set()
            # Every topic has arrived once: stop, expand every branch and select one topic.
            page.wait_for_function(
                f"() => document.querySelector('#explorer-title + .muted')?.textContent.startsWith('{args.topics:,} topics')",
                timeout=30_000,
            )
            publisher.active.clear()
            page.get_by_role("button", name="Expand all").click()
            page.locator(f'.tree [data-topic="{topics[0]}"]').click()
            page.locator(".sparkline polyline").wait_for(timeout=15_000)
            time.sleep(2)
            idle = measure(page, min(args.seconds, 20))

            publisher.active.set()
            started = time.monotonic()
            loaded = measure(page, args.seconds)
            elapsed = time.monotonic() - started
            publisher.close()
            loaded["published"] = publisher.sent
            loaded["publisherLateSeconds"] = publisher.late_seconds
            loaded["seconds"] = round(elapsed, 1)
            print(json.dumps({"topics": args.topics, "idle": idle, "loaded": loaded}, indent=2))
        finally:
            browser.close()
            stop_gateway(gw)


if __name__ == "__main__":
    main()
