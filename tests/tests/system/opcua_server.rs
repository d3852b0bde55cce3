//! `Cybus::Server::Opcua` and `Cybus::Node::Opcua` in the whole gateway, seen by async-opcua's
//! client (through Ironbridge's own OPC UA connection and discovery, the flow a UaExpert user
//! follows: browse, read, subscribe, write): values published on MQTT reach subscribed clients
//! with their timestamp, a client's write is published on MQTT, a second service adds nodes
//! to the one server and takes them away when it is deleted, and a second server is refused.

use std::time::Duration;

use admin::services::{Authority, ServiceInput, ServiceState};
use broker::{Message, QoS};
use commissioning::model::{
    AccessContext, AccessOperation, Address, ConnectionTargetState, OpcuaAddress, OpcuaConnection,
    OpcuaOptions, Operation, Permission,
};
use gateway::Gateway;
use protocol_mapper::driver::EndpointSpec;
use protocol_mapper::opcua::discover::{Options, discover};
use serde_json::{Map, Value, json};

use crate::common::{example, free_port, next_on, settings, watch};

fn server_file(port: u16) -> String {
    format!(
        r#"
metadata: {{name: Line Server}}
resources:
  server:
    type: Cybus::Server::Opcua
    properties:
      port: {port}
      resourcePath: /ironbridge
      allowAnonymous: true
      securityPolicies: [None, Basic256Sha256]
      securityModes: [None, SignAndEncrypt]
  machine:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref server
      nodeType: Object
      browseName: Machine
  speed:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref machine
      nodeType: Variable
      browseName: Speed
      nodeId: ns=1;s=Machine.Speed
      dataType: Double
      initialValue: 0
  setpoint:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref machine
      nodeType: Variable
      browseName: Setpoint
      dataType: Int32
      operation: serverReceives
  offsets:
    type: Cybus::Node::Opcua
    properties:
      parent: !ref machine
      nodeType: Variable
      browseName: Offsets
      dataType: Float
      valueRank: 1
"#
    )
}

const EXTRA: &str = r#"
metadata: {name: Extra}
resources:
  counter:
    type: Cybus::Node::Opcua
    properties:
      parent: lineserver::machine
      nodeType: Variable
      browseName: Counter
      dataType: UInt32
"#;

fn client_spec(port: u16) -> OpcuaConnection {
    OpcuaConnection {
        host: "127.0.0.1".into(),
        port,
        resource_path: Some("/ironbridge".into()),
        username: None,
        password: None,
        options: Some(OpcuaOptions {
            security_policy: None,
            message_security_mode: None,
            connection_strategy: None,
        }),
        client_certificate: None,
        client_private_key: None,
        trusted_server_certificates: Vec::new(),
        connection_strategy: None,
    }
}

fn input(file: &str) -> ServiceInput {
    ServiceInput {
        id: None,
        commissioning_file: file.into(),
        parameters: Map::new(),
        target_state: None,
    }
}

/// A QoS 1 message of JSON, as a device or a mapping would publish it.
fn json_message(topic: &str, payload: Value) -> Message {
    Message::new(topic, payload.to_string(), QoS::AtLeastOnce, false)
}

