//! MQTT connections to a real remote broker (Debian's Mosquitto standing in for the cloud):
//! forwarding with store-and-forward, commands coming back, username/password, TLS with a
//! custom CA, mutual TLS as AWS IoT Core uses it, MQTT 5 over WebSocket, and a 30 s outage.

use std::path::Path;
use std::time::Duration;

use admin::services::{Authority, ResourceState, ServiceInput, StatusReport};
use broker::{LocalClient, Message, QoS};
use bytes::Bytes;
use gateway::Gateway;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::common::mosquitto::Mosquitto;
use crate::common::pki::Pki;
use crate::common::{example, free_port, http_get, next_on, settings};

async fn install(gw: &Gateway, file: String, parameters: Value) -> String {
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: file,
                parameters: parameters.as_object().cloned().unwrap_or_else(Map::new),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap_or_else(|e| panic!("install failed: {e:?}"));
    installed.service.id
}

async fn local(gw: &Gateway, name: &str, filters: &[&str]) -> LocalClient {
    let mut client = gw.broker().unwrap().connect_local(name).await.unwrap();
    for filter in filters {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    client
}

async fn publish(client: &LocalClient, topic: &str, payload: impl Into<Bytes>) {
    let message = Message::new(topic, payload.into(), QoS::AtLeastOnce, false);
    client.publish(message).await.unwrap();
}

/// A client of the remote broker: what it receives lands in `messages`.
struct Cloud {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl Cloud {
    /// Connects (plain MQTT 3.1.1) and subscribes to `filter` with QoS 1. With a fixed
    /// `client_id` the session is persistent, so the broker keeps messages while it is away.
    async fn connect(
        port: u16,
        filter: &str,
        client_id: Option<&str>,
        login: Option<(&str, &str)>,
    ) -> Cloud {
        let id = client_id.map_or_else(|| format!("cloud-{}", free_port()), str::to_string);
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(client_id.is_none());
        options.set_keep_alive(Duration::from_secs(5));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, messages) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic, p.payload));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(done) = subscribed_tx.take() {
                            let _ = done.send(());
                        }
                    }
                    Ok(_) => {}
                    // The broker is down (the outage test): keep trying.
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), subscribed)
            .await
            .expect("the cloud client subscribed within 5 s")
            .unwrap();
        Cloud { client, messages }
    }

    async fn next(&mut self) -> (String, Bytes) {
        tokio::time::timeout(Duration::from_secs(10), self.messages.recv())
            .await
            .expect("a message at the remote broker within 10 s")
            .unwrap()
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
    }
}

/// The resource's status entry in the service status.
fn resource<'a>(report: &'a StatusReport, id: &str) -> &'a admin::services::ResourceReport {
    report.resources.iter().find(|r| r.id == id).unwrap()
}

