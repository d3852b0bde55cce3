//! `ironbridge agent` next to `ironbridge run`: two processes on this machine, as a plant runs
//! them. One Modbus device is read by the agent, one by the gateway, and a mapping on each side
//! uses the other side's endpoint. The agent is killed and restarted, the gateway is stopped and
//! started again while the agent keeps polling, and every value the agent read arrives, in order.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::free_port;
use protocol_mapper::modbus::simulator::Simulator;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const ADMIN_PASSWORD: &str = "agent-test-admin-password";
const AGENT_PASSWORD: &str = "agent-test-press-password";

const SERVICE: &str = r#"
description: A press line. The press PLC is read by an agent next to it, the oven PLC by the
  gateway; each side maps the other side's values.
metadata:
  name: Press Line
parameters:
  pressPort: {type: integer}
  ovenPort: {type: integer}
resources:
  pressPlc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      agentName: press
      connection:
        host: 127.0.0.1
        port: !ref pressPort
        connectionStrategy: {initialDelay: 100, maxDelay: 1000}
  strokes:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref pressPlc
      qos: 1
      subscribe: {fc: 3, address: 0, length: 1, dataType: uint16BE, interval: 100}
  ovenPlc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection:
        host: 127.0.0.1
        port: !ref ovenPort
  temperature:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref ovenPlc
      subscribe: {fc: 3, address: 0, length: 1, dataType: uint16BE, interval: 200}
  onTheAgent:
    type: Cybus::Mapping
    properties:
      agentName: press
      mappings:
        - subscribe: {endpoint: !ref temperature}
          publish: {topic: "${Cybus::MqttRoot}/seen-by-press/temperature"}
  onTheGateway:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {endpoint: !ref strokes}
          publish: {topic: "${Cybus::MqttRoot}/seen-by-gateway/strokes"}
