"""The web console in a real browser (Debian's Chromium, headless, driven by Playwright) against
the real binary running the demo: log in, install a file with a mistake and fix it, watch the
demo's values arrive in the explorer, write a setpoint, disable a service, and a restricted
user who sees and does only what their permissions allow. A failed test leaves a screenshot of
every page in target/console-screenshots/.
"""

import json
import os
import re
import tempfile
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ADMIN_PASSWORD, free_port, start_gateway, stop_gateway
from console_browser import launch, save_screenshots

# Demo values arrive every second; a few seconds covers a slow CI machine.
ARRIVES = 15_000

# A page that stops answering (a script in a loop) blocks some browser calls for good; the test
# then fails with every thread's stack instead of holding the whole run.
pytestmark = pytest.mark.timeout(180, method="thread")

MISTAKE_LINE = 34
FILE_WITH_MISTAKE = """\
description: A second line's temperature, installed from the console's test.

metadata:
  name: Console Line

parameters:
  plcPort:
    type: integer
    description: Port of the PLC
    default: 502
    minimum: 1
    maximum: 65535

resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection:
        host: 127.0.0.1
        port: !ref plcPort

  temperature:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      topic: line2/temperature
      subscribe:
        fc: 3
        address: 0
        length: 2
        dataType: floatBE
        intervall: 500
"""


# Reads the pressure through consolespare's connection.
DEPENDENT_FILE = """\
metadata:
  name: Console Dependent

resources:
  pressure:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref consolespare::plc
      subscribe: {fc: 3, address: 2, length: 1, interval: 1000}
"""


@pytest.fixture(scope="module")
def demo():
    """The gateway with the demo's machines; anonymous MQTT off, as in production."""
    with tempfile.TemporaryDirectory() as data_dir:
        modbus_port, opcua_port = free_port(), free_port()
        gw = start_gateway(
            data_dir,
            anonymous=False,
            extra_env={
                "IRONBRIDGE_DEMO_ENABLED": "true",
                "IRONBRIDGE_DEMO_MODBUS_PORT": str(modbus_port),
                "IRONBRIDGE_DEMO_OPCUA_PORT": str(opcua_port),
                "IRONBRIDGE_DEMO_OPCUA_SERVER_PORT": str(free_port()),
            },
        )
        gw.demo_modbus_port = modbus_port
        gw.demo_opcua_port = opcua_port
        gw.base = f"http://127.0.0.1:{gw.http}"
        try:
            yield gw
        finally:
            if gw.process.poll() is None:
                stop_gateway(gw)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, demo, request):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield page
    failed = any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        for path in save_screenshots(context, request.node.name):
            print(f"screenshot: {path}")
        print("the page's console:", *console[-50:], sep="\n  ")
    context.close()
    assert not errors, f"the console threw: {errors}"