/// An endpoint of the test's OPC UA client on `node`, its data on `services/client/<id>`.
fn client_endpoint(id: &str, operation: Operation, node: &str, sampling_ms: u64) -> EndpointSpec {
    EndpointSpec {
        id: id.into(),
        topic: format!("services/client/{id}"),
        operation,
        address: Address::Opcua(OpcuaAddress {
            node_id: Some(node.into()),
            browse_path: None,
            browse_path_prefix: None,
            node_type: None,
            sampling_interval: Some(sampling_ms),
            publish_interval: Some(50),
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

async fn browse(port: u16, dir: &std::path::Path) -> Vec<(String, String, bool)> {
    let found = discover(
        &Options {
            connection: client_spec(port),
            root: None,
            max_depth: 5,
            max_nodes: 1000,
        },
        dir.join("client"),
        |_, _| {},
    )
    .await
    .unwrap();
    let mut nodes: Vec<_> = found
        .variables
        .into_iter()
        .map(|v| (v.path.join("/"), v.data_type, v.writable))
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn services_publish_plant_data_as_an_opc_ua_address_space() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "opcua-server-test"))
        .await
        .unwrap();
    let port = free_port();
    let admin = gw.admin();
    let installed = admin
        .install_service(input(&server_file(port)), &Authority::System)
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled, "{installed:?}");
    let status = admin.status("lineserver").await.unwrap();
    assert!(!status.deviated, "{status:?}");

    // Browse: the folder and its variables with their types; only the setpoint takes writes.
    assert_eq!(
        browse(port, dir.path()).await,
        [
            ("Machine/Offsets".into(), "Float".into(), false),
            ("Machine/Setpoint".into(), "Int32".into(), true),
            ("Machine/Speed".into(), "Double".into(), false),
        ]
    );

    // Read, subscribe and write through an OPC UA connection of the gateway itself.
    let broker = gw.broker().unwrap();
    let mut watcher = watch(&gw, &["services/client/#", "services/lineserver/setpoint"]).await;
    let link = broker.connect_local("test/client").await.unwrap();
    let client = protocol_mapper::opcua::connection::start(
        "client",
        "ua",
        client_spec(port),
        ConnectionTargetState::Connected,
        dir.path().join("client"),
        link,
    );
    let endpoint = |id: &str, operation, node: &str| client_endpoint(id, operation, node, 20);
    client
        .add_endpoint(endpoint(
            "speed",
            Operation::Subscribe,
            "ns=2;s=Machine.Speed",
        ))
        .await
        .unwrap();
    client
        .add_endpoint(endpoint(
            "offsets",
            Operation::Read,
            "ns=2;s=lineserver.offsets",
        ))
        .await
        .unwrap();
    client
        .add_endpoint(endpoint(
            "setpoint",
            Operation::Write,
            "ns=2;s=lineserver.setpoint",
        ))
        .await
        .unwrap();
    assert_eq!(
        next_on(&mut watcher, "services/client/speed").await["value"],
        json!(0.0)
    );

    // A value on the node's topic reaches the subscribed client, with its timestamp.
    let publisher = broker.connect_local("test/publisher").await.unwrap();
    // (A recent time: the server samples by source timestamp, and moves a value stamped within
    // the sampling interval of the one before to the next sampling instant.)
    let stamped = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 5;
    publisher
        .publish(json_message(
            "services/lineserver/speed",
            json!({"timestamp": stamped, "value": 1234.5}),
        ))
        .await
        .unwrap();
    let changed = next_on(&mut watcher, "services/client/speed").await;
    assert_eq!(changed["value"], json!(1234.5));
    assert_eq!(changed["timestamp"], json!(stamped));
    publisher
        .publish(json_message(
            "services/lineserver/offsets",
            json!([0.5, 1.5]),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    publisher
        .publish(json_message(
            "services/client/offsets/req",
            json!({"id": 1}),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_on(&mut watcher, "services/client/offsets/res").await["result"]["value"],
        json!([0.5, 1.5])
    );

    // A client's write is published on the node's topic as the node's Int32.
    publisher
        .publish(json_message(
            "services/client/setpoint/set",
            json!({"id": 2, "value": 75}),
        ))
        .await
        .unwrap();
    let written = next_on(&mut watcher, "services/lineserver/setpoint").await;
    assert_eq!(written["value"], json!(75), "{written}");
    assert_eq!(
        next_on(&mut watcher, "services/client/setpoint/res").await["result"]["value"],
        json!(75)
    );

    // Another service adds a node below the machine folder; deleting it takes the node away.
    admin
        .install_service(input(EXTRA), &Authority::System)
        .await
        .unwrap();
    assert!(browse(port, dir.path()).await.contains(&(
        "Machine/Counter".into(),
        "UInt32".into(),
        false
    )));
    admin.delete_service("extra").await.unwrap();
    assert_eq!(browse(port, dir.path()).await.len(), 3);

    // One server per gateway: a second one does not start, and says whose the first is.
    let second = admin
        .install_service(
            input(&server_file(free_port()).replace("Line Server", "Other Server")),
            &Authority::System,
        )
        .await;
    let error = format!("{second:?}");
    assert!(error.contains("lineserver::server"), "{error}");

    client.stop().await;
    gw.shutdown().await;
}

/// The example file over Basic256Sha256/SignAndEncrypt with a gateway user: the client's
/// certificate is refused until it is moved to `trusted/`, then values flow both ways.
#[tokio::test]
async fn the_example_serves_trusted_clients_of_gateway_users() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "opcua-example-password"))
        .await
        .unwrap();
    let port = free_port();
    let mut parameters = Map::new();
    parameters.insert("port".into(), json!(port));
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                parameters,
                ..input(&example("opcua-server.yml"))
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled, "{installed:?}");

    let broker = gw.broker().unwrap();
    let mut watcher = watch(&gw, &["services/client/#", "plant/line1/setpoint/set"]).await;
    let mut spec = client_spec(port);
    spec.resource_path = Some("/UA/CybusOpcuaServer".into());
    spec.username = Some("admin".into());
    spec.password = Some("opcua-example-password".into());
    spec.options = Some(OpcuaOptions {
        security_policy: Some(commissioning::model::SecurityPolicy::Basic256Sha256),
        message_security_mode: Some(commissioning::model::MessageSecurityMode::SignAndEncrypt),
        connection_strategy: Some(commissioning::model::ConnectionStrategy {
            initial_delay: 100,
            increment_factor: 1.0,
            max_delay: 100,
        }),
    });
    let mut viewer_spec = spec.clone();
    let client = protocol_mapper::opcua::connection::start(
        "client",
        "ua",
        spec,
        ConnectionTargetState::Connected,
        dir.path().join("client"),
        broker.connect_local("test/client").await.unwrap(),
    );
    let endpoint = |id: &str, operation, node: &str| client_endpoint(id, operation, node, 0);
    client
        .add_endpoint(endpoint(
            "temperature",
            Operation::Subscribe,
            "ns=2;s=Line1.Temperature",
        ))
        .await
        .unwrap();
    client
        .add_endpoint(endpoint(
            "setpoint",
            Operation::Write,
            "ns=2;s=Line1.TemperatureSetpoint",
        ))
        .await
        .unwrap();

    // Refused first: the certificate waits in rejected/ for an administrator.
    let pki = dir.path().join("opcua-server").join("pki");
    let mut rejected = Vec::new();
    for _ in 0..100 {
        rejected = std::fs::read_dir(pki.join("rejected"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !rejected.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rejected.len(), 1, "{:?}", client.status());
    assert_ne!(
        client.status().state,
        protocol_mapper::status::ConnectionState::Connected
    );
    std::fs::create_dir_all(pki.join("trusted")).unwrap();
    let name = rejected[0].file_name().unwrap();
    std::fs::rename(&rejected[0], pki.join("trusted").join(name)).unwrap();

    // Trusted: the machine's value reaches the client through the example's mapping ...
    let publisher = broker.connect_local("test/publisher").await.unwrap();
    let mut value = json!(null);
    for _ in 0..100 {
        publisher
            .publish(json_message(
                "plant/line1/temperature",
                json!({"value": 64.5}),
            ))
            .await
            .unwrap();
        if let Ok(message) = tokio::time::timeout(
            Duration::from_millis(200),
            next_on(&mut watcher, "services/client/temperature"),
        )
        .await
        {
            value = message["value"].clone();
            if value == json!(64.5) {
                break;
            }
        }
    }
    assert_eq!(value, json!(64.5));
    // ... and the operator's write reaches the machine's `/set`.
    publisher
        .publish(json_message(
            "services/client/setpoint/set",
            json!({"id": 1, "value": 70.5}),
        ))
        .await
        .unwrap();
    let command = next_on(&mut watcher, "plant/line1/setpoint/set").await;
    assert_eq!(command["value"], json!(70.5), "{command}");

    // A client's write is published in its user's name: a user who may read the plant's
    // topics but not write them is refused, and nothing reaches the machine. The same
    // certificate, already trusted, with another user.
    gw.admin()
        .create_user(
            "viewer",
            "viewer-password-1",
            Vec::new(),
            vec![Permission {
                resource: "#".into(),
                operation: AccessOperation::Read,
                context: AccessContext::Mqtt,
            }],
            None,
        )
        .await
        .unwrap();
    viewer_spec.username = Some("viewer".into());
    viewer_spec.password = Some("viewer-password-1".into());
    let viewer = protocol_mapper::opcua::connection::start(
        "client",
        "viewer",
        viewer_spec,
        ConnectionTargetState::Connected,
        dir.path().join("client"),
        broker.connect_local("test/viewer").await.unwrap(),
    );
    viewer
        .add_endpoint(endpoint(
            "viewersetpoint",
            Operation::Write,
            "ns=2;s=Line1.TemperatureSetpoint",
        ))
        .await
        .unwrap();
    for _ in 0..200 {
        if viewer.status().state == protocol_mapper::status::ConnectionState::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        viewer.status().state,
        protocol_mapper::status::ConnectionState::Connected,
        "the viewer logs in: {:?}",
        viewer.status()
    );
    publisher
        .publish(json_message(
            "services/client/viewersetpoint/set",
            json!({"id": 2, "value": 99.5}),
        ))
        .await
        .unwrap();
    let answer = next_on(&mut watcher, "services/client/viewersetpoint/res").await;
    let refusal = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(refusal.contains("BadUserAccessDenied"), "{answer}");
    let leaked = tokio::time::timeout(
        Duration::from_millis(300),
        next_on(&mut watcher, "plant/line1/setpoint/set"),
    )
    .await;
    assert!(
        leaked.is_err(),
        "the refused write was published: {leaked:?}"
    );
    viewer.stop().await;
    client.stop().await;
    gw.shutdown().await;
}
