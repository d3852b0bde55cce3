//! The `ironbridge` binary as an operator runs it: environment overrides, SIGTERM, restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use common::free_port;

const ADMIN_PASSWORD: &str = "binary-test-admin";

fn start(data_dir: &Path, mqtt: u16, http: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data_dir)
        .env("IRONBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .env("IRONBRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM and returns the exit status and how long the shutdown took.
fn terminate(child: &mut Child) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn admin_options(client_id: &str, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_credentials("admin", ADMIN_PASSWORD);
    options
}

async fn first_message(port: u16, filter: &str) -> Option<(String, Vec<u8>)> {
    let options = admin_options("binary-test", port);
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let wait = async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                return (p.topic, p.payload.to_vec());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), wait)
        .await
        .ok()
}

#[tokio::test]
async fn runs_with_env_overrides_stops_on_sigterm_and_keeps_retained_messages() {
    let data = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let mut gateway = start(data.path(), mqtt, http);
    wait_for(mqtt);
    wait_for(http);

    let options = admin_options("publisher", mqtt);
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .publish("line/1/state", QoS::AtLeastOnce, true, "running")
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
            break;
        }
    }

    let (status, took) = terminate(&mut gateway);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(5),
        "graceful shutdown took {took:?}"
    );

    let mut gateway = start(data.path(), mqtt, http);
    wait_for(mqtt);
    let got = first_message(mqtt, "line/+/state").await;
    assert_eq!(got, Some(("line/1/state".to_string(), b"running".to_vec())));
    terminate(&mut gateway);
}

#[test]
fn a_bad_settings_file_is_reported_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ironbridge.yaml");
    std::fs::write(&file, "mqtt:\n  port: not-a-port\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ironbridge.yaml") && stderr.contains("port"),
        "{stderr}"
    );
}

/// First start without IRONBRIDGE_ADMIN_PASSWORD: a random password is printed once and written
/// to `<data dir>/initial-admin-password` (mode 0600); a second start keeps the same admin.
/// Anonymous MQTT clients are refused by default.
#[tokio::test]
async fn first_start_generates_the_admin_password_and_refuses_anonymous_clients() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data.path())
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .env_remove("IRONBRIDGE_ADMIN_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(mqtt);
    let file = data.path().join("initial-admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(
        password.len() >= 20,
        "generated password is long: {password:?}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let anonymous = connack(MqttOptions::new("anonymous", "127.0.0.1", mqtt)).await;
    assert!(anonymous.is_err(), "anonymous access is off by default");
    let mut options = MqttOptions::new("admin-client", "127.0.0.1", mqtt);
    options.set_credentials("admin", password.clone());
    assert!(
        connack(options).await.is_ok(),
        "the generated password works for MQTT"
    );

    terminate(&mut gateway);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut gateway.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&password),
        "the password is printed once: {stderr}"
    );

    let mut again = start(data.path(), mqtt, http);
    wait_for(mqtt);
    let mut options = MqttOptions::new("admin-client", "127.0.0.1", mqtt);
    options.set_credentials("admin", password.clone());
    assert!(
        connack(options).await.is_ok(),
        "a restart keeps the first admin (IRONBRIDGE_ADMIN_PASSWORD only applies on first start)"
    );
    terminate(&mut again);
}

/// Scenario: `ironbridge.db` (service and cloud passwords), the token key, the broker snapshot
/// and forwarding queues were 0644 in a 0755 data directory, readable by every local user.
#[tokio::test]
async fn the_data_dir_is_private_and_one_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (mqtt, http) = (free_port(), free_port());
    let mut gateway = start(&data, mqtt, http);
    wait_for(mqtt);
    terminate(&mut gateway);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut pending = vec![data.clone()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path) & 0o077, 0, "{} is private", path.display());
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
            }
        }
    }
    assert!(
        data.join("ironbridge.db").exists() && data.join("api-token-key").exists(),
        "the database and the token key are among the {files} files checked"
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", &data)
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("writable by every user")
            && stderr.contains("IRONBRIDGE_ALLOW_INSECURE_DATA_DIR"),
        "{stderr}"
    );
    let mut overridden = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", &data)
        .env("IRONBRIDGE_ALLOW_INSECURE_DATA_DIR", "true")
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(mqtt);
    terminate(&mut overridden);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut overridden.stdout.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("insecure data directory"), "{log}");
    // The default listeners are open to the network, and the operator is told so.
    assert!(
        log.contains("Listening on every network interface"),
        "{log}"
    );
}