def log_in(page, demo, username="admin", password=ADMIN_PASSWORD):
    page.goto(demo.base + "/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def api(demo, method, path, body=None, token=None):
    request = urllib.request.Request(
        demo.base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def admin_token(demo):
    return api(demo, "POST", "/api/login", {"username": "admin", "password": ADMIN_PASSWORD})["token"]


def open_topic(page, topic):
    """Expands the tree down to `topic` and selects it."""
    levels = topic.split("/")
    for depth in range(1, len(levels)):
        row = page.locator(f'.tree [data-topic="{"/".join(levels[:depth])}"]')
        expect(row).to_be_visible(timeout=ARRIVES)
        if row.get_attribute("aria-expanded") != "true":
            row.locator(".twisty").click()
    leaf = page.locator(f'.tree [data-topic="{topic}"]')
    expect(leaf).to_be_visible(timeout=ARRIVES)
    leaf.click()
    expect(page.locator(".topic-detail h2")).to_have_text(topic)


def shown_value(page):
    return json.loads(page.locator(".topic-detail pre.payload").text_content())["value"]


def test_the_console_is_served_at_the_root_and_loads_nothing_from_elsewhere(page, demo):
    with urllib.request.urlopen(demo.base + "/", timeout=10) as response:
        assert response.headers["content-type"] == "text/html"
        assert "default-src 'self'" in response.headers["content-security-policy"]
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    log_in(page, demo)
    page.goto(demo.base + "/#/explorer")
    expect(page.locator(".tree .row").first).to_be_visible(timeout=ARRIVES)
    foreign = [url for url in requested if not url.startswith((demo.base, "ws://127.0.0.1", "data:", "blob:"))]
    assert foreign == [], foreign
    assert any(url.endswith("/console/vendor/vendor.js") for url in requested)


def test_login_shows_the_apis_refusal_then_logs_in_and_out_by_keyboard(page, demo):
    page.goto(demo.base + "/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")

    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Services")).to_be_visible()
    for service in ("demoplc", "democnc", "demoopcua"):
        expect(page.locator(f'tr[data-service="{service}"]')).to_contain_text("enabled")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    # The session survives a reload (the token is kept for the tab).
    page.reload()
    expect(page.get_by_role("heading", name="Services")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("You logged out.")
    expect(page.get_by_label("User name")).to_be_visible()


def test_install_shows_the_mistake_at_its_line_then_installs_the_fixed_file(page, demo, tmp_path):
    log_in(page, demo)
    page.get_by_role("link", name="Install service").click()
    path = tmp_path / "console-line.yml"
    path.write_text(FILE_WITH_MISTAKE)
    page.get_by_label("Open a commissioning file").set_input_files(str(path))

    diagnostic = page.locator("ul.diagnostics li")
    expect(diagnostic).to_have_count(1, timeout=ARRIVES)
    expect(diagnostic).to_contain_text(f"line {MISTAKE_LINE}")
    expect(diagnostic).to_contain_text("unknown property `intervall`; did you mean `interval`?")
    # The editor marks the line itself: an error marker in the gutter and the text underlined.
    expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
    expect(page.locator(".cm-lintRange-error")).to_contain_text("500")
    expect(page.get_by_role("button", name="Install")).to_be_disabled()

    # The declared parameter is a typed form field with its bounds and default.
    port = page.get_by_label("plcPort (integer)")
    assert port.get_attribute("type") == "number"
    assert port.get_attribute("min") == "1" and port.get_attribute("max") == "65535"
    assert port.get_attribute("placeholder") == "502"
    # An out-of-range value is the gateway's diagnostic too.
    port.fill("70000")
    expect(page.locator("ul.diagnostics")).to_contain_text("plcPort")
    port.fill(str(demo.demo_modbus_port))

    # Fix the typo in the editor, as a user would.
    page.locator(".cm-content span", has_text=re.compile("^intervall$")).dblclick()
    page.keyboard.type("interval")
    expect(page.locator("ul.diagnostics li")).to_have_count(0, timeout=ARRIVES)
    expect(page.locator(".editor-toolbar .validation")).to_have_text("valid")

    page.get_by_role("button", name="Install").click()
    expect(page).to_have_url(re.compile(r"#/services/consoleline$"))
    expect(page.locator('tr[data-resource="plc"]')).to_contain_text("connected", timeout=ARRIVES)
    expect(page.locator('tr[data-resource="temperature"]')).to_contain_text("running")
    # The connection's counters, in words: values read, and how long ago the last one came.
    plc = page.locator('tr[data-resource="plc"]')
    expect(plc.locator('[data-metric="values"] dt')).to_have_text("values")
    expect(plc.locator('[data-metric="values"] dd')).not_to_have_text("0", timeout=ARRIVES)
    expect(plc.locator('[data-metric="lastValueAt"]')).to_contain_text(re.compile(r"last value\s*\d+ s ago"))
    # And each endpoint its own, so a tag that went quiet stands out.
    temperature = page.locator('tr[data-resource="temperature"]')
    expect(temperature.locator('[data-metric="values"] dd')).not_to_have_text("0", timeout=ARRIVES)

    # What was installed is what the editor showed, with the parameter from the form.
    detail = api(demo, "GET", "/api/services/consoleline", token=admin_token(demo))
    assert "interval: 500" in detail["commissioningFile"]
    assert detail["parameters"] == {"plcPort": demo.demo_modbus_port}


def test_discovering_an_opcua_server_puts_its_file_in_the_editor(page, demo):
    log_in(page, demo)
    page.goto(demo.base + "/#/services/install")
    discovery = page.locator("details.discovery")
    discovery.get_by_text("Discover the variables of an OPC UA server").click()
    # A URL the gateway refuses: its reason, in its words.
    discovery.get_by_label("Server URL").fill("http://127.0.0.1:4840")
    discovery.get_by_role("button", name="Browse").click()
    expect(discovery.get_by_role("alert")).to_contain_text("is not an opc.tcp:// URL")

    # The demo CNC's server: the gateway browses it and writes the file, which validates.
    discovery.get_by_label("Server URL").fill(f"opc.tcp://127.0.0.1:{demo.demo_opcua_port}")
    discovery.get_by_role("button", name="Browse").click()
    expect(discovery.get_by_role("status")).to_contain_text(re.compile(r"Found [1-9][\d,]* variables"), timeout=ARRIVES)
    expect(discovery.get_by_role("alert")).to_have_count(0)
    expect(page.locator(".cm-content")).to_contain_text("Cybus::Endpoint")
    expect(page.locator(".cm-content")).to_contain_text("nodeId: 'ns=2;s=Machine.Spindle.Speed'")
    expect(page.locator(".editor-toolbar .validation")).to_have_text(re.compile(r"^\s*valid"), timeout=ARRIVES)
    # The server's address became the file's parameters, with what was browsed as defaults.
    expect(page.get_by_label("opcuaPort (integer)")).to_have_attribute("placeholder", str(demo.demo_opcua_port))


def test_explorer_shows_the_demo_values_live(page, demo):
    log_in(page, demo)
    page.get_by_role("link", name="Explorer").click()
    topic = "services/demoplc/line1/temperature"
    open_topic(page, topic)
    first = shown_value(page)
    assert 50 < first < 75, first
    # Pushed, not polled: the count of messages on the topic grows while we watch.
    detail = page.locator(".topic-detail .topic-stats")
    count = lambda: int(re.match(r"([\d,]+) messages", detail.text_content()).group(1).replace(",", ""))
    before = count()
    expect(detail).not_to_contain_text(f"{before} messages", timeout=ARRIVES)
    # The branch counts topics and messages; numeric values get a chart.
    expect(page.locator('.tree [data-topic="services/demoplc/line1"] .counts')).to_contain_text("·")
    expect(page.locator(".sparkline polyline")).to_be_visible(timeout=ARRIVES)

    # Pause freezes the view; resume brings it up to date.
    page.get_by_role("button", name="Pause").click()
    frozen = detail.text_content()
    page.wait_for_timeout(2500)
    assert detail.text_content() == frozen
    page.get_by_role("button", name="Resume").click()
    expect(detail).not_to_have_text(frozen, timeout=ARRIVES)

    # The tree works from the keyboard: arrows move between rows, expand and collapse.
    line1 = page.locator('.tree [data-topic="services/demoplc/line1"]')
    line1.focus()
    page.keyboard.press("ArrowLeft")
    expect(line1).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("ArrowRight")
    expect(line1).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.topic").startswith("services/demoplc/line1/")

    # A wildcard filter subscribes to that part of the tree only.
    page.get_by_label("Subscribe to").fill("services/+/mill1/#")
    page.get_by_role("button", name="Apply").click()
    # The mill's two topics (feed, spindle speed) have both arrived: expand everything.
    expect(page.locator("#explorer-title + .muted")).to_have_text(re.compile(r"^2 topics"), timeout=ARRIVES)
    page.get_by_role("button", name="Expand all").click()
    expect(page.locator('.tree [data-topic="services/democnc/mill1/spindle/speed"]')).to_be_visible(timeout=ARRIVES)
    expect(page.locator('.tree [data-topic="services/demoplc"]')).to_have_count(0)
    # A branch that arrives after "Expand all" is open too.
    publish = page.locator("form.publish")
    publish.get_by_label("Topic").fill("services/democnc/mill1/late/branch/value")
    publish.get_by_label("Payload").fill("1")
    publish.get_by_role("button", name="Publish").click()
    expect(page.locator('.tree [data-topic="services/democnc/mill1/late/branch/value"]')).to_be_visible(timeout=ARRIVES)

    # Publish from the console; the message comes back through the broker.
    page.get_by_label("Subscribe to").fill("console/#")
    page.get_by_role("button", name="Apply").click()
    page.locator("form.publish").get_by_label("Topic").fill("console/test/hello")
    page.locator("form.publish").get_by_label("Payload").fill('{"greeting": "hello", "value": 7}')
    page.locator("form.publish").get_by_role("button", name="Publish").click()
    expect(page.locator("form.publish")).to_contain_text("Published to console/test/hello")
    open_topic(page, "console/test/hello")
    expect(page.locator(".topic-detail pre.payload")).to_contain_text('"greeting": "hello"')


def test_writing_the_setpoint_changes_the_line_temperature(page, demo):
    log_in(page, demo)
    page.get_by_role("link", name="Explorer").click()
    open_topic(page, "services/demoplc/line1/temperature")
    write = page.locator("form.write")
    write.get_by_label("Endpoint topic").fill("services/demoplc/line1/temperature/setpoint")
    write.get_by_label("Value").fill("90")
    write.get_by_role("button", name="Write").click()
    answer = write.locator(".answer pre")
    expect(answer).to_contain_text('"result"', timeout=ARRIVES)
    # The PLC's temperature swings around the setpoint within ±4.3.
    page.wait_for_function(
        """() => {
            const text = document.querySelector('.topic-detail pre.payload')?.textContent;
            try { return JSON.parse(text).value > 84; } catch { return false; }
        }""",
        timeout=ARRIVES,
    )
    # Back to the default, so the other tests see the usual line.
    write.get_by_label("Value").fill("62")
    write.get_by_role("button", name="Write").click()
    expect(answer).to_contain_text('"result"', timeout=ARRIVES)


def test_disabling_a_service_changes_its_state(page, demo):
    log_in(page, demo)
    page.locator('a[href="#/services/democnc"]').click()
    expect(page.locator('tr[data-resource="cnc"]')).to_contain_text("connected", timeout=ARRIVES)
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".summary")).to_contain_text("disabled", timeout=ARRIVES)
    expect(page.locator('tr[data-resource="cnc"]')).not_to_contain_text("connected", timeout=ARRIVES)
    page.get_by_role("link", name="Back to services").click()
    expect(page.locator('tr[data-service="democnc"]')).to_contain_text("disabled")
    page.locator('a[href="#/services/democnc"]').click()
    page.get_by_role("button", name="Enable").click()
    expect(page.locator('tr[data-resource="cnc"]')).to_contain_text("connected", timeout=ARRIVES)


def test_the_list_says_why_a_service_is_not_as_it_should_be(page, demo):
    unreachable = FILE_WITH_MISTAKE.replace("intervall", "interval").replace("Console Line", "Console Unreachable")
    token = admin_token(demo)
    api(demo, "POST", "/api/services", {"commissioningFile": unreachable, "parameters": {"plcPort": free_port()}}, token)
    try:
        log_in(page, demo)
        row = page.locator('tr[data-service="consoleunreachable"]')
        expect(row).to_contain_text("deviated", timeout=ARRIVES)
        expect(row.locator(".trouble")).to_contain_text("not as wanted: plc", timeout=ARRIVES)
    finally:
        api(demo, "DELETE", "/api/services/consoleunreachable", token=token)


def test_reconfigure_shows_which_resources_restart_and_delete_asks_first(page, demo):
    token = admin_token(demo)
    file = FILE_WITH_MISTAKE.replace("intervall", "interval").replace("Console Line", "Console Spare")
    api(demo, "POST", "/api/services", {"commissioningFile": file, "parameters": {"plcPort": demo.demo_modbus_port}}, token)
    log_in(page, demo)
    page.goto(demo.base + "/#/services/consolespare")
    page.get_by_role("button", name="Reconfigure").click()
    page.get_by_label("plcPort (integer)").fill(str(demo.demo_modbus_port))
    # The editor draws only the lines in view: go to the end, where the topic is, and retype
    # that line (End, then Shift+Home selects it up to its indentation).
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.locator(".cm-line", has_text="topic: line2/temperature").click()
    page.keyboard.press("End")
    page.keyboard.press("Shift+Home")
    page.keyboard.type("topic: line3/temperature")
    expect(page.locator(".editor-toolbar .validation")).to_have_text("valid", timeout=ARRIVES)
    page.get_by_role("button", name="Apply…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("These resources will restart or be removed")
    expect(dialog.locator("ul.changed li")).to_have_text(["temperature"])
    dialog.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status").filter(has_text="Reconfigured")).to_contain_text("restarted: temperature")

    # A service that reads through this one's connection: the page names it, and the delete
    # dialog says the gateway will refuse until it is gone.
    api(demo, "POST", "/api/services", {"commissioningFile": DEPENDENT_FILE}, token)
    page.reload()
    expect(page.locator(".dependencies")).to_have_text("Used by consoledependent")
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be undone")
    expect(dialog.locator(".warning")).to_contain_text("consoledependent")
    dialog.get_by_role("button", name="Cancel").click()
    page.locator(".dependencies a", has_text="consoledependent").click()
    expect(page.locator(".dependencies")).to_have_text("Depends on consolespare")
    api(demo, "DELETE", "/api/services/consoledependent", token=token)
    page.goto(demo.base + "/#/services/consolespare")
    expect(page.locator(".dependencies")).to_have_count(0)
    expect(page.get_by_role("heading", name=re.compile("Console Spare"))).to_be_visible()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"#/services$"))
    expect(page.locator('tr[data-service="consolespare"]')).to_have_count(0)


