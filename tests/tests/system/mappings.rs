//! The commissioning examples with mappings, installed into the whole gateway (real broker, real
//! admin API, simulated Modbus device): what their README promises is what subscribers see.

use std::time::Duration;

use admin::services::{Authority, ServiceInput, ServiceState};
use broker::{LocalClient, Message, QoS};
use gateway::Gateway;
use protocol_mapper::modbus::simulator::Simulator;
use serde_json::{Map, Value, json};

use crate::common::{example, first_matching, next_on, settings, watch};

async fn install(gw: &Gateway, file: &str, parameters: Value) -> String {
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: example(file),
                parameters: parameters.as_object().cloned().unwrap_or_else(Map::new),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled);
    installed.service.id
}

/// Everything that arrives within `window`, as (topic, JSON).
async fn collect_for(client: &mut LocalClient, window: Duration) -> Vec<(String, Value)> {
    let raw = collect_raw_for(client, window).await;
    raw.into_iter()
        .map(|(topic, payload)| {
            let json = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            (topic, json)
        })
        .collect()
}

async fn publish(client: &LocalClient, topic: &str, payload: Value) {
    let message = Message::new(topic, payload.to_string(), QoS::AtLeastOnce, false);
    client.publish(message).await.unwrap();
}

#[tokio::test]
async fn digital_twin_collects_three_endpoints_into_one_retained_object() {
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 100)
        .await
        .unwrap();
    {
        let mut bank = device.bank();
        bank.holding[0] = 215; // 21.5 °C in tenths
        bank.holding[1..3].copy_from_slice(&[0x44BB, 0x8000]); // 1500.0 as floatBE
        bank.holding[3] = 1; // running
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "mapping-test-admin"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["services/presstwin/#"]).await;
    let id = install(
        &gw,
        "digital-twin.yml",
        json!({"plcPort": device.addr.port(), "pollInterval": 50}),
    )
    .await;
    assert_eq!(id, "presstwin");

    // The endpoint's own rule scales the raw register before anyone sees it.
    let temperature = next_on(&mut watcher, "services/presstwin/press/temperature").await;
    assert_eq!(temperature["value"], json!(21.5));

    // The twin holds all three once each has arrived.
    let twin = first_matching(&mut watcher, "services/presstwin/twin", |twin| {
        ["temperature", "speed", "state"]
            .iter()
            .all(|key| twin.get(key).is_some())
    })
    .await;
    assert_eq!(twin["temperature"], json!(21.5));
    assert_eq!(twin["speed"], json!(1500));
    assert_eq!(twin["state"], json!("running"));

    // Unchanged values are polled again and again, but the twin is not republished.
    let repeats = collect_for(&mut watcher, Duration::from_millis(500)).await;
    let twins = repeats
        .iter()
        .filter(|(t, _)| t == "services/presstwin/twin")
        .count();
    let polls = repeats
        .iter()
        .filter(|(t, _)| t == "services/presstwin/press/state")
        .count();
    assert!(polls >= 3, "the device is polled: {repeats:?}");
    assert_eq!(
        twins, 0,
        "an unchanged twin is not republished: {repeats:?}"
    );

    // A change on the device shows up in the twin, the rest kept.
    device.bank().holding[3] = 2;
    let twin = first_matching(&mut watcher, "services/presstwin/twin", |t| {
        t["state"] == "fault"
    })
    .await;
    assert_eq!(twin["temperature"], json!(21.5));
    assert!(twin["updated"].as_str().unwrap().ends_with('Z'), "{twin}");

    // Retained: a late subscriber gets the current twin at once.
    let mut late = watch(&gw, &["services/presstwin/twin"]).await;
    let retained = next_on(&mut late, "services/presstwin/twin").await;
    assert_eq!(retained["state"], json!("fault"));

    let status = gw.admin().status("presstwin").await.unwrap();
    assert!(!status.deviated, "{status:?}");
    device.stop().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn unit_conversion_by_wildcard_and_a_mapping_that_writes_to_the_device() {
    let device = Simulator::start("127.0.0.1:0".parse().unwrap(), 100)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "mapping-test-admin"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["services/ovenunits/#"]).await;
    install(
        &gw,
        "unit-conversion.yml",
        json!({"plcPort": device.addr.port()}),
    )
    .await;

    // Any sensor: the wildcard's value picks the output topic and is visible to the rules.
    for (sensor, celsius, fahrenheit) in [("zone1", 100, 212), ("zone2", -40, -40)] {
        publish(
            &watcher,
            &format!("services/ovenunits/sensors/{sensor}/celsius"),
            json!({"timestamp": 1763800000000_i64, "value": celsius}),
        )
        .await;
        let out = next_on(
            &mut watcher,
            &format!("services/ovenunits/sensors/{sensor}/fahrenheit"),
        )
        .await;
        assert_eq!(
            out,
            json!({"timestamp": 1763800000000_i64, "value": fahrenheit, "unit": "°F", "sensor": sensor})
        );
    }

    // 392 °F is 200 °C: the device gets 2000 tenths, and the write is answered on /res.
    publish(
        &watcher,
        "services/ovenunits/setpoint/fahrenheit",
        json!({"value": 392}),
    )
    .await;
    let answer = next_on(&mut watcher, "services/ovenunits/setpoint/res").await;
    assert_eq!(answer["result"]["value"], json!(2000), "{answer}");
    assert_eq!(device.bank().holding[20], 2000);

    // The filter keeps nonsense off the device; nothing is written.
    publish(
        &watcher,
        "services/ovenunits/setpoint/fahrenheit",
        json!({"value": "hot"}),
    )
    .await;
    publish(
        &watcher,
        "services/ovenunits/setpoint/fahrenheit",
        json!({"value": 5000}),
    )
    .await;
    let quiet = collect_for(&mut watcher, Duration::from_millis(400)).await;
    assert!(
        quiet
            .iter()
            .all(|(topic, _)| topic != "services/ovenunits/setpoint/res"),
        "{quiet:?}"
    );
    assert_eq!(device.bank().holding[20], 2000);
    device.stop().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn cov_uplink_forwards_changes_and_batches_readings() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "mapping-test-admin"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["uplink/#"]).await;
    install(&gw, "cov-uplink.yml", json!({"batchInterval": 300})).await;

    // Press 7 on line 1: 100 kW passes (first), 104 is within 5 %, 106 is not, 101 is within
    // 5 % of 106 (the last that passed), 200 passes.
    let readings = [100.0, 104.0, 106.0, 101.0, 200.0];
    for kw in readings {
        publish(
            &watcher,
            "factory/line1/press7/power",
            json!({"timestamp": 1763800000000_i64, "value": kw}),
        )
        .await;
    }
    // Another machine has its own reference value.
    publish(
        &watcher,
        "factory/line2/saw1/power",
        json!({"timestamp": 1763800000000_i64, "value": 104.0}),
    )
    .await;

    let seen = collect_for(&mut watcher, Duration::from_millis(800)).await;
    let changes: Vec<&Value> = seen
        .iter()
        .filter(|(topic, _)| topic == "uplink/line1/press7/power")
        .map(|(_, v)| v)
        .collect();
    let kw: Vec<f64> = changes.iter().filter_map(|v| v["kw"].as_f64()).collect();
    assert_eq!(kw, [100.0, 106.0, 200.0], "{seen:?}");
    assert_eq!(changes[0]["line"], "line1");
    assert_eq!(changes[0]["machine"], "press7");
    assert_eq!(changes[0]["at"], "2025-11-22T08:26:40.000Z");
    assert!(
        seen.iter()
            .any(|(t, v)| t == "uplink/line2/saw1/power" && v["kw"] == json!(104))
    );

    // Every reading, batched: six readings within one 300 ms interval make one array.
    let batches: Vec<&Value> = seen
        .iter()
        .filter(|(topic, _)| topic == "uplink/batches")
        .map(|(_, v)| v)
        .collect();
    let all: Vec<Value> = batches
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect();
    assert_eq!(all.len(), 6, "{batches:?}");
    assert_eq!(all[0], json!({"id": "line1/press7", "kw": 100}));
    assert_eq!(all[5], json!({"id": "line2/saw1", "kw": 104}));

    // A payload the rules cannot read is dropped and counted; the mapping keeps going.
    let bad = Message::new(
        "factory/line1/press7/power",
        "not json",
        QoS::AtLeastOnce,
        false,
    );
    watcher.publish(bad).await.unwrap();
    publish(
        &watcher,
        "factory/line1/press7/power",
        json!({"timestamp": 1763800000000_i64, "value": 500.0}),
    )
    .await;
    let after = next_on(&mut watcher, "uplink/line1/press7/power").await;
    assert_eq!(after["kw"], json!(500));
    let status = gw.admin().status("poweruplink").await.unwrap();
    let changes_status = status
        .resources
        .iter()
        .find(|r| r.id == "changes")
        .unwrap()
        .clone();
    let message = changes_status.message.unwrap_or_default();
    assert!(
        message.contains("dropped") && message.contains("not JSON"),
        "{message}"
    );
    assert!(
        !status.deviated,
        "rule errors do not make a service deviate: {status:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_mapping_with_target_state_disabled_is_recorded_but_moves_nothing() {
    const FILE: &str = r#"
metadata: {name: Switchable}
resources:
  active:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {topic: 'in/+n'}
          publish: {topic: 'active/{n}'}
  parked:
    type: Cybus::Mapping
    properties:
      targetState: disabled
      mappings:
        - subscribe: {topic: 'in/+n'}
          publish: {topic: 'parked/{n}'}
"#;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "mapping-test-admin"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["active/#", "parked/#"]).await;
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: FILE.into(),
                parameters: Map::new(),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled);

    // The payload is not JSON: a mapping without rules moves bytes as they are.
    let raw = Message::new("in/1", &b"\x00raw\xff"[..], QoS::AtLeastOnce, false);
    watcher.publish(raw).await.unwrap();
    let seen = collect_raw_for(&mut watcher, Duration::from_millis(400)).await;
    assert_eq!(seen, [("active/1".to_string(), b"\x00raw\xff".to_vec())]);

    let status = gw.admin().status("switchable").await.unwrap();
    let parked = status.resources.iter().find(|r| r.id == "parked").unwrap();
    assert_eq!(
        (parked.state.as_str(), parked.in_target_state),
        ("disabled", true)
    );
    assert!(!status.deviated, "{status:?}");
    gw.shutdown().await;
}

