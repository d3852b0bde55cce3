//! The Modbus driver against an in-process tokio-modbus device and the real broker: polling,
//! data types, `/req` and `/set`, device exceptions, and reconnecting when the device restarts.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use broker::{Broker, QoS};
use commissioning::model::{
    Address, ConnectionStrategy, ConnectionTargetState, ModbusAddress, ModbusConnection,
    ModbusDataType, ModbusParity, ModbusTransport, Operation,
};
use common::{broker, next_on, send};
use protocol_mapper::driver::{ConnectionHandle, EndpointSpec};
use protocol_mapper::modbus::connection;
use protocol_mapper::modbus::simulator::Simulator;
use serde_json::json;

fn connection_spec(addr: SocketAddr) -> ModbusConnection {
    ModbusConnection {
        transport: ModbusTransport::Tcp,
        host: addr.ip().to_string(),
        port: addr.port(),
        device: None,
        baud_rate: 9600,
        data_bits: 8,
        parity: ModbusParity::None,
        stop_bits: 1,
        unit_id: 1,
        socket_timeout: Some(500),
        batch_read_enabled: true,
        max_batch_size: None,
        connection_strategy: Some(ConnectionStrategy {
            initial_delay: 50,
            increment_factor: 2.0,
            max_delay: 200,
        }),
    }
}

