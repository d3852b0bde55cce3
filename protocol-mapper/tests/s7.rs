//! The S7 driver against the in-process S7 CPU and the real broker: every data type polled,
//! 1,000 variables read in a handful of requests, `/req` and `/set` (a bit written alone, a
//! refused write answered with the CPU's code), one bad address failing alone, and the CPU
//! going away and coming back. `tests/interop/test_s7.py` runs the gateway against python-snap7.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use broker::{Broker, LocalClient, QoS};
use commissioning::model::{
    Address, ConnectionStrategy, ConnectionTargetState, Operation, S7Address, S7Connection,
};
use common::{broker, endpoint_error, next_on, observer, send, wait_for_state};
use protocol_mapper::driver::{ConnectionHandle, EndpointSpec};
use protocol_mapper::s7::connection;
use protocol_mapper::s7::simulator::{Memory, Simulator};
use protocol_mapper::status::ConnectionState;
use serde_json::json;

const MERKER: (u8, u16) = (0x83, 0);
const INPUTS: (u8, u16) = (0x81, 0);
const OUTPUTS: (u8, u16) = (0x82, 0);

/// A CPU with DB1 (64 bytes of every type), DB2 (4,000 bytes of REALs), flags, inputs and
/// outputs.
fn memory() -> Memory {
    let mut memory = Memory::default();
    let db1 = memory.db(1);
    db1.resize(64, 0);
    db1[0] = 0b0000_0010; // X0.1
    db1[2..4].copy_from_slice(&(-1234i16).to_be_bytes());
    db1[4..8].copy_from_slice(&21.5f32.to_be_bytes());
    db1[8..12].copy_from_slice(&(-100_000i32).to_be_bytes());
    db1[12..16].copy_from_slice(&4_000_000_000u32.to_be_bytes());
    db1[16..24].copy_from_slice(&2.25f64.to_be_bytes());
    db1[24..36].copy_from_slice(&[10, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0, 0, 0]);
    db1[36..40].copy_from_slice(&[1, 2, 3, 4]);
    db1[40..42].copy_from_slice(&65_000u16.to_be_bytes());
    let db2 = memory.db(2);
    for i in 0..1000u32 {
        db2.extend_from_slice(&(i as f32).to_be_bytes());
    }
    memory.areas.insert(MERKER, vec![0, 0, 0b1000_0000]);
    memory.areas.insert(INPUTS, vec![0b0000_0001]);
    memory.areas.insert(OUTPUTS, vec![0, 0b0000_0100]);
    memory
}

fn connection_spec(addr: SocketAddr) -> S7Connection {
    S7Connection {
        host: addr.ip().to_string(),
        port: addr.port(),
        rack: 0,
        slot: 1,
        poll_interval: Some(50),
        connection_strategy: Some(ConnectionStrategy {
            initial_delay: 50,
            increment_factor: 2.0,
            max_delay: 200,
        }),
        local_tsap: None,
        remote_tsap: None,
        pdu_size: None,
        request_timeout: Some(1000),
    }
}

