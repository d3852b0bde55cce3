//! Discovery in the whole gateway: the in-process OPC UA server is browsed the way
//! `ironbridge discover opcua` and `POST /api/discover/opcua` browse it, the file written from
//! it installs unchanged, and its values arrive on MQTT under the service and the UNS tree.

use admin::services::{Authority, ServiceInput, ServiceState};
use broker::QoS;
use commissioning::model::{MessageSecurityMode, SecurityPolicy};
use gateway::Gateway;
use gateway::discovery::{OpcuaRequest, opcua};
use protocol_mapper::opcua::simulator::{OpcuaSimulator, SimulatorConfig, Variant};
use serde_json::json;

use crate::common::{next_on, settings, watch};

#[tokio::test]
async fn a_discovered_file_installs_and_delivers_the_servers_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpcuaSimulator::start(SimulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        host: "localhost".into(),
        user: None,
        pki_dir: dir.path().join("server"),
    })
    .await
    .unwrap();
    server.add_variable("Speed", 1200.5f64, false);
    server.add_variable("Offsets", Variant::from(vec![0.5f64, 1.5]), false);
    server.add_variable("Override", 100u16, true);

    let request = OpcuaRequest {
        url: format!("opc.tcp://127.0.0.1:{}", server.addr.port()),
        root: None,
        depth: 10,
        max_nodes: 10_000,
        security_policy: SecurityPolicy::None,
        security_mode: MessageSecurityMode::None,
        username: None,
        password: None,
        uns: Some("acme/berlin/line1".into()),
    };
    let found = opcua(&request, dir.path().join("client"), |_, _| {})
        .await
        .unwrap();
    assert_eq!(found.variables.len(), 3, "{}", found.yaml);
    assert!(
        found.yaml.contains("# Machine/Offsets (Double[])"),
        "{}",
        found.yaml
    );

    let gw = Gateway::start(settings(dir.path(), "discovery-test"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["acme/berlin/line1/#"]).await;
    let mut service = gw
        .broker()
        .unwrap()
        .connect_local("test/service")
        .await
        .unwrap();
    // Values are published on change, so both watch before the service starts.
    service
        .subscribe("services/cnc/Machine/Offsets", QoS::AtLeastOnce)
        .await
        .unwrap();
    let installed = gw
        .admin()
        .install_service(
            ServiceInput {
                id: Some("cnc".into()),
                commissioning_file: found.yaml,
                parameters: Default::default(),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .unwrap();
    assert_eq!(installed.state, ServiceState::Enabled);
    assert_eq!(
        next_on(&mut watcher, "acme/berlin/line1/Machine/Speed").await["value"],
        json!(1200.5)
    );
    assert_eq!(
        next_on(&mut service, "services/cnc/Machine/Offsets").await["value"],
        json!([0.5, 1.5])
    );
    gw.shutdown().await;
    server.stop().await;
}
