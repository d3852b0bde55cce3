//! The OPC UA driver against the in-process async-opcua server and the real broker:
//! subscriptions by node id and browse path, reads of scalars and structures, writes converted
//! to the node's type, message security with a username, clear connection errors, and the
//! session coming back by itself when the server restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use broker::{Broker, LocalClient, QoS};
use commissioning::model::{
    Address, ConnectionStrategy, ConnectionTargetState, MessageSecurityMode, OpcuaAddress,
    OpcuaConnection, OpcuaOptions, Operation, SecurityPolicy,
};
use common::{broker, next_on, send, wait_for_state};
use opcua::types::Variant;
use protocol_mapper::driver::{ConnectionHandle, EndpointSpec};
use protocol_mapper::opcua::connection;
use protocol_mapper::opcua::simulator::{OpcuaSimulator, SimulatorConfig};
use protocol_mapper::status::ConnectionState;
use serde_json::json;

async fn cnc(listen: &str, pki: &Path) -> OpcuaSimulator {
    OpcuaSimulator::start(SimulatorConfig {
        listen: listen.parse().unwrap(),
        host: "localhost".into(),
        user: Some(("operator".into(), "secret".into())),
        pki_dir: pki.to_path_buf(),
    })
    .await
    .unwrap()
}

fn connection_spec(addr: SocketAddr) -> OpcuaConnection {
    OpcuaConnection {
        host: addr.ip().to_string(),
        port: addr.port(),
        resource_path: None,
        username: None,
        password: None,
        options: Some(OpcuaOptions {
            security_policy: None,
            message_security_mode: None,
            connection_strategy: Some(ConnectionStrategy {
                initial_delay: 100,
                increment_factor: 2.0,
                max_delay: 400,
            }),
        }),
        client_certificate: None,
        client_private_key: None,
        trusted_server_certificates: Vec::new(),
        connection_strategy: None,
    }
}