def test_a_restricted_user_sees_and_does_only_what_their_permissions_allow(page, demo, browser):
    # The administrator creates the user in the console, with the permission editor.
    log_in(page, demo)
    page.get_by_role("link", name="Users").click()
    page.get_by_role("button", name="New user").click()
    form = page.get_by_role("form", name="New user")
    form.get_by_label("User name").fill("operator")
    form.get_by_label("Password").fill("operator-password-1")
    for context, resource, operation in (("mqtt", "services/demoplc/#", "read"), ("http", "/api/services/#", "read")):
        form.get_by_role("button", name="Add permission").click()
        row = form.locator("li.permission").last
        row.get_by_label("Context").select_option(context)
        row.get_by_label("Resource").fill(resource)
        row.get_by_label("Operation").select_option(operation)
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text("Created operator.")
    expect(page.locator('tr[data-user="operator"]')).to_contain_text("services/demoplc/#")

    operator = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    try:
        log_in(operator, demo, "operator", "operator-password-1")
        nav = operator.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link")).to_have_text(["Services", "Explorer"])
        expect(operator.locator('tr[data-service="demoplc"]')).to_be_visible()
        expect(operator.get_by_role("link", name="Install service")).to_have_count(0)
        # A page the user may not open leads back to one they may.
        operator.goto(demo.base + "/#/users")
        expect(operator).to_have_url(re.compile(r"#/services$"))
        # No actions on a service they may only read.
        operator.goto(demo.base + "/#/services/demoplc")
        expect(operator.locator('tr[data-resource="plc"]')).to_be_visible()
        expect(operator.get_by_role("button", name="Disable")).to_have_count(0)
        # What the API refuses is shown in its own words.
        operator.goto(demo.base + "/#/services/install")
        operator.get_by_label("Open a commissioning file").set_input_files(
            files=[{"name": "x.yml", "mimeType": "application/yaml", "buffer": FILE_WITH_MISTAKE.encode()}]
        )
        expect(operator.get_by_role("alert")).to_contain_text(
            'user "operator" has no http write permission on /api/validate/service', timeout=ARRIVES
        )

        # The explorer subscribes to what the user may read, and the broker keeps the rest away.
        operator.goto(demo.base + "/#/explorer")
        expect(operator.get_by_label("Subscribe to")).to_have_value("services/demoplc/#")
        open_topic(operator, "services/demoplc/line1/temperature")
        operator.get_by_role("button", name="Expand all").click()
        expect(operator.locator('.tree [data-topic="services/democnc"]')).to_have_count(0)
        operator.get_by_label("Subscribe to").fill("services/democnc/#")
        operator.get_by_role("button", name="Apply").click()
        expect(operator.get_by_role("alert")).to_contain_text("The broker refused services/democnc/#", timeout=ARRIVES)
        # Writing is not theirs either.
        write = operator.locator("form.write")
        write.get_by_label("Endpoint topic").fill("services/demoplc/line1/temperature/setpoint")
        write.get_by_label("Value").fill("99")
        write.get_by_role("button", name="Write").click()
        expect(write.get_by_role("alert")).to_contain_text("refused", timeout=ARRIVES)

        # Their own account: what they may do, and a new password, which ends the session.
        operator.get_by_role("link", name="operator").click()
        expect(operator.locator("main#main")).to_contain_text("services/demoplc/#")
        operator.get_by_label("Current password").fill("operator-password-1")
        operator.get_by_label("New password").fill("operator-password-2")
        operator.get_by_role("button", name="Change password").click()
        expect(operator.get_by_role("status")).to_contain_text("Your password was changed")
        log_in(operator, demo, "operator", "operator-password-2")
    finally:
        operator.context.close()


