//! `broker.external`: the built-in broker stays off and every component (device
//! connections, endpoint rules, mappings, the status publisher) is an MQTT client of an existing
//! broker; Debian's Mosquitto, with a password, plays the plant's broker cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway::Gateway;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::common::mosquitto::Mosquitto;
use crate::common::{free_port, http_get, settings};

/// Everything published on the broker, latest per topic.
struct Observer {
    client: AsyncClient,
    latest: tokio::sync::watch::Receiver<BTreeMap<String, Value>>,
}

impl Observer {
    async fn connect(port: u16) -> Observer {
        let mut options = MqttOptions::new("plant-dashboard", "127.0.0.1", port);
        options.set_credentials("dashboard", "dashboard-secret");
        let (client, mut events) = AsyncClient::new(options, 64);
        client.subscribe("#", QoS::AtMostOnce).await.unwrap();
        let (tx, latest) = tokio::sync::watch::channel(BTreeMap::new());
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let value = serde_json::from_slice(&p.payload)
                            .unwrap_or_else(|_| Value::String(format!("{:?}", p.payload)));
                        tx.send_modify(|m| {
                            m.insert(p.topic.clone(), value);
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Observer { client, latest }
    }

    /// Waits up to 20 s for `topic` to carry a value that satisfies `check`.
    async fn wait_for(&mut self, topic: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = self.latest.borrow().get(topic).filter(|v| check(v)) {
                return value.clone();
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let changed = tokio::time::timeout(remaining, self.latest.changed()).await;
            assert!(
                changed.is_ok(),
                "nothing on {topic} within 20 s; seen: {:?}",
                self.latest.borrow().keys().collect::<Vec<_>>()
            );
        }
    }
}

#[tokio::test]
async fn every_component_works_through_an_external_broker() {
    let mosquitto = Mosquitto::start("", "password_file {dir}/passwords", |dir| {
        for (user, password) in [("gateway", "gw-secret"), ("dashboard", "dashboard-secret")] {
            let file = dir.join("passwords");
            let mut command = std::process::Command::new("mosquitto_passwd");
            if !file.exists() {
                command.arg("-c");
            }
            let status = command
                .arg("-b")
                .arg(&file)
                .args([user, password])
                .status()
                .unwrap();
            assert!(status.success());
        }
    });
    let mut observer = Observer::connect(mosquitto.port).await;

    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "external-admin");
    s.broker.external = Some(format!(
        "mqtt://gateway:gw-secret@127.0.0.1:{}",
        mosquitto.port
    ));
    s.demo.enabled = true;
    s.demo.modbus_port = 0;
    s.demo.opcua_port = 0;
    s.demo.opcua_server_port = free_port();
    let gw = Gateway::start(s).await.unwrap();
    assert!(
        gw.broker().is_none() && gw.mqtt_addr.is_none(),
        "no broker of our own"
    );

    // Device data through endpoint rules (Modbus) and subscriptions (OPC UA), and a mapping
    // that subscribes to four endpoints and publishes the twin, all via Mosquitto.
    let temperature = observer
        .wait_for("services/demoplc/line1/temperature", |v| {
            v["value"].is_number()
        })
        .await;
    assert!(temperature["timestamp"].is_u64(), "{temperature}");
    observer
        .wait_for("services/democnc/mill1/spindle/speed", |v| {
            v["value"].is_number()
        })
        .await;
    let twin = observer
        .wait_for("services/demoplc/line1/twin", |v| v["parts"].is_u64())
        .await;
    assert!(twin["motorRunning"].is_boolean(), "{twin}");
    // Status topics move out of `$SYS`, which brokers keep for themselves.
    let status = observer
        .wait_for(
            "ironbridge/sys/services/demoplc/connections/plc/status",
            |v| v["state"] == "connected",
        )
        .await;
    assert_eq!(status["state"], "connected");

    // A write from a client of the external broker reaches the PLC; the answer comes back.
    observer
        .client
        .publish(
            "services/demoplc/line1/temperature/setpoint/set",
            QoS::AtLeastOnce,
            false,
            r#"{"value": 75.0}"#,
        )
        .await
        .unwrap();
    let answer = observer
        .wait_for("services/demoplc/line1/temperature/setpoint/res", |_| true)
        .await;
    assert_eq!(answer["result"]["value"], 75.0, "{answer}");
    observer
        .wait_for("services/demoplc/line1/temperature", |v| {
            v["value"].as_f64().is_some_and(|t| t > 70.0)
        })
        .await;

    // Health, open to anyone, says the broker is ok but not where it is nor as whom we log in
    // (names are for logged-in users); there are no broker metrics.
    let (status, body) = http_get(&gw, "/api/system/health").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    let broker = &health["parts"]["broker"];
    assert_eq!(broker["status"], "ok", "{health}");
    assert!(broker.get("external").is_none(), "{health}");
    assert!(
        !body.contains("gateway@") && !body.contains("gw-secret"),
        "{body}"
    );
    assert!(broker["linksConnected"].as_u64().unwrap() >= 3, "{health}");
    let (_, metrics) = http_get(&gw, "/metrics").await;
    assert!(!metrics.contains("ironbridge_broker_"), "{metrics}");
    assert!(metrics.contains("ironbridge_connection_up{service=\"demoplc\",resource=\"plc\"} 1"));

    gw.shutdown().await;
}