async fn connack(options: MqttOptions) -> Result<(), String> {
    let (_client, mut events) = AsyncClient::new(options, 10);
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

#[test]
fn validate_reports_problems_and_exit_codes() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../commissioning-examples");
    let ok = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("validate")
        .arg(examples.join("modbus-plc.yml"))
        .arg(examples.join("opcua-cnc.yml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // Warnings (a Connectware property without effect here) are printed; the file is valid.
    let warned = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("validate")
        .arg(examples.join("connectware-forms.yml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&warned.stdout);
    assert_eq!(warned.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok (service mill7, 4 resources, 1 warning)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  warning: resources.toPlantTree.properties.inputBuffering: ignored"),
        "{stdout}"
    );
    let broken = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("validate")
        .arg(examples.join("broken.yml"))
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert!(stdout.contains("resources.plcConnection.properties.connection.port: expected integer 0-65535, got string \"5o2\" (line 20, column 15)"), "{stdout}");
}

/// `ironbridge run --demo`: the simulated PLC and CNC machine are read by the demo services,
/// and anonymous clients see their data (the README's first steps), also after a restart.
#[tokio::test]
async fn the_demo_shows_plc_and_cnc_data_to_anonymous_clients() {
    let data = tempfile::tempdir().unwrap();
    let (mqtt, http, modbus, opcua) = (free_port(), free_port(), free_port(), free_port());
    let opcua_server = free_port();
    let start_demo = || {
        Command::new(env!("CARGO_BIN_EXE_ironbridge"))
            .args(["run", "--demo"])
            .env("IRONBRIDGE_DATA_DIR", data.path())
            .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
            .env("IRONBRIDGE_HTTP_PORT", http.to_string())
            .env("IRONBRIDGE_DEMO_MODBUS_PORT", modbus.to_string())
            .env("IRONBRIDGE_DEMO_OPCUA_PORT", opcua.to_string())
            .env(
                "IRONBRIDGE_DEMO_OPCUA_SERVER_PORT",
                opcua_server.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    for run in ["first start", "restart"] {
        let mut gateway = start_demo();
        wait_for(mqtt);
        let started = Instant::now();
        let mut options = MqttOptions::new(format!("demo-viewer-{mqtt}"), "127.0.0.1", mqtt);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 10);
        client
            .subscribe("services/#", QoS::AtMostOnce)
            .await
            .unwrap();
        let wanted = [
            "services/demoplc/line1/twin",
            "services/demoplc/line1/temperature",
            "services/democnc/mill1/spindle/speed",
            "services/democnc/mill1/program/state",
        ];
        let mut seen = std::collections::BTreeMap::new();
        let collect = async {
            while seen.len() < wanted.len() {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if wanted.contains(&&*p.topic) => {
                        let value: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                        seen.insert(p.topic, value);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{run}");
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{run}: {e}"),
                }
            }
        };
        let within = Duration::from_secs(60);
        let timed_out = tokio::time::timeout(within, collect).await.is_err();
        assert!(!timed_out, "{run}: after {within:?} only {seen:?}");
        eprintln!("{run}: all demo data within {:?}", started.elapsed());

        let twin = &seen["services/demoplc/line1/twin"];
        let temperature = twin["temperature"].as_f64().unwrap();
        assert!((57.0..67.0).contains(&temperature), "{twin}");
        assert!(twin["motorRunning"].is_boolean(), "{twin}");
        assert!(twin["parts"].is_u64(), "{twin}");
        let speed = &seen["services/democnc/mill1/spindle/speed"]["value"];
        assert!(speed.as_f64().is_some(), "{speed}");
        let state = &seen["services/democnc/mill1/program/state"]["value"];
        assert!(state == "RUNNING" || state == "IDLE", "{state}");
        // The gateway's own OPC UA server offers the line's values to OPC UA clients.
        let browsed = demo_opcua_variables(opcua_server, data.path()).await;
        assert_eq!(
            browsed,
            [
                "PackagingLine/MotorRunning Boolean",
                "PackagingLine/PartsProduced UInt32",
                "PackagingLine/Pressure UInt16",
                "PackagingLine/Temperature Double",
                "PackagingLine/TemperatureSetpoint Double writable",
            ],
            "{run}"
        );
        let (status, _) = terminate(&mut gateway);
        assert!(status.success(), "{run}: {status}");
    }
}

/// The variables of the demo's OPC UA server, browsed anonymously as a UaExpert user would.
async fn demo_opcua_variables(port: u16, data: &std::path::Path) -> Vec<String> {
    use commissioning::model::{
        MessageSecurityMode, OpcuaConnection, OpcuaOptions, SecurityPolicy,
    };
    use protocol_mapper::opcua::discover::{Options, discover};
    let options = Options {
        connection: OpcuaConnection {
            host: "127.0.0.1".into(),
            port,
            resource_path: Some("/ironbridge".into()),
            username: None,
            password: None,
            options: Some(OpcuaOptions {
                security_policy: Some(SecurityPolicy::None),
                message_security_mode: Some(MessageSecurityMode::None),
                connection_strategy: None,
            }),
            client_certificate: None,
            client_private_key: None,
            trusted_server_certificates: Vec::new(),
            connection_strategy: None,
        },
        root: None,
        max_depth: 3,
        max_nodes: 100,
    };
    let found = discover(&options, data.join("viewer-pki"), |_, _| {})
        .await
        .unwrap();
    let mut variables: Vec<String> = found
        .variables
        .iter()
        .map(|v| {
            let writable = if v.writable { " writable" } else { "" };
            format!("{} {}{writable}", v.path.join("/"), v.data_type)
        })
        .collect();
    variables.sort();
    variables
}

/// Reads from `stream` until the peer closes it; the time that took, or `None` when it was
/// still open after `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            Err(_) => return None,
        }
    }
}

fn health_answers(http: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", http)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = "GET /api/system/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Scenario: connections that sent half their headers, or nothing, stayed open for minutes;
/// 1,100 of them used up a 1,024 file-descriptor limit and MQTT and the API stopped answering.
#[test]
fn idle_and_slow_http_clients_are_closed_and_a_flood_never_stops_the_listener() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    // A small descriptor limit (soft and hard, so the gateway cannot raise it) and a short
    // header time-out make the flood quick.
    let mut gateway = Command::new("prlimit")
        .arg("--nofile=128:128")
        .arg(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data.path())
        .env("IRONBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .env("IRONBRIDGE_ADMIN_HEADER_READ_TIMEOUT_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(http);

    // Nothing sent, and half a request: both closed after the header time-out.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    let mut half = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    half.write_all(b"GET /api/system/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let closed = closed_within(stream, Duration::from_secs(10));
        assert!(closed.is_some(), "still open after 10 s");
    }

    // A flood far beyond the descriptor limit: accepting fails while it lasts...
    let flood: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", http)).ok())
        .collect();
    assert!(
        flood.len() > 128,
        "the flood opened {} connections",
        flood.len()
    );
    // ...and once the flood is gone (closed by the time-out or by the clients), the API and
    // MQTT answer again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !health_answers(http) {
        assert!(
            Instant::now() < deadline,
            "the API does not answer after the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_ok());
    terminate(&mut gateway);
}

/// Scenario: nothing bounded the number of open HTTP connections.
#[test]
fn http_connections_beyond_the_limit_are_closed_at_once() {
    let data = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data.path())
        .env("IRONBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
        .env("IRONBRIDGE_HTTP_PORT", http.to_string())
        .env("IRONBRIDGE_ADMIN_MAX_CONNECTIONS", "4")
        .env("IRONBRIDGE_ADMIN_HEADER_READ_TIMEOUT_SECS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(http);
    // wait_for's probe connection may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", http)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    let closed = closed_within(&mut fifth, Duration::from_secs(2));
    assert!(closed.is_some(), "the fifth connection is closed at once");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health_answers(http) {
        assert!(Instant::now() < deadline, "slots come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(&mut gateway);
}