def test_a_token_the_gateway_refuses_returns_to_the_login_page(page, demo):
    log_in(page, demo)
    page.evaluate(
        """() => {
            const session = JSON.parse(sessionStorage.getItem('ironbridge.session'));
            session.token = session.token.slice(0, -4) + 'AAAA';
            sessionStorage.setItem('ironbridge.session', JSON.stringify(session));
        }"""
    )
    page.reload()
    expect(page.get_by_label("User name")).to_be_visible(timeout=ARRIVES)
    expect(page.get_by_role("status")).to_contain_text("log in again")


def test_every_page_labels_its_fields_and_fits_a_tablet(page, demo):
    log_in(page, demo)
    for width, height in ((1280, 860), (768, 1024)):
        page.set_viewport_size({"width": width, "height": height})
        for route in ("services", "services/install", "services/demoplc", "explorer", "users", "roles", "system"):
            page.goto(f"{demo.base}/#/{route}")
            expect(page.locator("main#main h1")).to_be_visible()
            page.wait_for_timeout(300)
            unlabelled = page.evaluate(
                """() => [...document.querySelectorAll('input, select, textarea')]
                    .filter((e) => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
                    .map((e) => e.outerHTML)"""
            )
            assert unlabelled == [], f"{route}: {unlabelled}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{route} at {width}px is {overflow}px too wide"


