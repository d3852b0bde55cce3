//! A commissioning file with a Modbus connection and endpoints, installed into the whole gateway:
//! values from an in-process device appear on MQTT, `/set` writes reach the device, and the
//! service status follows the device going away and coming back.

use std::time::Duration;

use admin::services::{Authority, Operation, ServiceInput, ServiceState};
use broker::{Message, QoS};
use gateway::Gateway;
use protocol_mapper::modbus::simulator::Simulator;
use serde_json::json;

use crate::common::{next_on, settings, watch};

const FILE: &str = r#"
metadata: {name: Press Line}
parameters:
  port: {type: integer}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection:
        host: 127.0.0.1
        port: !ref port
        socketTimeout: 500
        batchReadEnabled: true
        connectionStrategy: {initialDelay: 50, maxDelay: 200}
  speed:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      topic: press/speed
      subscribe: {fc: 3, address: 0, length: 2, dataType: floatBE, interval: 50}
  target:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      write: {fc: 16, address: 10, dataType: uint32BE}
"#;

#[tokio::test]
async fn a_modbus_service_publishes_writes_and_reports_its_connection() {
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 100)
        .await
        .unwrap();
    device.bank().holding[0..2].copy_from_slice(&[0x44BB, 0x8000]); // 1500.0 as floatBE
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "modbus-service-test"))
        .await
        .unwrap();
    let mut watcher = watch(
        &gw,
        &[
            "services/pressline/#",
            "$SYS/ironbridge/services/pressline/#",
        ],
    )
    .await;

    let admin = gw.admin();
    let parameters = json!({"port": device.addr.port()})
        .as_object()
        .cloned()
        .unwrap();
    let installed = admin
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: FILE.into(),
                parameters,
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled);

    let speed = next_on(&mut watcher, "services/pressline/press/speed").await;
    assert_eq!(speed["value"], json!(1500.0));
    let status = admin.status("pressline").await.unwrap();
    assert!(!status.deviated, "{status:?}");

    watcher
        .publish(Message::new(
            "services/pressline/target/set",
            &br#"{"id": 1, "value": 70000}"#[..],
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .unwrap();
    let answer = next_on(&mut watcher, "services/pressline/target/res").await;
    assert_eq!(answer["result"]["value"], json!(70000));
    assert_eq!(device.bank().holding[10..12], [0x0001, 0x1170]);

    // The device disappears: the connection reports it and the service deviates.
    let addr = device.addr;
    let bank = device.shared_bank();
    device.stop().await;
    let connection_topic = "$SYS/ironbridge/services/pressline/connections/plc/status";
    while next_on(&mut watcher, connection_topic).await["state"] != "reconnecting" {}
    let status = admin.status("pressline").await.unwrap();
    assert!(status.deviated);
    assert!(status.deviations.contains(&"plc".to_string()), "{status:?}");

    // It comes back: connected again, values flow, no longer deviated.
    let device = Simulator::start_with(addr, bank).await.unwrap();
    while next_on(&mut watcher, connection_topic).await["state"] != "connected" {}
    next_on(&mut watcher, "services/pressline/press/speed").await;
    let status = admin.status("pressline").await.unwrap();
    assert!(!status.deviated);

    // The connection's counters tell the story: values read, the one write, the lost session.
    let plc = status.resources.iter().find(|r| r.id == "plc").unwrap();
    let counters = plc.metrics.as_ref().unwrap();
    assert!(counters["values"].as_u64().unwrap() >= 2, "{counters}");
    assert!(counters["lastValueAt"].as_i64().unwrap() > 0, "{counters}");
    assert_eq!(counters["requests"], 1, "{counters}");
    assert_eq!(counters["requestsFailed"], 0, "{counters}");
    assert_eq!(counters["sessionsLost"], 1, "{counters}");
    // And each endpoint its own: the polled speed its values, the write endpoint none.
    let endpoint = |id: &str| {
        let resource = status.resources.iter().find(|r| r.id == id).unwrap();
        resource.metrics.clone().unwrap()
    };
    let speed = endpoint("speed");
    assert!(speed["values"].as_u64().unwrap() >= 2, "{speed}");
    assert!(speed["lastValueAt"].as_i64().unwrap() > 0, "{speed}");
    assert_eq!(endpoint("target")["values"], 0);

    // Disabling closes the connection: the device sees no more requests.
    admin
        .operate("pressline", Operation::Disable)
        .await
        .unwrap();
    let before = device.bank().requests;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(device.bank().requests, before, "no polling after disable");

    // Deleting the service removes its retained statuses: a new subscriber gets nothing.
    admin.delete_service("pressline").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = gw
        .broker()
        .unwrap()
        .connect_local("test/late")
        .await
        .unwrap();
    late.subscribe("$SYS/ironbridge/services/pressline/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let retained = tokio::time::timeout(Duration::from_millis(300), late.recv()).await;
    assert!(retained.is_err(), "no retained status left: {retained:?}");
    device.stop().await;
    gw.shutdown().await;
}