/// Waits up to `within` for a resource's status to satisfy `wanted`; returns the last report.
async fn wait_for_status(
    gw: &Gateway,
    service: &str,
    within: Duration,
    wanted: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let report = gw.admin().status(service).await.unwrap();
        if wanted(&report) || tokio::time::Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of `GET /metrics` on the gateway's HTTP port.
async fn get_metrics(gw: &Gateway) -> String {
    let (status, body) = http_get(gw, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn start_gateway(dir: &Path) -> Gateway {
    Gateway::start(settings(dir, "forwarding-admin-password"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cloud_forwarder_example_logs_in_forwards_and_brings_commands_back() {
    let cloud_broker = Mosquitto::start("", "password_file {dir}/passwords", |dir| {
        let status = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(dir.join("passwords"))
            .args(["gateway-01", "cloud-secret"])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path()).await;
    let mut cloud = Cloud::connect(
        cloud_broker.port,
        "plant-1/#",
        None,
        Some(("gateway-01", "cloud-secret")),
    )
    .await;
    let service = install(
        &gw,
        example("cloud-forwarder.yml"),
        json!({"cloudHost": "127.0.0.1", "cloudPort": cloud_broker.port, "cloudScheme": "mqtt",
               "cloudUser": "gateway-01", "cloudPassword": "cloud-secret"}),
    )
    .await;
    let report = wait_for_status(&gw, &service, Duration::from_secs(10), |r| !r.deviated).await;
    assert!(!report.deviated, "{:?}", report.resources);

    // A value of any service goes up, byte for byte.
    let mut commands = local(
        &gw,
        "test/commands",
        &["services/cloudforwarder/commands/#"],
    )
    .await;
    let payload = r#"{"timestamp": 1, "value": 21.5}"#;
    publish(&commands, "services/line1/temperature", payload).await;
    let (topic, body) = cloud.next().await;
    assert_eq!(topic, "plant-1/line1/temperature");
    assert_eq!(&body[..], payload.as_bytes());

    // A command from the cloud comes down under the service's root.
    cloud
        .publish("plant-1/commands/stop", r#"{"value": true}"#)
        .await;
    let command = next_on(&mut commands, "services/cloudforwarder/commands/stop").await;
    assert_eq!(command, json!({"value": true}));

    // The status counts what went up (the command echo of the service's own topics too) and
    // shows the queue empty once the cloud acknowledged it all.
    let report = wait_for_status(&gw, &service, Duration::from_secs(5), |r| {
        let metrics = resource(r, "cloud").metrics.clone().unwrap();
        metrics["delivered"].as_u64().unwrap() >= 1 && metrics["queuedMessages"] == json!(0)
    })
    .await;
    let cloud_status = resource(&report, "cloud");
    assert_eq!(cloud_status.state, ResourceState::Connected);
    let metrics = cloud_status.metrics.as_ref().unwrap();
    assert_eq!(metrics["droppedQueueFull"], json!(0), "{metrics}");
    // Its sessions are counted, but not values or requests: it has no endpoints.
    assert_eq!(metrics["sessionsLost"], json!(0), "{metrics}");
    assert!(metrics.get("values").is_none(), "{metrics}");
    // The same counters for Prometheus. Read until the queue shows empty there too: the
    // command's echo may be queued again between the status above and this read.
    let labels = r#"{service="cloudforwarder",resource="cloud"}"#;
    let empty_queue = format!("ironbridge_forward_queue_messages{labels} 0\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut exposition = get_metrics(&gw).await;
    while !exposition.contains(&empty_queue) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        exposition = get_metrics(&gw).await;
    }
    assert!(
        exposition.contains(&format!("ironbridge_connection_up{labels} 1\n")),
        "{exposition}"
    );
    assert!(
        exposition.contains(&format!("ironbridge_forward_queue_messages{labels} 0\n")),
        "{exposition}"
    );
    let delivered = format!("ironbridge_forward_delivered_total{labels} ");
    assert!(exposition.contains(&delivered), "{exposition}");

    // A wrong password: the connection keeps trying and says why; the service is deviated.
    let wrong = install(
        &gw,
        example("cloud-forwarder.yml").replace("name: Cloud Forwarder", "name: Wrong Password"),
        json!({"cloudHost": "127.0.0.1", "cloudPort": cloud_broker.port, "cloudScheme": "mqtt",
               "cloudUser": "gateway-01", "cloudPassword": "guessed"}),
    )
    .await;
    let report = wait_for_status(&gw, &wrong, Duration::from_secs(10), |r| {
        resource(r, "cloud").message.is_some()
    })
    .await;
    let status = resource(&report, "cloud");
    assert!(report.deviated);
    assert!(
        ["connecting", "reconnecting"].contains(&status.state.as_str()),
        "{status:?}"
    );
    let message = status.message.as_deref().unwrap();
    assert!(message.contains("refused"), "{message}");
    gw.shutdown().await;
}

/// A service with one MQTT connection and a mapping from `local/<n>` to `<prefix>/<n>` on it.
fn forwarder(name: &str, connection: &str, prefix: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\n\
         resources:\n  remote:\n    type: Cybus::Connection\n    properties:\n      protocol: Mqtt\n      connection:\n{connection}\
           \n  forward:\n    type: Cybus::Mapping\n    properties:\n      mappings:\n\
         \x20       - subscribe: {{topic: 'local/+n', qos: 1}}\n\
         \x20         publish: {{connection: !ref remote, topic: '{prefix}/{{n}}', qos: 1}}\n"
    )
}

/// The connection block, indented for [`forwarder`], with a PEM value as a YAML literal block.
fn connection_yaml(fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if value.contains('\n') {
            out.push_str(&format!("        {key}: |\n"));
            for line in value.lines() {
                out.push_str(&format!("          {line}\n"));
            }
        } else {
            out.push_str(&format!("        {key}: {value}\n"));
        }
    }
    out
}

#[tokio::test]
async fn tls_with_the_connections_ca_and_mqtt5_over_websocket() {
    let pki = Pki::new("Test Cloud CA");
    let (cert, key) = pki.issue("cloud", vec!["localhost".into(), "127.0.0.1".into()]);
    let ws_port = free_port();
    let plain_port = free_port();
    let ca = pki.ca_pem.clone();
    let cloud_broker = Mosquitto::start(
        "cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key",
        &format!(
            "listener {ws_port} 127.0.0.1\nprotocol websockets\nlistener {plain_port} 127.0.0.1"
        ),
        |dir| {
            std::fs::write(dir.join("ca.pem"), &ca).unwrap();
            std::fs::write(dir.join("server.pem"), &cert).unwrap();
            std::fs::write(dir.join("server.key"), &key).unwrap();
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path()).await;
    let mut cloud = Cloud::connect(plain_port, "up/#", None, None).await;
    let port = cloud_broker.port.to_string();

    let tls = forwarder(
        "Over TLS",
        &connection_yaml(&[
            ("host", "localhost".into()),
            ("port", port.clone()),
            ("scheme", "mqtts".into()),
            ("caCert", pki.ca_pem.clone()),
        ]),
        "up/tls",
    );
    let ws = forwarder(
        "Over WebSocket",
        &connection_yaml(&[
            ("host", "127.0.0.1".into()),
            ("port", ws_port.to_string()),
            ("scheme", "ws".into()),
            ("protocolVersion", "5".into()),
        ]),
        "up/ws",
    );
    // Without the CA the server's certificate is not trusted: never connected, and says why.
    let untrusted = forwarder(
        "Untrusted",
        &connection_yaml(&[
            ("host", "localhost".into()),
            ("port", port.clone()),
            ("scheme", "mqtts".into()),
        ]),
        "up/untrusted",
    );
    let trust_all = forwarder(
        "Trust All",
        &connection_yaml(&[
            ("host", "127.0.0.1".into()),
            ("port", port.clone()),
            ("scheme", "mqtts".into()),
            ("trustAllCertificates", "true".into()),
        ]),
        "up/trustall",
    );
    let mut services = Vec::new();
    for file in [tls, ws, untrusted, trust_all] {
        services.push(install(&gw, file, json!({})).await);
    }
    for service in ["overtls", "overwebsocket", "trustall"] {
        let report = wait_for_status(&gw, service, Duration::from_secs(10), |r| !r.deviated).await;
        assert!(!report.deviated, "{service}: {:?}", report.resources);
    }
    let report = wait_for_status(&gw, "untrusted", Duration::from_secs(10), |r| {
        resource(r, "remote").message.is_some()
    })
    .await;
    let message = resource(&report, "remote").message.clone().unwrap();
    assert!(message.contains("certificate"), "{message}");

    let publisher = local(&gw, "test/publisher", &[]).await;
    publish(&publisher, "local/7", "seven").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (topic, payload) = cloud.next().await;
        assert_eq!(&payload[..], b"seven");
        seen.push(topic);
    }
    seen.sort();
    assert_eq!(seen, ["up/tls/7", "up/trustall/7", "up/ws/7"]);
    // Nothing reached the broker through the untrusted connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cloud.messages.try_recv().is_err());
    let report = gw.admin().status("untrusted").await.unwrap();
    let metrics = resource(&report, "remote").metrics.clone().unwrap();
    assert_eq!(metrics["queuedMessages"], json!(1), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_aws_iot_core_example_speaks_mutual_tls_with_the_thing_name() {
    let pki = Pki::new("Test IoT CA");
    let (server_cert, server_key) = pki.issue("iot", vec!["localhost".into()]);
    let (thing_cert, thing_key) = pki.issue("press-7", vec![]);
    let plain_port = free_port();
    let ca = pki.ca_pem.clone();
    let cloud_broker = Mosquitto::start(
        "cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n\
         require_certificate true\nuse_identity_as_username true",
        &format!("acl_file {{dir}}/acl\nlistener {plain_port} 127.0.0.1"),
        |dir| {
            // As an AWS IoT policy would: a thing may publish only under its own client id.
            // Anonymous clients (the test's observer on the plain listener) read and command.
            let acl = "topic read dt/#\ntopic write cmd/#\n\
                       pattern write dt/%c/#\npattern read cmd/%c/#\n";
            std::fs::write(dir.join("acl"), acl).unwrap();
            std::fs::write(dir.join("ca.pem"), &ca).unwrap();
            std::fs::write(dir.join("server.pem"), &server_cert).unwrap();
            std::fs::write(dir.join("server.key"), &server_key).unwrap();
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path()).await;
    let mut cloud = Cloud::connect(plain_port, "dt/#", None, None).await;
    let service = install(
        &gw,
        example("aws-iot-core.yml"),
        json!({"iotEndpoint": "localhost", "iotPort": cloud_broker.port, "thingName": "press-7",
               "rootCa": pki.ca_pem, "certificate": thing_cert, "privateKey": thing_key}),
    )
    .await;
    let report = wait_for_status(&gw, &service, Duration::from_secs(10), |r| !r.deviated).await;
    assert!(!report.deviated, "{:?}", report.resources);
    // The broker's ACL lets only the client id `press-7` publish under dt/press-7/: what
    // arrives proves the thing name was the client id.

    let mut commands = local(&gw, "test/commands", &["services/awsiotcore/commands/#"]).await;
    publish(&commands, "services/press7/spindle/speed", "1500").await;
    let (topic, payload) = cloud.next().await;
    assert_eq!(
        (topic.as_str(), &payload[..]),
        ("dt/press-7/press7/spindle/speed", &b"1500"[..])
    );
    cloud.publish("cmd/press-7/reset", "{}").await;
    let command = next_on(&mut commands, "services/awsiotcore/commands/reset").await;
    assert_eq!(command, json!({}));

    // Without a client certificate the broker refuses the TLS handshake.
    let anonymous = forwarder(
        "No Client Certificate",
        &connection_yaml(&[
            ("host", "localhost".into()),
            ("port", cloud_broker.port.to_string()),
            ("scheme", "mqtts".into()),
            ("caCert", pki.ca_pem.clone()),
        ]),
        "dt/anonymous",
    );
    let service = install(&gw, anonymous, json!({})).await;
    let report = wait_for_status(&gw, &service, Duration::from_secs(10), |r| {
        resource(r, "remote").message.is_some()
    })
    .await;
    assert!(report.deviated, "{:?}", report.resources);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_30_second_outage_loses_nothing_and_keeps_the_order() {
    let mut cloud_broker = Mosquitto::start("", "", |_| {});
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path()).await;
    // A persistent session: Mosquitto keeps what arrives while this client is away too.
    let mut cloud =
        Cloud::connect(cloud_broker.port, "numbers", Some("outage-observer"), None).await;
    let file = forwarder(
        "Outage",
        &connection_yaml(&[
            ("host", "127.0.0.1".into()),
            ("port", cloud_broker.port.to_string()),
            ("keepalive", "5".into()),
            (
                "connectionStrategy",
                "{initialDelay: 200, incrementFactor: 2, maxDelay: 1000}".into(),
            ),
        ]),
        "numbers",
    )
    .replace("'numbers/{n}'", "'numbers'");
    let service = install(&gw, file, json!({})).await;
    let report = wait_for_status(&gw, &service, Duration::from_secs(10), |r| !r.deviated).await;
    assert!(!report.deviated, "{:?}", report.resources);

    // 50 numbers per second: 3 s before, 30 s of outage, 3 s after.
    let publisher = local(&gw, "test/numbers", &[]).await;
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut stream_for = async |seconds: u64, sent: &mut u64| {
        for _ in 0..seconds * 50 {
            ticker.tick().await;
            publish(&publisher, "local/stream", sent.to_string()).await;
            *sent += 1;
        }
    };
    stream_for(3, &mut sent).await;
    cloud_broker.stop();
    stream_for(30, &mut sent).await;
    let during = gw.admin().status(&service).await.unwrap();
    let during = resource(&during, "remote").clone();
    cloud_broker.resume();
    stream_for(3, &mut sent).await;

    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut first_seen = std::collections::HashSet::new();
    while (first_seen.len() as u64) < sent && tokio::time::Instant::now() < deadline {
        if let Ok(Some((_, payload))) =
            tokio::time::timeout(Duration::from_secs(1), cloud.messages.recv()).await
        {
            let n: u64 = std::str::from_utf8(&payload).unwrap().parse().unwrap();
            first_seen.insert(n);
            received.push(n);
        }
    }
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for n in &received {
        if seen.insert(*n) {
            order.push(*n);
        }
    }
    let duplicates = received.len() - order.len();
    println!(
        "outage: {sent} sent, {} received, {duplicates} QoS 1 duplicates, {} queued at the end of the outage",
        received.len(),
        during.metrics.as_ref().unwrap()["queuedMessages"]
    );
    let missing = (0..sent).find(|n| !seen.contains(n));
    assert_eq!(
        missing,
        None,
        "every number arrives ({} of {sent} did)",
        seen.len()
    );
    assert!(
        order.iter().copied().eq(0..sent),
        "in order (duplicates aside): {order:?}"
    );
    assert_ne!(during.state, ResourceState::Connected, "{during:?}");
    let queued = during.metrics.as_ref().unwrap()["queuedMessages"]
        .as_u64()
        .unwrap();
    assert!(queued >= 1400, "the outage filled the queue: {during:?}");
    let report = wait_for_status(&gw, &service, Duration::from_secs(5), |r| {
        resource(r, "remote").metrics.as_ref().unwrap()["queuedMessages"] == json!(0)
    })
    .await;
    let metrics = resource(&report, "remote").metrics.clone().unwrap();
    assert_eq!(metrics["queuedMessages"], json!(0), "{metrics}");
    assert_eq!(metrics["droppedQueueFull"], json!(0), "{metrics}");
    gw.shutdown().await;
}