"#;

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL: nothing gets to clean up.
    fn kill_hard(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and waits for the process to finish.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ports {
    mqtt: u16,
    http: u16,
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap();
    Stdio::from(file)
}

fn start_gateway(data: &Path, logs: &Path, ports: &Ports) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .arg("run")
        .env("IRONBRIDGE_DATA_DIR", data)
        .env("IRONBRIDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("IRONBRIDGE_MQTT_PORT", ports.mqtt.to_string())
        .env("IRONBRIDGE_MQTTS_PORT", free_port().to_string())
        .env("IRONBRIDGE_HTTP_PORT", ports.http.to_string())
        .env("IRONBRIDGE_HTTPS_PORT", free_port().to_string())
        .env("IRONBRIDGE_TLS", "off")
        .stdout(log_file(logs, "gateway.log"))
        .stderr(log_file(logs, "gateway.log"))
        .spawn()
        .unwrap();
    let process = Process(child);
    wait_for_port(ports.mqtt);
    wait_for_port(ports.http);
    process
}

fn start_agent(data: &Path, logs: &Path, ports: &Ports) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_ironbridge"))
        .args(["agent", "--name", "press", "--broker"])
        .arg(format!("mqtt://127.0.0.1:{}", ports.mqtt))
        .arg("--data-dir")
        .arg(data)
        .env("IRONBRIDGE_AGENT_PASSWORD", AGENT_PASSWORD)
        .env("IRONBRIDGE_LOG_LEVEL", "debug")
        .stdout(log_file(logs, "agent.log"))
        .stderr(log_file(logs, "agent.log"))
        .spawn()
        .unwrap();
    Process(child)
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ironbridge <args>` against the gateway, as the admin.
fn cli(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ironbridge"));
    command
        .args(args)
        .env("IRONBRIDGE_URL", format!("http://127.0.0.1:{}", ports.http))
        .env("IRONBRIDGE_PASSWORD", ADMIN_PASSWORD)
        .env_remove("IRONBRIDGE_TOKEN")
        .env_remove("IRONBRIDGE_USERNAME");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// Users for agents, with the agents' password and no roles.
fn create_users(ports: &Ports, names: &[&str]) {
    for name in names {
        let created = cli(
            ports,
            &["user", "create", name],
            &[("IRONBRIDGE_USER_PASSWORD", AGENT_PASSWORD)],
        );
        assert!(created.status.success(), "{created:?}");
    }
}

/// Installs (and enables) the press line with the PLCs on these ports.
fn install_press_line(ports: &Ports, dir: &Path, press_port: u16, oven_port: u16) {
    let file = dir.join("press-line.yml");
    std::fs::write(&file, SERVICE).unwrap();
    let installed = cli(
        ports,
        &[
            "service",
            "install",
            file.to_str().unwrap(),
            "-p",
            &format!("pressPort={press_port}"),
            "-p",
            &format!("ovenPort={oven_port}"),
        ],
        &[],
    );
    // 4: installed and enabled, but deviated while the agent is away.
    assert!(
        matches!(installed.status.code(), Some(0 | 4)),
        "{installed:?}"
    );
}

/// Waits until `ironbridge service status pressline` exits with `code`; its output.
async fn wait_for_status(ports: &Ports, code: i32, within: Duration, logs: &Path) -> String {
    let deadline = Instant::now() + within;
    loop {
        let output = cli(ports, &["service", "status", "pressline"], &[]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.code() == Some(code) {
            return text;
        }
        if Instant::now() > deadline {
            let agent = std::fs::read_to_string(logs.join("agent.log")).unwrap_or_default();
            panic!(
                "service status never exited {code} within {within:?}; last:\n{text}{}\nagent log (tail):\n{}",
                String::from_utf8_lossy(&output.stderr),
                agent
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the observer received: (topic, payload timestamp, value) in arrival order.
type Seen = Arc<Mutex<Vec<(String, i64, serde_json::Value)>>>;

/// An admin MQTT client with a persistent session, so what arrives while the gateway restarts
/// waits for it; it reconnects on its own.
fn observe(ports: &Ports) -> Seen {
    let seen: Seen = Arc::default();
    let mut options = MqttOptions::new("agent-test-observer", "127.0.0.1", ports.mqtt);
    options
        .set_credentials("admin", ADMIN_PASSWORD)
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 1000);
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client
                        .subscribe("services/pressline/#", QoS::AtLeastOnce)
                        .await;
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let value: serde_json::Value =
                        serde_json::from_slice(&publish.payload).unwrap_or_default();
                    let timestamp = value["timestamp"].as_i64().unwrap_or_default();
                    record
                        .lock()
                        .unwrap()
                        .push((publish.topic, timestamp, value["value"].clone()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    seen
}

fn count_on(seen: &Seen, topic: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == topic)
        .count()
}

async fn wait_for_messages(seen: &Seen, topic: &str, more_than: usize, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_on(seen, topic) <= more_than {
        if Instant::now() > deadline {
            let agent = std::fs::read_to_string(logs.join("agent.log")).unwrap_or_default();
            panic!(
                "no new message on {topic}; agent log:\n{}",
                agent.lines().rev().take(30).collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_its_part_survives_restarts_and_loses_nothing_while_the_gateway_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway_data, agent_data, logs) = (
        dir.path().join("gateway"),
        dir.path().join("agent"),
        dir.path().join("logs"),
    );
    std::fs::create_dir_all(&logs).unwrap();
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
    };

    // The press counts strokes; the oven holds a temperature.
    let press = Simulator::start("127.0.0.1:0".parse().unwrap(), 10)
        .await
        .unwrap();
    let oven = Simulator::start("127.0.0.1:0".parse().unwrap(), 10)
        .await
        .unwrap();
    oven.bank().holding[0] = 215;
    let strokes = press.shared_bank();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut bank = strokes.lock().unwrap();
            bank.holding[0] = bank.holding[0].wrapping_add(1);
        }
    });

    let gateway = start_gateway(&gateway_data, &logs, &ports);
    create_users(&ports, &["press"]);
    install_press_line(&ports, dir.path(), press.addr.port(), oven.addr.port());

    // Without its agent the service runs, deviated: the press's resources wait for it.
    let status = wait_for_status(&ports, 4, Duration::from_secs(10), &logs).await;
    assert!(
        status.contains("waiting for its agent") && status.contains("agent press is not connected"),
        "{status}"
    );

    let seen = observe(&ports);
    let agent = start_agent(&agent_data, &logs, &ports);
    let status = wait_for_status(&ports, 0, Duration::from_secs(20), &logs).await;
    assert!(status.contains("connected"), "{status}");
    for topic in [
        "services/pressline/strokes",
        "services/pressline/seen-by-press/temperature",
        "services/pressline/seen-by-gateway/strokes",
    ] {
        wait_for_messages(&seen, topic, 0, &logs).await;
    }
    let temperature = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _, _)| t == "services/pressline/seen-by-press/temperature")
        .map(|(_, _, value)| value.clone());
    assert_eq!(temperature, Some(serde_json::json!(215)));

    // The agent vanishes: the gateway knows within seconds (its will), and a new one picks up
    // where it left off with no manual step.
    agent.kill_hard();
    let vanished = Instant::now();
    let status = wait_for_status(&ports, 4, Duration::from_secs(15), &logs).await;
    assert!(status.contains("agent press is not connected"), "{status}");
    println!("agent loss noticed after {:?}", vanished.elapsed());
    let agent = start_agent(&agent_data, &logs, &ports);
    wait_for_status(&ports, 0, Duration::from_secs(20), &logs).await;
    let before = count_on(&seen, "services/pressline/strokes");
    wait_for_messages(&seen, "services/pressline/strokes", before + 5, &logs).await;

    // The gateway goes away. The agent keeps polling into its queue files; it is even killed
    // and restarted meanwhile. When the gateway is back, everything it read arrives, in order.
    gateway.terminate();
    let outage_started = millis_now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.kill_hard();
    let agent_down = millis_now();
    let agent = start_agent(&agent_data, &logs, &ports);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outage_ended = millis_now();
    let gateway = start_gateway(&gateway_data, &logs, &ports);
    wait_for_status(&ports, 0, Duration::from_secs(30), &logs).await;
    let caught_up = Instant::now() + Duration::from_secs(20);
    loop {
        let latest = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == "services/pressline/strokes")
            .map(|(_, at, _)| *at)
            .max()
            .unwrap_or_default();
        if latest > outage_ended {
            break;
        }
        assert!(Instant::now() < caught_up, "the backlog never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let readings: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| t == "services/pressline/strokes")
        .map(|(_, at, _)| *at)
        .collect();
    // QoS 1 may repeat what was in flight when a link dropped; it must never reorder.
    let mut distinct = readings.clone();
    distinct.dedup();
    assert!(
        distinct.windows(2).all(|pair| pair[0] < pair[1]),
        "readings out of order: {distinct:?}"
    );
    let between = |from: i64, to: i64| {
        distinct
            .iter()
            .filter(|at| (from..to).contains(*at))
            .count()
    };
    // 1.5 s at 100 ms on each side of the kill: what the killed agent had queued, and what the
    // new one read before the gateway came back.
    let before_kill = between(outage_started, agent_down);
    let after_restart = between(agent_down, outage_ended);
    assert!(
        before_kill >= 10 && after_restart >= 10,
        "readings from the outage went missing: {before_kill} from before the agent was killed, {after_restart} after"
    );
    let during_outage = before_kill + after_restart;
    let gaps: Vec<i64> = distinct
        .windows(2)
        .filter(|pair| pair[0] >= outage_started && pair[1] <= outage_ended)
        .map(|pair| pair[1] - pair[0])
        .collect();
    let longest = gaps.iter().copied().max().unwrap_or_default();
    // Only the restart of the agent may leave a hole; before and after it, every poll arrived.
    let holes = gaps.iter().filter(|gap| **gap > 300).count();
    assert!(
        holes <= 1,
        "readings went missing during the outage (gaps {gaps:?}, agent killed at {agent_down})"
    );
    println!(
        "{} readings, {during_outage} from the 3 s outage, longest gap {longest} ms",
        distinct.len()
    );

    let status =
        String::from_utf8_lossy(&cli(&ports, &["service", "status", "pressline"], &[]).stdout)
            .into_owned();
    assert!(status.contains("pressPlc"), "{status}");
    drop((agent, gateway));
    press.stop().await;
    oven.stop().await;
}

/// Subscribes as `user` and tells whether the broker granted it.
async fn may_subscribe(ports: &Ports, user: &str, password: &str, filter: &str) -> bool {
    let mut options = MqttOptions::new(format!("probe-{user}"), "127.0.0.1", ports.mqtt);
    options.set_credentials(user, password);
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.poll())
            .await
            .expect("no SUBACK")
            .unwrap();
        if let Event::Incoming(Packet::SubAck(ack)) = event {
            let _ = client.disconnect().await;
            return ack
                .return_codes
                .iter()
                .all(|code| !matches!(code, rumqttc::SubscribeReasonCode::Failure));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_work_is_its_own_and_its_reach_ends_at_its_services() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
    };
    let _gateway = start_gateway(&dir.path().join("gateway"), &logs, &ports);
    create_users(&ports, &["press", "oven"]);
    install_press_line(&ports, dir.path(), 1, 1);

    let work = "$ironbridge/agents/press/services/+";
    assert!(may_subscribe(&ports, "press", AGENT_PASSWORD, work).await);
    // Nobody else reads it, not another agent, not the administrator.
    assert!(!may_subscribe(&ports, "oven", AGENT_PASSWORD, work).await);
    assert!(!may_subscribe(&ports, "admin", ADMIN_PASSWORD, work).await);
    assert!(!may_subscribe(&ports, "admin", ADMIN_PASSWORD, "$ironbridge/#").await);
    assert!(
        !may_subscribe(
            &ports,
            "admin",
            ADMIN_PASSWORD,
            "$ironbridge/agents/+/status"
        )
        .await
    );
    // Broad filters elsewhere never reach it, so they stay allowed.
    assert!(may_subscribe(&ports, "admin", ADMIN_PASSWORD, "$SYS/#").await);
    assert!(may_subscribe(&ports, "admin", ADMIN_PASSWORD, "#").await);
    assert!(
        may_subscribe(
            &ports,
            "admin",
            ADMIN_PASSWORD,
            "$SYS/ironbridge/services/#"
        )
        .await
    );

    // The agent reaches its services' topics, and nothing else.
    assert!(may_subscribe(&ports, "press", AGENT_PASSWORD, "services/pressline/#").await);
    assert!(!may_subscribe(&ports, "press", AGENT_PASSWORD, "services/other/#").await);
    assert!(!may_subscribe(&ports, "oven", AGENT_PASSWORD, "services/pressline/#").await);

    // Disabled, the service places nothing on the agent, and its reach is gone.
    let disabled = cli(&ports, &["service", "disable", "pressline"], &[]);
    assert!(disabled.status.success(), "{disabled:?}");
    assert!(!may_subscribe(&ports, "press", AGENT_PASSWORD, "services/pressline/#").await);
}