fn endpoint(
    id: &str,
    operation: Operation,
    node_id: Option<&str>,
    path: Option<&str>,
) -> EndpointSpec {
    EndpointSpec {
        id: id.into(),
        topic: format!("services/cnc/{id}"),
        operation,
        address: Address::Opcua(OpcuaAddress {
            node_id: node_id.map(Into::into),
            browse_path: path.map(Into::into),
            browse_path_prefix: None,
            node_type: None,
            sampling_interval: Some(20),
            publish_interval: Some(50),
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

/// A read endpoint addressed as Connectware files do: `browsePathPrefix` + relative
/// `browsePath`.
fn relative_endpoint(id: &str, prefix: &str, path: &str) -> EndpointSpec {
    let mut spec = endpoint(id, Operation::Read, None, Some(path));
    if let Address::Opcua(address) = &mut spec.address {
        address.browse_path_prefix = Some(prefix.into());
    }
    spec
}

fn start(spec: OpcuaConnection, pki: &Path, link: LocalClient) -> ConnectionHandle {
    connection::start(
        "cnc",
        "machine",
        spec,
        ConnectionTargetState::Connected,
        pki.to_path_buf(),
        link,
    )
}

async fn link(broker: &Broker, name: &str) -> LocalClient {
    broker.handle().connect_local(name).await.unwrap()
}

async fn observer(broker: &Broker) -> LocalClient {
    let mut client = link(broker, "test/observer").await;
    client
        .subscribe("services/cnc/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
}

/// The connection's first `lastError`, waiting up to 10 s for it.
async fn first_error(handle: &ConnectionHandle) -> String {
    for _ in 0..200 {
        if let Some(error) = handle.status().last_error {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no error after 10 s; status {:?}", handle.status());
}

#[tokio::test]
async fn subscribes_reads_and_writes_converting_to_the_node_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = cnc("127.0.0.1:0", &dir.path().join("server")).await;
    let speed = server.add_variable("Speed", 1200.5f64, false);
    server.add_variable("Feed", 80i32, false);
    let overrides = server.add_variable("Override", 100u16, true);
    server.add_variable("Limits", Variant::from(vec![1i32, 2, 3]), false);
    let broker = broker().await;
    let mut observer = observer(&broker).await;
    // Each subscription's first value may come in either order; one observer per topic.
    let mut feed_observer = link(&broker, "test/feed").await;
    feed_observer
        .subscribe("services/cnc/feed", QoS::AtLeastOnce)
        .await
        .unwrap();
    let plc = start(
        connection_spec(server.addr),
        &dir.path().join("client"),
        link(&broker, "ironbridge/cnc/machine").await,
    );
    let ns = server.namespace;
    let by_id = format!("ns={ns};s=Machine.Speed");
    let by_path = format!("/0:Objects/{ns}:Machine/{ns}:Feed");
    let override_id = format!("ns={ns};s=Machine.Override");
    let limits_id = format!("ns={ns};s=Machine.Limits");
    for spec in [
        endpoint("speed", Operation::Subscribe, Some(&by_id), None),
        endpoint("feed", Operation::Subscribe, None, Some(&by_path)),
        endpoint("override", Operation::Write, Some(&override_id), None),
        endpoint("limits", Operation::Read, Some(&limits_id), None),
        endpoint("status", Operation::Read, Some("i=2256"), None),
        relative_endpoint("feedrel", &format!("{ns}:Machine"), &format!("{ns}:Feed")),
    ] {
        plc.add_endpoint(spec).await.unwrap();
    }
    wait_for_state(&plc, ConnectionState::Connected).await;

    // Subscriptions deliver the current value first, then every change.
    assert_eq!(
        next_on(&mut observer, "services/cnc/speed").await["value"],
        json!(1200.5)
    );
    assert_eq!(
        next_on(&mut feed_observer, "services/cnc/feed").await["value"],
        json!(80)
    );
    server.set_value(&speed, 1500.25f64).unwrap();
    let change = next_on(&mut observer, "services/cnc/speed").await;
    assert_eq!(change["value"], json!(1500.25));
    assert!(change["timestamp"].as_i64().unwrap() > 1_600_000_000_000);

    // Reads: an array and a structure (the server's ServerStatus) as JSON.
    send(&observer, "services/cnc/limits/req", br#"{"id": 1}"#).await;
    let answer = next_on(&mut observer, "services/cnc/limits/res").await;
    assert_eq!(answer["result"]["value"], json!([1, 2, 3]), "{answer}");
    // Connectware's relative browse path, from the Objects folder, after its prefix.
    send(&observer, "services/cnc/feedrel/req", b"{}").await;
    let answer = next_on(&mut observer, "services/cnc/feedrel/res").await;
    assert_eq!(answer["result"]["value"], json!(80), "{answer}");
    send(&observer, "services/cnc/status/req", b"{}").await;
    let answer = next_on(&mut observer, "services/cnc/status/res").await;
    let status = &answer["result"]["value"];
    assert!(status["StartTime"].is_string(), "{answer}");
    assert!(status["BuildInfo"].is_object(), "{answer}");

    // Writes convert JSON to the node's UInt16; a value that does not fit is refused.
    send(
        &observer,
        "services/cnc/override/set",
        br#"{"id": "a", "value": 85}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/cnc/override/res").await;
    assert_eq!(
        answer,
        json!({"id": "a", "timestamp": answer["timestamp"], "result": {"value": 85}})
    );
    assert_eq!(server.value(&overrides), Some(Variant::UInt16(85)));
    send(
        &observer,
        "services/cnc/override/set",
        br#"{"id": "b", "value": 70000}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/cnc/override/res").await;
    assert_eq!(
        answer["error"]["message"],
        json!("70000 does not fit in UInt16")
    );
    assert_eq!(server.value(&overrides), Some(Variant::UInt16(85)));

    // An unknown node is an error for that endpoint only.
    plc.add_endpoint(endpoint(
        "ghost",
        Operation::Subscribe,
        Some("ns=2;s=Nope"),
        None,
    ))
    .await
    .unwrap();
    for _ in 0..100 {
        if plc.endpoint_error("ghost").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = plc.endpoint_error("ghost").unwrap_or_default();
    assert!(error.contains("BadNodeIdUnknown"), "{error}");
    server.set_value(&speed, 1.0f64).unwrap();
    assert_eq!(
        next_on(&mut observer, "services/cnc/speed").await["value"],
        json!(1.0)
    );

    plc.stop().await;
    assert_eq!(plc.status().state, ConnectionState::Disconnected);
    server.stop().await;
}

#[tokio::test]
async fn sign_and_encrypt_with_a_username() {
    let dir = tempfile::tempdir().unwrap();
    let server = cnc("127.0.0.1:0", &dir.path().join("server")).await;
    let speed = server.add_variable("Speed", 7.0f64, false);
    let broker = broker().await;
    let mut observer = observer(&broker).await;
    let mut spec = connection_spec(server.addr);
    spec.username = Some("operator".into());
    spec.password = Some("secret".into());
    let options = spec.options.as_mut().unwrap();
    options.security_policy = Some(SecurityPolicy::Basic256Sha256);
    options.message_security_mode = Some(MessageSecurityMode::SignAndEncrypt);
    let plc = start(
        spec.clone(),
        &dir.path().join("client"),
        link(&broker, "a").await,
    );
    plc.add_endpoint(endpoint(
        "speed",
        Operation::Subscribe,
        Some(&speed.to_string()),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_on(&mut observer, "services/cnc/speed").await["value"],
        json!(7.0)
    );
    plc.stop().await;

    spec.password = Some("wrong".into());
    let refused = start(spec, &dir.path().join("client"), link(&broker, "b").await);
    let error = first_error(&refused).await;
    assert!(
        error.starts_with("the server refused the username or password"),
        "{error}"
    );
    assert_ne!(refused.status().state, ConnectionState::Connected);
    refused.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_host_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.2 is loopback too, but not a name in the server's certificate.
    let server = cnc("127.0.0.2:0", &dir.path().join("server")).await;
    let certificate = std::fs::read(dir.path().join("server/own/cert.der")).unwrap();
    let pem = pem_certificate(&certificate);
    let broker = broker().await;
    let mut spec = connection_spec(server.addr);
    spec.trusted_server_certificates = vec![pem];
    let options = spec.options.as_mut().unwrap();
    options.security_policy = Some(SecurityPolicy::Basic256Sha256);
    options.message_security_mode = Some(MessageSecurityMode::Sign);
    let plc = start(spec, &dir.path().join("client"), link(&broker, "a").await);
    let error = first_error(&plc).await;
    assert!(
        error.starts_with("the server certificate does not name the host `127.0.0.2`"),
        "{error}"
    );
    plc.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_session_and_its_monitored_items_come_back_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("server");
    let mut server = cnc("127.0.0.1:0", &pki).await;
    let addr = server.addr;
    server.add_variable("Speed", 1.0f64, false);
    let broker = broker().await;
    let mut observer = observer(&broker).await;
    let plc = start(
        connection_spec(addr),
        &dir.path().join("client"),
        link(&broker, "a").await,
    );
    let speed_id = format!("ns={};s=Machine.Speed", server.namespace);
    plc.add_endpoint(endpoint(
        "speed",
        Operation::Subscribe,
        Some(&speed_id),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_on(&mut observer, "services/cnc/speed").await["value"],
        json!(1.0)
    );

    for value in [2.0f64, 3.0] {
        server.stop().await;
        wait_for_state(&plc, ConnectionState::Reconnecting).await;
        // The same port, a fresh server: nothing of the old session survives on its side.
        let mut restarted = OpcuaSimulator::build(SimulatorConfig {
            listen: addr,
            host: "localhost".into(),
            user: None,
            pki_dir: pki.clone(),
        })
        .await
        .unwrap();
        let speed = restarted.add_variable("Speed", value, false);
        restarted.serve();
        wait_for_state(&plc, ConnectionState::Connected).await;
        assert_eq!(
            next_on(&mut observer, "services/cnc/speed").await["value"],
            json!(value)
        );
        restarted.set_value(&speed, value + 0.5).unwrap();
        assert_eq!(
            next_on(&mut observer, "services/cnc/speed").await["value"],
            json!(value + 0.5)
        );
        server = restarted;
    }
    assert!(
        plc.status().last_error.is_none(),
        "connected again clears the error"
    );
    plc.stop().await;
    server.stop().await;
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn target_state_disconnected_never_opens_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker = broker().await;
    let plc = connection::start(
        "cnc",
        "machine",
        connection_spec(listener.local_addr().unwrap()),
        ConnectionTargetState::Disconnected,
        dir.path().to_path_buf(),
        link(&broker, "a").await,
    );
    plc.add_endpoint(endpoint(
        "speed",
        Operation::Subscribe,
        Some("i=2258"),
        None,
    ))
    .await
    .unwrap();
    let accepted = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(accepted.is_err(), "no connection attempt");
    assert_eq!(plc.status().state, ConnectionState::Disconnected);
    plc.stop().await;
}

#[tokio::test]
async fn discovery_lists_variables_with_types_and_writes_a_file_that_installs() {
    use commissioning::discovery::{OpcuaServer, opcua_file};
    use protocol_mapper::opcua::discover::{Options, discover};

    let dir = tempfile::tempdir().unwrap();
    let server = cnc("127.0.0.1:0", &dir.path().join("server")).await;
    server.add_variable("Speed", 1200.5f64, false);
    server.add_variable("Override", 100u16, true);
    server.add_variable("Limits", Variant::from(vec![1i32, 2, 3]), false);
    let options = Options {
        connection: connection_spec(server.addr),
        root: None,
        max_depth: 5,
        max_nodes: 1000,
    };
    let mut reports = 0;
    let found = discover(&options, dir.path().join("client"), |_, _| reports += 1)
        .await
        .unwrap();
    assert!(reports > 0);
    assert_eq!(found.truncated, None);
    let ns = server.namespace;
    let mut variables: Vec<_> = found
        .variables
        .iter()
        .map(|v| {
            (
                v.path.join("/"),
                v.node_id.clone(),
                v.data_type.clone(),
                v.array,
                v.writable,
            )
        })
        .collect();
    variables.sort();
    // The server's own diagnostics object is skipped; only the machine's variables remain.
    assert_eq!(
        variables,
        [
            (
                "Machine/Limits".into(),
                format!("ns={ns};s=Machine.Limits"),
                "Int32".into(),
                true,
                false
            ),
            (
                "Machine/Override".into(),
                format!("ns={ns};s=Machine.Override"),
                "UInt16".into(),
                false,
                true
            ),
            (
                "Machine/Speed".into(),
                format!("ns={ns};s=Machine.Speed"),
                "Double".into(),
                false,
                false
            ),
        ]
    );

    // The file it makes validates as it is.
    let file = opcua_file(
        &OpcuaServer {
            host: server.addr.ip().to_string(),
            port: server.addr.port(),
            resource_path: None,
            security: None,
            username: None,
        },
        &found.variables,
        Some("acme/berlin/line1"),
    );
    let service = commissioning::load_file(
        &file,
        None,
        &serde_json::Map::new(),
        &commissioning::Environment::offline(),
    )
    .unwrap_or_else(|d| panic!("{d:?}\n{file}"));
    assert_eq!(service.resources.len(), 5, "{file}");
    assert!(
        file.contains("# Machine/Override (UInt16, writable)"),
        "{file}"
    );

    // A bounded browse says that it stopped; a root that is not a node id is refused.
    let small = Options {
        max_nodes: 2,
        ..options
    };
    let found = discover(&small, dir.path().join("client"), |_, _| {})
        .await
        .unwrap();
    assert!(found.truncated.unwrap().contains("--max-nodes"));
    let bad_root = Options {
        root: Some("Machine".into()),
        ..small
    };
    let error = discover(&bad_root, dir.path().join("client"), |_, _| {})
        .await
        .unwrap_err();
    assert!(error.contains("not a node id"), "{error}");
    server.stop().await;

    // Nobody there: the error names the server.
    let gone = Options {
        connection: connection_spec("127.0.0.1:1".parse().unwrap()),
        root: None,
        max_depth: 5,
        max_nodes: 10,
    };
    let error = discover(&gone, dir.path().join("client"), |_, _| {})
        .await
        .unwrap_err();
    assert!(error.contains("127.0.0.1:1"), "{error}");
}
