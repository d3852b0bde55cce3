//! The `ironbridge` binary as an operator runs it: environment overrides, SIGTERM, restart.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &Path, mqtt: u16, http: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data_dir)
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

async fn first_message(port: u16, filter: &str) -> Option<(String, Vec<u8>)> {
    let options = MqttOptions::new("binary-test", "127.0.0.1", port);
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

    let options = MqttOptions::new("publisher", "127.0.0.1", mqtt);
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