fn endpoint(id: &str, operation: Operation, address: &str) -> EndpointSpec {
    EndpointSpec {
        id: id.into(),
        topic: format!("services/plc/{id}"),
        operation,
        address: Address::S7(S7Address {
            address: address.into(),
            data_type: None,
            interval: None,
            cron_expression: None,
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

async fn start(broker: &Broker, spec: S7Connection) -> (LocalClient, ConnectionHandle) {
    let observer = observer(broker, "services/plc/#").await;
    let link = broker
        .handle()
        .connect_local("ironbridge/plc/s7")
        .await
        .unwrap();
    let handle = connection::start("plc", "s7", spec, ConnectionTargetState::Connected, link);
    (observer, handle)
}

#[tokio::test]
async fn every_type_is_polled_read_and_written() {
    let broker = broker().await;
    let cpu = Simulator::start("127.0.0.1:0".parse().unwrap(), memory(), 480)
        .await
        .unwrap();
    let (mut observer, plc) = start(&broker, connection_spec(cpu.addr)).await;
    let polled = [
        ("bit", "DB1,X0.1", json!(true)),
        ("int", "DB2,INT0", json!(0)),
        ("negative", "DB1,INT2", json!(-1234)),
        ("real", "DB1,REAL4", json!(21.5)),
        ("dint", "DB1,DINT8", json!(-100_000)),
        ("dword", "DB1,DW12", json!(4_000_000_000u32)),
        ("lreal", "DB1,LREAL16", json!(2.25)),
        ("text", "DB1,S24.10", json!("hello")),
        ("bytes", "DB1,B36,4", json!([1, 2, 3, 4])),
        ("chars", "DB1,C26.5", json!("hello")),
        ("word", "DB1.DBW40", json!(65_000)),
        ("flag", "M2.7", json!(true)),
        ("input", "I0.0", json!(true)),
        ("output", "Q1.2", json!(true)),
        ("reals", "DB2,REAL4.3", json!([1.0, 2.0, 3.0])),
    ];
    for (id, address, _) in &polled {
        plc.add_endpoint(endpoint(id, Operation::Subscribe, address))
            .await
            .unwrap();
    }
    wait_for_state(&plc, ConnectionState::Connected).await;
    for (id, address, expected) in &polled {
        let message = next_on(&mut observer, &format!("services/plc/{id}")).await;
        assert_eq!(&message["value"], expected, "{address}");
        assert!(message["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    }

    // `/req` reads now; `/set` writes and answers with what was written.
    plc.add_endpoint(endpoint("realreq", Operation::Read, "DB1,REAL4"))
        .await
        .unwrap();
    send(&observer, "services/plc/realreq/req", br#"{"id": 1}"#).await;
    let answer = next_on(&mut observer, "services/plc/realreq/res").await;
    assert_eq!(answer["result"]["value"], json!(21.5), "{answer}");

    for (id, address) in [
        ("setbit", "DB1,X0.3"),
        ("setreal", "DB1,REAL4"),
        ("settext", "DB1,S24.10"),
        ("setflag", "M2.0"),
    ] {
        plc.add_endpoint(endpoint(id, Operation::Write, address))
            .await
            .unwrap();
    }
    send(
        &observer,
        "services/plc/setbit/set",
        br#"{"id": "a", "value": true}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/plc/setbit/res").await;
    assert_eq!(answer["result"]["value"], json!(true), "{answer}");
    // Bit 3 is set and bit 1, the program's, is untouched.
    assert_eq!(cpu.memory().db(1)[0], 0b0000_1010);
    send(&observer, "services/plc/setflag/set", br#"{"value": 1}"#).await;
    next_on(&mut observer, "services/plc/setflag/res").await;
    assert_eq!(cpu.memory().areas[&MERKER][2], 0b1000_0001);

    send(
        &observer,
        "services/plc/setreal/set",
        br#"{"value": 80.25}"#,
    )
    .await;
    next_on(&mut observer, "services/plc/setreal/res").await;
    assert_eq!(&cpu.memory().db(1)[4..8], &80.25f32.to_be_bytes());
    loop {
        let message = next_on(&mut observer, "services/plc/real").await;
        if message["value"] == json!(80.25) {
            break;
        }
    }
    send(
        &observer,
        "services/plc/settext/set",
        br#"{"value": "bye"}"#,
    )
    .await;
    next_on(&mut observer, "services/plc/settext/res").await;
    assert_eq!(&cpu.memory().db(1)[24..29], &[10, 3, b'b', b'y', b'e']);

    // A value the variable cannot hold is refused before anything is sent.
    send(
        &observer,
        "services/plc/setreal/set",
        br#"{"value": "hot"}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/plc/setreal/res").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected a number for REAL"),
        "{answer}"
    );
    plc.stop().await;
    cpu.stop().await;
}

#[tokio::test]
async fn a_thousand_variables_take_a_handful_of_requests_and_a_bad_one_fails_alone() {
    let broker = broker().await;
    let cpu = Simulator::start("127.0.0.1:0".parse().unwrap(), memory(), 480)
        .await
        .unwrap();
    let mut spec = connection_spec(cpu.addr);
    spec.poll_interval = Some(200);
    let (mut observer, plc) = start(&broker, spec).await;
    for i in 0..1000u32 {
        let id = format!("r{i}");
        plc.add_endpoint(endpoint(
            &id,
            Operation::Subscribe,
            &format!("DB2,REAL{}", i * 4),
        ))
        .await
        .unwrap();
    }
    wait_for_state(&plc, ConnectionState::Connected).await;
    assert_eq!(
        next_on(&mut observer, "services/plc/r999").await["value"],
        json!(999.0)
    );
    // One poll of 4,000 bytes at a PDU of 480: 9 requests.
    let before = cpu.memory().requests;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let polls = (cpu.memory().requests - before) as f64 / 9.0;
    assert!(
        (4.0..=6.0).contains(&polls),
        "{} requests",
        cpu.memory().requests - before
    );

    // Past the end of DB1 (64 bytes): that endpoint fails; its neighbour, read in the same
    // range at first, still publishes.
    plc.add_endpoint(endpoint("last", Operation::Subscribe, "DB1,INT60"))
        .await
        .unwrap();
    plc.add_endpoint(endpoint("beyond", Operation::Subscribe, "DB1,REAL62"))
        .await
        .unwrap();
    plc.add_endpoint(endpoint("nodb", Operation::Subscribe, "DB9,INT0"))
        .await
        .unwrap();
    assert_eq!(
        next_on(&mut observer, "services/plc/last").await["value"],
        json!(0)
    );
    let beyond = endpoint_error(&plc, "beyond").await;
    let nodb = endpoint_error(&plc, "nodb").await;
    assert!(
        beyond.contains("0x05") && beyond.contains("out of range"),
        "{beyond}"
    );
    assert!(
        nodb.contains("0x0a") && nodb.contains("does not exist"),
        "{nodb}"
    );
    assert_eq!(plc.endpoint_error("last"), None);

    // A refused write answers with the item's return code.
    plc.add_endpoint(endpoint("setbeyond", Operation::Write, "DB1,REAL62"))
        .await
        .unwrap();
    send(&observer, "services/plc/setbeyond/set", br#"{"value": 1}"#).await;
    let answer = next_on(&mut observer, "services/plc/setbeyond/res").await;
    assert_eq!(answer["error"]["code"], json!(5), "{answer}");
    plc.stop().await;
    cpu.stop().await;
}

#[tokio::test]
async fn the_cpu_going_away_is_reconnected() {
    let broker = broker().await;
    let cpu = Simulator::start("127.0.0.1:0".parse().unwrap(), memory(), 240)
        .await
        .unwrap();
    let addr = cpu.addr;
    let (mut observer, plc) = start(&broker, connection_spec(addr)).await;
    plc.add_endpoint(endpoint("real", Operation::Subscribe, "DB1,REAL4"))
        .await
        .unwrap();
    plc.add_endpoint(endpoint("realreq", Operation::Read, "DB1,REAL4"))
        .await
        .unwrap();
    wait_for_state(&plc, ConnectionState::Connected).await;
    next_on(&mut observer, "services/plc/real").await;

    cpu.stop().await;
    wait_for_state(&plc, ConnectionState::Reconnecting).await;
    assert!(plc.status().last_error.is_some());
    send(&observer, "services/plc/realreq/req", br#"{"id": 2}"#).await;
    let answer = next_on(&mut observer, "services/plc/realreq/res").await;
    assert_eq!(
        answer["error"]["message"],
        json!("not connected to the device")
    );

    let mut memory = memory();
    memory.db(1)[4..8].copy_from_slice(&7.5f32.to_be_bytes());
    let _back = Simulator::start(addr, memory, 240).await.unwrap();
    wait_for_state(&plc, ConnectionState::Connected).await;
    loop {
        if next_on(&mut observer, "services/plc/real").await["value"] == json!(7.5) {
            break;
        }
    }
    plc.stop().await;
    assert_eq!(plc.status().state, ConnectionState::Disconnected);
}
