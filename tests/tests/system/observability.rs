//! What operators watch: `/metrics` for Prometheus and `/api/system/health` for probes, on a
//! gateway running the demo (two simulated machines, their services, a mapping, the OPC UA
//! server's service).

use std::time::{Duration, Instant};

use gateway::Gateway;
use serde_json::Value;

use crate::common::{free_port, http_get, settings};

/// The value of the sample `name{labels}` (or `name` without labels).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[tokio::test]
async fn metrics_and_health_cover_broker_api_connections_and_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "observability-admin");
    s.demo.enabled = true;
    s.demo.modbus_port = 0;
    s.demo.opcua_port = 0;
    s.demo.opcua_server_port = free_port();
    let gw = Gateway::start(s).await.unwrap();

    // Both demo connections come up; the mapping makes the twin.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (status, body) = http_get(&gw, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let up = |r: &str| {
            sample(
                &body,
                &format!(
                    "ironbridge_connection_up{{service=\"{r}\",resource=\"{}\"}}",
                    &r[4..]
                ),
            )
        };
        let twin = sample(
            &body,
            "ironbridge_mapping_messages_total{service=\"demoplc\",resource=\"twin\",outcome=\"published\"}",
        );
        if up("demoplc") == Some(1.0) && up("democnc") == Some(1.0) && twin >= Some(1.0) {
            break body;
        }
        assert!(Instant::now() < deadline, "demo not running:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A network client, as a dashboard would be (the components' in-process links are not
    // network connections, and what they publish is counted apart).
    assert_eq!(sample(&metrics, "ironbridge_broker_connections"), Some(0.0));
    assert_eq!(
        sample(&metrics, "ironbridge_broker_messages_received_total"),
        Some(0.0)
    );
    assert!(sample(&metrics, "ironbridge_broker_messages_internal_total") > Some(0.0));
    let addr = gw.mqtt_addr.unwrap();
    let mut options = rumqttc::MqttOptions::new("dashboard", addr.ip().to_string(), addr.port());
    options.set_credentials("admin", "observability-admin");
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    client
        .subscribe("services/#", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.poll()).await;
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)))) = event {
            break;
        }
        assert!(Instant::now() < deadline, "no message for the dashboard");
    }
    let (_, metrics) = http_get(&gw, "/metrics").await;
    assert_eq!(sample(&metrics, "ironbridge_broker_connections"), Some(1.0));
    assert_eq!(
        sample(&metrics, "ironbridge_broker_connections_total"),
        Some(1.0)
    );
    assert!(sample(&metrics, "ironbridge_broker_messages_sent_total").unwrap() > 0.0);
    assert!(sample(&metrics, "ironbridge_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&metrics, "ironbridge_process_open_fds").unwrap() > 0.0);

    // Every connection, whatever its protocol, counts what it did: the demo PLC (Modbus) and
    // the CNC (OPC UA) publish values.
    for (service, resource) in [("demoplc", "plc"), ("democnc", "cnc")] {
        let labels = format!("service=\"{service}\",resource=\"{resource}\"");
        let values = format!("ironbridge_connection_values_total{{{labels}}}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let metrics = loop {
            let (_, metrics) = http_get(&gw, "/metrics").await;
            if sample(&metrics, &values) > Some(0.0) {
                break metrics;
            }
            assert!(Instant::now() < deadline, "{service}: no values\n{metrics}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let last = sample(
            &metrics,
            &format!("ironbridge_connection_last_value_timestamp_seconds{{{labels}}}"),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(now - last < 30.0, "{service}: last value {last}, now {now}");
        assert_eq!(
            sample(
                &metrics,
                &format!("ironbridge_connection_lost_total{{{labels}}}")
            ),
            Some(0.0)
        );
    }

    // REST calls are counted by route pattern and status, with their latency.
    let (status, _) = http_get(&gw, "/api/services/demoplc").await;
    assert_eq!(status, 401, "no token");
    let (_, metrics) = http_get(&gw, "/metrics").await;
    let route = "method=\"GET\",route=\"/api/services/{id}\"";
    assert_eq!(
        sample(
            &metrics,
            &format!("ironbridge_http_requests_total{{{route},status=\"401\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("ironbridge_http_request_duration_seconds_bucket{{{route},le=\"+Inf\"}}")
        ),
        Some(1.0)
    );

    // Health per part: broker and database decide; connections and queues inform.
    let (status, body) = http_get(&gw, "/api/system/health").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["parts"]["broker"]["status"], "ok", "{health}");
    assert_eq!(health["parts"]["database"], "ok", "{health}");
    assert_eq!(health["parts"]["connections"]["total"], 2, "{health}");
    assert_eq!(health["parts"]["connections"]["connected"], 2, "{health}");
    // Without a token nothing is named (which connections are down is for logged-in users).
    assert!(
        health["parts"]["connections"].get("notConnected").is_none(),
        "{health}"
    );
    // demoplc, democnc and demoopcua (the PLC's values on the gateway's OPC UA server).
    assert_eq!(health["parts"]["services"]["installed"], 3, "{health}");
    assert_eq!(
        health["parts"]["forwarding"]["queuedMessages"], 0,
        "{health}"
    );

    gw.shutdown().await;
}