/// Everything that arrives within `window`, as (topic, raw payload).
async fn collect_raw_for(client: &mut LocalClient, window: Duration) -> Vec<(String, Vec<u8>)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(delivery)) = tokio::time::timeout_at(deadline, client.recv()).await {
        let message = delivery.message;
        seen.push((message.topic.to_string(), message.payload.to_vec()));
    }
    seen
}

/// A file in Connectware's forms (substituted name, dotted ids, `interval`, a relative browse
/// path with its prefix, plain endpoint names in a mapping, an ignored `inputBuffering`)
/// installs unchanged and its data reaches the plant topic tree.
#[tokio::test]
async fn a_file_written_for_connectware_runs_unchanged() {
    use protocol_mapper::opcua::simulator::{OpcuaSimulator, SimulatorConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut machine = OpcuaSimulator::build(SimulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        host: "127.0.0.1".into(),
        user: None,
        pki_dir: dir.path().join("machine"),
    })
    .await
    .unwrap();
    let speed = machine.add_variable("Spindle.Speed", 1200.0f64, false);
    let feed = machine.add_variable("Feed", 80.0f64, false);
    machine.serve();
    let gw = Gateway::start(settings(dir.path(), "mapping-test-admin"))
        .await
        .unwrap();
    // The two first values may come in either order: one watcher per topic.
    let mut spindle_watcher = watch(&gw, &["plant/mill12/spindle"]).await;
    let mut feed_watcher = watch(&gw, &["plant/mill12/feed"]).await;
    let id = install(
        &gw,
        "connectware-forms.yml",
        json!({"machineNum": 12, "opcuaPort": machine.addr.port()}),
    )
    .await;
    assert_eq!(id, "mill12", "the id comes from the substituted name");

    let spindle = next_on(&mut spindle_watcher, "plant/mill12/spindle").await;
    assert_eq!(spindle["value"], json!(1200.0));
    let fed = next_on(&mut feed_watcher, "plant/mill12/feed").await;
    assert_eq!(fed["value"], json!(80.0));
    machine.set_value(&feed, 95.5f64).unwrap();
    let changed = first_matching(&mut feed_watcher, "plant/mill12/feed", |m| {
        m["value"] == 95.5
    })
    .await;
    assert!(changed["timestamp"].is_number(), "{changed}");
    machine.set_value(&speed, 1500.0f64).unwrap();
    first_matching(&mut spindle_watcher, "plant/mill12/spindle", |m| {
        m["value"] == 1500.0
    })
    .await;

    let status = gw.admin().status("mill12").await.unwrap();
    assert!(!status.deviated, "{status:?}");
    gw.shutdown().await;
    machine.stop().await;
}