fn endpoint(
    id: &str,
    operation: Operation,
    fc: u8,
    address: u16,
    length: u16,
    data_type: Option<ModbusDataType>,
) -> EndpointSpec {
    EndpointSpec {
        id: id.into(),
        topic: format!("services/line/{id}"),
        operation,
        address: Address::Modbus(ModbusAddress {
            fc,
            address,
            length,
            data_type,
            unit_id: None,
            interval: Some(50),
            cron_expression: None,
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

/// Starts a connection to `device` as resource `plc` of service `line`.
async fn start_plc(
    broker: &Broker,
    device: &Simulator,
    target: ConnectionTargetState,
) -> ConnectionHandle {
    let link = broker
        .handle()
        .connect_local("ironbridge/line/plc")
        .await
        .unwrap();
    connection::start("line", "plc", connection_spec(device.addr), target, link)
}

#[tokio::test]
async fn polls_reads_writes_and_reports_exceptions_per_endpoint() {
    let broker = broker().await;
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 200)
        .await
        .unwrap();
    device.bank().holding[0..2].copy_from_slice(&[0x41AC, 0x0000]); // 21.5 as floatBE
    device.bank().input[10] = 7;
    device.bank().holding[5] = 0xFFFE;
    let mut observer = broker
        .handle()
        .connect_local("test/observer")
        .await
        .unwrap();
    observer
        .subscribe("services/line/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    let plc = start_plc(&broker, &device, ConnectionTargetState::Connected).await;
    let endpoints = [
        endpoint(
            "temperature",
            Operation::Subscribe,
            3,
            0,
            2,
            Some(ModbusDataType::FloatBe),
        ),
        endpoint(
            "pressure",
            Operation::Subscribe,
            4,
            10,
            1,
            Some(ModbusDataType::Uint16Be),
        ),
        endpoint(
            "level",
            Operation::Read,
            3,
            5,
            1,
            Some(ModbusDataType::Int16Be),
        ),
        endpoint(
            "setpoint",
            Operation::Write,
            16,
            100,
            2,
            Some(ModbusDataType::Int32Be),
        ),
        endpoint("valve", Operation::Write, 5, 3, 1, None),
        endpoint("missing", Operation::Subscribe, 3, 60000, 1, None),
    ];
    for spec in endpoints {
        plc.add_endpoint(spec).await.unwrap();
    }

    let temperature = next_on(&mut observer, "services/line/temperature").await;
    assert_eq!(temperature["value"], json!(21.5));
    assert!(
        temperature["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
        "unix milliseconds"
    );
    assert_eq!(
        next_on(&mut observer, "services/line/pressure").await["value"],
        json!(7)
    );
    assert_eq!(plc.status().state.as_str(), "connected");

    // A value change on the device shows up at a later poll.
    device.bank().input[10] = 8;
    while next_on(&mut observer, "services/line/pressure").await["value"] != json!(8) {}

    // /req reads now; /set writes and answers with the written value; both echo the id.
    send(&observer, "services/line/level/req", br#"{"id": "r1"}"#).await;
    let answer = next_on(&mut observer, "services/line/level/res").await;
    assert_eq!(answer["id"], json!("r1"));
    assert_eq!(answer["result"]["value"], json!(-2));
    send(
        &observer,
        "services/line/setpoint/set",
        br#"{"id": 9, "value": -5}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/line/setpoint/res").await;
    assert_eq!(answer["id"], json!(9));
    assert_eq!(answer["result"]["value"], json!(-5));
    assert_eq!(device.bank().holding[100..102], [0xFFFF, 0xFFFB]);
    send(&observer, "services/line/valve/set", b"true").await;
    assert_eq!(
        next_on(&mut observer, "services/line/valve/res").await["result"]["value"],
        json!(true)
    );
    assert!(device.bank().coils[3]);

    // Bad values and device exceptions are error answers; the connection stays up.
    send(
        &observer,
        "services/line/setpoint/set",
        br#"{"id": 10, "value": "fast"}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/line/setpoint/res").await;
    assert_eq!(answer["id"], json!(10));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not fit"),
        "{answer}"
    );
    send(&observer, "services/line/setpoint/set", b"not json").await;
    let answer = next_on(&mut observer, "services/line/setpoint/res").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    let error = plc
        .endpoint_error("missing")
        .expect("an exception is that endpoint's error");
    assert!(error.contains("0x02"), "{error}");
    assert_eq!(
        plc.status().state.as_str(),
        "connected",
        "an exception is not a connection failure"
    );
    next_on(&mut observer, "services/line/temperature").await;

    plc.stop().await;
    device.stop().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_device_restarts_and_publishes_again() {
    let broker = broker().await;
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 10)
        .await
        .unwrap();
    let addr = device.addr;
    device.bank().holding[0] = 1;
    let status_topic = "$SYS/ironbridge/services/line/connections/plc/status";
    let mut observer = broker
        .handle()
        .connect_local("test/observer")
        .await
        .unwrap();
    observer
        .subscribe("services/line/counter", QoS::AtLeastOnce)
        .await
        .unwrap();
    observer
        .subscribe(status_topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let plc = start_plc(&broker, &device, ConnectionTargetState::Connected).await;
    plc.add_endpoint(endpoint("counter", Operation::Subscribe, 3, 0, 1, None))
        .await
        .unwrap();
    assert_eq!(
        next_on(&mut observer, "services/line/counter").await["value"],
        json!([1])
    );

    // The device goes away: the connection says so, retained, with the reason.
    let bank = device.shared_bank();
    device.stop().await;
    loop {
        let status = next_on(&mut observer, status_topic).await;
        if status["state"] == "reconnecting" {
            assert!(status["lastError"].is_string(), "{status}");
            break;
        }
    }
    // It comes back (same address, same memory, a new value): reconnect and publish again.
    bank.lock().unwrap().holding[0] = 2;
    let device = Simulator::start_with(addr, bank).await.unwrap();
    while next_on(&mut observer, status_topic).await["state"] != "connected" {}
    while next_on(&mut observer, "services/line/counter").await["value"] != json!([2]) {}

    plc.stop().await;
    device.stop().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn target_state_disconnected_never_opens_a_socket() {
    let broker = broker().await;
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 10)
        .await
        .unwrap();
    let plc = start_plc(&broker, &device, ConnectionTargetState::Disconnected).await;
    plc.add_endpoint(endpoint("counter", Operation::Subscribe, 3, 0, 1, None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(plc.status().state.as_str(), "disconnected");
    assert_eq!(device.bank().requests, 0);
    plc.stop().await;
    device.stop().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn cron_expressions_schedule_polls() {
    let broker = broker().await;
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 10)
        .await
        .unwrap();
    device.bank().holding[0] = 42;
    let mut observer = broker
        .handle()
        .connect_local("test/observer")
        .await
        .unwrap();
    observer
        .subscribe("services/line/every-second", QoS::AtLeastOnce)
        .await
        .unwrap();
    let plc = start_plc(&broker, &device, ConnectionTargetState::Connected).await;
    let mut spec = endpoint("every-second", Operation::Subscribe, 3, 0, 1, None);
    if let Address::Modbus(address) = &mut spec.address {
        address.interval = None;
        address.cron_expression = Some("* * * * * *".into());
    }
    plc.add_endpoint(spec).await.unwrap();
    let first = next_on(&mut observer, "services/line/every-second").await;
    let second = next_on(&mut observer, "services/line/every-second").await;
    let gap = second["timestamp"].as_i64().unwrap() - first["timestamp"].as_i64().unwrap();
    assert!(
        (500..1500).contains(&gap),
        "one poll per second, got {gap} ms apart"
    );
    assert_eq!(second["value"], json!([42]));
    plc.stop().await;
    device.stop().await;
    broker.shutdown().await;
}