def test_the_console_modules_agree_with_the_gateway(page, demo):
    """The pure modules, loaded as the console loads them: the permission coverage mirrors
    admin/src/access.rs case by case, and the topic tree counts per branch."""
    log_in(page, demo)
    result = page.evaluate(
        """async () => {
            const { covers } = await import('/console/lib/access.js');
            const { Expansion, TopicStore, numericValue, payloadValue } = await import('/console/lib/topic-store.js');
            const cases = [
                ['#', 'a/b', true], ['#', '$SYS/broker/uptime', true], ['a/#', 'a', true],
                ['a/#', 'a/b/c', true], ['a/#', 'b', false], ['a/+', 'a/b', true],
                ['a/+', 'a/b/c', false], ['a/+', 'a/+', true], ['a/+', 'a/#', false],
                ['a/b', 'a/b', true], ['a/b', 'a/+', false],
                ['services/+/#', 'services/plc/temperature', true],
                ['/api/services/#', '/api/services', true],
                ['/api/services/#', '/api/services/plc/status', true],
                ['/api/services/+', '/api/services/plc/status', false],
                ['/api/users', '/api/users/x', false],
            ];
            const wrong = cases.filter(([p, t, expected]) => covers(p, t) !== expected);
            const store = new TopicStore({ historyLength: 3 });
            const bytes = (text) => new TextEncoder().encode(text);
            for (let i = 0; i < 5; i++) store.add('plant/line1/temp', bytes(`{"value": ${i}}`), false, 1000 * i);
            store.add('plant/line1/state', bytes('running'), true, 5000);
            store.add('plant/line2/temp', bytes('21.5'), false, 6000);
            const line1 = store.node('plant/line1');
            const temp = store.entries.get('plant/line1/temp');
            return {
                wrong,
                plant: [store.node('plant').topics, store.node('plant').messages],
                line1: [line1.topics, line1.messages],
                history: temp.history.map(([, v]) => v),
                rows: store.rows(new Set(['plant'])).map((r) => `${r.depth}:${r.node.name}`),
                // "Expand all" opens branches that arrive later too, except those closed since.
                allButLine2: (() => {
                    const expansion = Expansion.every().toggle('plant/line2');
                    store.add('plant/line3/temp', bytes('20'), false, 7000);
                    return store.rows(expansion).map((r) => `${r.depth}:${r.node.name}`);
                })(),
                numbers: ['42', ' -1.5 ', '{"value": 3}', '{"value": "x"}', 'on', ''].map(numericValue),
                summaries: ['{"timestamp": 1, "value": 64.5}', '{"value": true}', '{"value": "on"}', '{"a": 1}', 'running']
                    .map((t) => payloadValue(t).summary),
            };
        }"""
    )
    assert result["wrong"] == []
    assert result["plant"] == [3, 7]
    assert result["line1"] == [2, 6]
    assert result["history"] == [2, 3, 4], "the history keeps the newest values"
    assert result["rows"] == ["0:plant", "1:line1", "1:line2"]
    assert result["allButLine2"] == [
        "0:plant", "1:line1", "2:state", "2:temp", "1:line2", "1:line3", "2:temp",
    ]
    assert result["numbers"] == [42, -1.5, 3, None, None, None]
    # A row shows the value of the gateway's envelope, anything else as it came.
    assert result["summaries"] == ["64.5", "true", "on", '{"a": 1}', "running"]


def test_a_dropped_file_is_loaded_and_validated(page, demo):
    log_in(page, demo)
    page.goto(demo.base + "/#/services/install")
    fixed = FILE_WITH_MISTAKE.replace("intervall", "interval")
    page.locator(".drop-zone").dispatch_event(
        "drop",
        {
            "dataTransfer": page.evaluate_handle(
                """(text) => {
                    const transfer = new DataTransfer();
                    transfer.items.add(new File([text], 'line.yml', { type: 'application/yaml' }));
                    return transfer;
                }""",
                fixed,
            )
        },
    )
    expect(page.locator(".cm-content")).to_contain_text("name: Console Line")
    expect(page.locator(".editor-toolbar .validation")).to_have_text("valid", timeout=ARRIVES)
    expect(page.get_by_label("plcPort (integer)")).to_be_visible()
