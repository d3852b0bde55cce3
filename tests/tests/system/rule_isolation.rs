//! Rules that compute up to their time limit run on workers of their own: the broker and the API
//! answer meanwhile.

use std::time::{Duration, Instant};

use admin::services::{Authority, ServiceInput, ServiceState};
use broker::{Message, QoS};
use gateway::Gateway;
use serde_json::Map;

use crate::common::{http_get, settings};

/// Mappings whose expression computes until the 1 s limit stops it, more of them than a
/// machine has cores.
fn slow_rules(mappings: usize) -> String {
    let mut file = String::from(
        "metadata: {name: slow}\nresources:\n  slow:\n    type: Cybus::Mapping\n    properties:\n      mappings:\n",
    );
    for i in 0..mappings {
        file.push_str(&format!(
            "        - subscribe: {{topic: slow/{i}}}\n          publish: {{topic: slow/out}}\n          rules:\n            - transform: {{expression: '$sum($map([1..999999], function($v) {{ $v * $v % 7 }}))'}}\n"
        ));
    }
    file
}

const MAPPINGS: usize = 6;

/// Scenario: a rule stopped by the 1 s limit blocked a tokio worker for that second; three such
/// mappings made `/api/system/health` take 3-4 s and an unrelated MQTT publish more than 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_rules_do_not_stall_the_api_or_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "admin-password-1"))
        .await
        .unwrap();
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: slow_rules(MAPPINGS),
                parameters: Map::new(),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled);

    let broker = gw.broker().unwrap();
    let publisher = broker.connect_local("test/publisher").await.unwrap();
    let mut echo = broker.connect_local("test/echo").await.unwrap();
    echo.subscribe("unrelated/#", QoS::AtMostOnce)
        .await
        .unwrap();
    // Work for the rules: seconds of it on every mapping, more than the workers can do at once.
    for _ in 0..2 {
        for i in 0..MAPPINGS {
            publisher
                .publish(Message::new(
                    format!("slow/{i}"),
                    "1",
                    QoS::AtMostOnce,
                    false,
                ))
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut slowest_health = Duration::ZERO;
    let mut slowest_publish = Duration::ZERO;
    for i in 0..10 {
        let asked = Instant::now();
        let (status, body) = http_get(&gw, "/api/system/health").await;
        assert_eq!(status, 200, "{body}");
        slowest_health = slowest_health.max(asked.elapsed());

        let sent = Instant::now();
        publisher
            .publish(Message::new(
                "unrelated/x",
                format!("{i}"),
                QoS::AtMostOnce,
                false,
            ))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), echo.recv())
            .await
            .unwrap()
            .unwrap();
        slowest_publish = slowest_publish.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slowest health {slowest_health:?}, slowest publish {slowest_publish:?}");
    // Shared workers made these take seconds; a generous bound keeps a loaded CI machine honest.
    assert!(
        slowest_health < Duration::from_millis(900),
        "health took {slowest_health:?}"
    );
    assert!(
        slowest_publish < Duration::from_millis(900),
        "an unrelated publish took {slowest_publish:?}"
    );
    let report = gw.admin().status(&installed.service.id).await.unwrap();
    let dropped = report.resources[0].metrics.as_ref().unwrap()["dropped"].as_u64();
    assert!(
        dropped.unwrap_or(0) >= 1,
        "the limit still stops the rules: {report:?}"
    );
    gw.shutdown().await;
}
