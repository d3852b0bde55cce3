//! Every file in `commissioning-examples/` is validated here; the deliberately broken one must
//! produce exactly the diagnostics written next to it in `broken.expected`.

use std::path::{Path, PathBuf};

use commissioning::{Environment, load, service_id_for};
use serde_json::{Map, Value as Json, json};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../commissioning-examples")
}

/// Parameter values an example needs because it declares them without a default.
fn parameters_for(file: &str) -> Map<String, Json> {
    let values = match file {
        "user-management.yml" => json!({"dashboardPassword": "a-long-dashboard-secret"}),
        "http-intake.yml" => json!({"machinePassword": "a-press-secret"}),
        "aws-iot-core.yml" => json!({
            "iotEndpoint": "a1b2c3d4e5f6g7-ats.iot.eu-central-1.amazonaws.com",
            "thingName": "press-7",
            "rootCa": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "privateKey": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        }),
        _ => json!({}),
    };
    values.as_object().cloned().unwrap_or_default()
}

fn validate(file: &Path) -> Result<commissioning::Service, Vec<String>> {
    let source = std::fs::read_to_string(file).expect("example readable");
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let id = service_id_for(&source, None, &serde_json::Map::new())
        .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    load(&source, &id, &parameters_for(name), &Environment::offline())
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

/// A file written in a test, as service `cell`, offline.
fn load_inline(file: &str) -> Result<commissioning::Service, Vec<String>> {
    load(file, "cell", &Map::new(), &Environment::offline())
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

#[test]
fn every_example_but_the_broken_one_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples folder") {
        let path = entry.expect("entry").path();
        let is_yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
        if !is_yaml || path.file_stem().is_some_and(|s| s == "broken") {
            continue;
        }
        if let Err(problems) = validate(&path) {
            panic!("{} is invalid:\n{}", path.display(), problems.join("\n"));
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected at least four valid examples, found {checked}"
    );
}

#[test]
fn the_broken_example_reports_exactly_its_problems() {
    let problems =
        validate(&examples_dir().join("broken.yml")).expect_err("broken.yml must be invalid");
    let expected =
        std::fs::read_to_string(examples_dir().join("broken.expected")).expect("broken.expected");
    let expected: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(problems, expected);
}

#[test]
fn examples_resolve_references_and_the_service_root() {
    let service = validate(&examples_dir().join("modbus-plc.yml")).expect("valid");
    assert_eq!(service.id, "modbusplc");
    assert_eq!(service.mqtt_root, "services/modbusplc");
    let temperature = &service.resources["temperature"];
    assert_eq!(
        temperature.properties["connection"],
        json!({"$ref": "modbusplc::plcConnection"})
    );
    assert!(temperature.depends_on.contains("plcConnection"));
    let position = |id: &str| service.start_order.iter().position(|r| r == id);
    assert!(
        position("plcConnection") < position("temperature"),
        "{:?}",
        service.start_order
    );

    let forwarder = validate(&examples_dir().join("cloud-forwarder.yml")).expect("valid");
    let topic = &forwarder.resources["forward"].properties["mappings"][1]["publish"]["topic"];
    assert_eq!(topic, "services/cloudforwarder/commands/{command}");
    assert_eq!(
        forwarder.resources["cloud"].properties["connection"]["clientId"],
        "cloudforwarder-uplink"
    );
}

#[test]
fn endpoints_follow_their_connection_onto_an_agent_and_mappings_stay_unless_placed() {
    let service = validate(&examples_dir().join("press-agent.yml")).expect("valid");
    let placed = |id: &str| service.agent_of(&service.resources[id]).map(str::to_string);
    assert_eq!(placed("pressPlc").as_deref(), Some("press"));
    assert_eq!(placed("strokes").as_deref(), Some("press"));
    assert_eq!(placed("shiftCounter"), None);
    assert_eq!(service.agents(), ["press".to_string()].into());
}

#[test]
fn cron_expressions_are_checked_at_validation() {
    let file = "metadata: {name: Cron}\nresources:\n  plc:\n    type: Cybus::Connection\n    properties: {protocol: Modbus, connection: {host: h}}\n  ep:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Modbus\n      connection: !ref plc\n      subscribe: {fc: 3, address: 0, cronExpression: 'every monday'}\n";
    let problems =
        load(file, "cron", &Map::new(), &Environment::offline()).expect_err("invalid cron");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].path,
        "resources.ep.properties.subscribe.cronExpression"
    );
    assert!(
        problems[0]
            .message
            .starts_with("invalid cronExpression \"every monday\""),
        "{problems:?}"
    );
    let five_fields = file.replace("every monday", "*/5 * * * *");
    assert!(
        load(&five_fields, "cron", &Map::new(), &Environment::offline()).is_ok(),
        "crontab's five fields work too"
    );
}

#[test]
fn each_modbus_transport_gets_what_it_needs() {
    let file = r#"
metadata: {name: Lines}
resources:
  serial:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection: {transport: rtu, host: 10.0.0.5, dataBits: 9, stopBits: 3, parity: mark}
  gateway:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection: {transport: rtuOverTcp, device: /dev/ttyS0}
  fine:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection: {transport: rtu, device: /dev/ttyUSB0, baudRate: 19200, parity: even}
"#;
    let mut found = load_inline(file).expect_err("invalid");
    found.sort();
    assert_eq!(
        found,
        [
            "resources.gateway.properties.connection.device: a serial device is only used with `transport: rtu` (line 13, column 51)",
            "resources.gateway.properties.connection.host: missing required property `host` (the device or serial gateway) (line 13, column 19)",
            "resources.serial.properties.connection.dataBits: expected 5-8, got 9 (line 8, column 62)",
            "resources.serial.properties.connection.device: `transport: rtu` needs the serial `device`, e.g. /dev/ttyUSB0 (line 8, column 19)",
            "resources.serial.properties.connection.host: `transport: rtu` talks to a serial `device`, not a host; use `rtuOverTcp` for a serial gateway (line 8, column 42)",
            "resources.serial.properties.connection.parity: unknown value `mark`; expected one of `none`, `even`, `odd` (line 8, column 86)",
            "resources.serial.properties.connection.stopBits: expected 1 or 2, got 3 (line 8, column 75)",
        ]
    );
}

#[test]
fn s7_connections_and_addresses_are_checked_at_validation() {
    let file = r#"
metadata: {name: Plc}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: S7
      connection: {host: 10.0.0.7, rack: 9, slot: 1, pduSize: 4096}
  typo:
    type: Cybus::Endpoint
    properties:
      protocol: S7
      connection: !ref plc
      subscribe: {address: 'DB1,REL4'}
  bit:
    type: Cybus::Endpoint
    properties:
      protocol: S7
      connection: !ref plc
      write: {address: 'DB1,X0.9', interval: 100}
  wide:
    type: Cybus::Endpoint
    properties:
      protocol: S7
      connection: !ref plc
      read: {address: DB1.DBW0, dataType: REAL}
  fine:
    type: Cybus::Endpoint
    properties:
      protocol: S7
      connection: !ref plc
      subscribe: {address: 'DB1,S20.10', interval: 250}
"#;
    let mut found = load_inline(file).expect_err("invalid");
    found.sort();
    assert_eq!(
        found,
        [
            "resources.bit.properties.write.address: `DB1,X0.9`: bit 9 does not exist; bits are 0-7 (line 20, column 24)",
            "resources.bit.properties.write.interval: only a `subscribe` endpoint polls (line 20, column 46)",
            "resources.plc.properties.connection.pduSize: expected 240-960, got 4096 (line 8, column 63)",
            "resources.plc.properties.connection.rack: expected 0-7, got 9 (line 8, column 42)",
            "resources.typo.properties.subscribe.address: `DB1,REL4` is not an S7 address: `REL` is not an S7 type; write e.g. `DB10,REAL4`, `DB1,X0.1`, `DB3,S20.10`, `DB1,INT12.2` (an array of 2), `M200.0`, `MW10`, `I0.0`, `Q1.2` or the Step 7 form `DB1.DBW0`, `DB1.DBX0.1` (line 14, column 28)",
            "resources.wide.properties.read.address: the address holds a WORD (2 bytes); REAL takes 4 bytes (line 26, column 23)",
        ]
    );
}

#[test]
fn opcua_server_nodes_are_checked_at_validation() {
    let file = r#"
metadata: {name: Ua}
resources:
  server:
    type: Cybus::Server::Opcua
    properties: {securityPolicies: [None], securityModes: [SignAndEncrypt]}
  folder:
    type: Cybus::Node::Opcua
    properties: {parent: !ref server, nodeType: Object, browseName: Line, dataType: Double}
  speed:
    type: Cybus::Node::Opcua
    properties: {parent: !ref folder, nodeType: Variable, browseName: Speed}
  mode:
    type: Cybus::Node::Opcua
    properties: {parent: !ref folder, nodeType: Variable, browseName: Mode, dataType: Int32, initialValue: auto, historize: true}
  reset:
    type: Cybus::Node::Opcua
    properties: {parent: !ref folder, nodeType: Method, browseName: Reset}
  feed:
    type: Cybus::Endpoint
    properties:
      protocol: Mqtt
      connection: !ref server
      subscribe: {topic: a}
"#;
    let mut found = load_inline(file).expect_err("invalid");
    found.sort();
    assert_eq!(
        found,
        [
            "resources.feed.properties.connection: `cell::server` is a Cybus::Server::Opcua; expected a Cybus::Connection (line 23, column 19)",
            "resources.folder.properties.dataType: only a `Variable` has this; an `Object` is a folder (line 9, column 85)",
            "resources.mode.properties.initialValue: \"auto\" is not a value of type Int32 (line 15, column 108)",
            "resources.reset.properties.nodeType: `Method` nodes are not supported: the server offers folders (`Object`) and `Variable`s (line 18, column 49)",
            "resources.server.properties.securityModes: no endpoint results: securityPolicy None goes only with securityMode None, every other policy with Sign or SignAndEncrypt (line 6, column 59)",
            "resources.speed.properties.dataType: a `Variable` needs its dataType, e.g. `Double` (line 12, column 17)",
            "warning: resources.mode.properties.historize: ignored: Ironbridge does not implement `historize` (the server keeps no history; clients read and subscribe to current values) (line 15, column 125)",
        ]
    );
}

#[test]
fn http_connections_and_endpoints_are_checked_at_validation() {
    let file = r#"
metadata: {name: Rest}
resources:
  api:
    type: Cybus::Connection
    properties:
      protocol: Http
      connection:
        scheme: http
        host: machine
        prefix: api
        caCert: not a certificate
        headers: {"Bad Header": x, X-Key: "line1\nline2"}
        oauthClientCredentials: {auth_url: u, client_id: c, client_secret: s}
  poll:
    type: Cybus::Endpoint
    properties:
      protocol: Http
      connection: !ref api
      read: {path: state, interval: 100, method: POST}
"#;
    let mut found = load_inline(file).expect_err("invalid");
    found.sort();
    assert_eq!(
        found,
        [
            "resources.api.properties.connection.caCert: is only used with scheme https; the connection is not encrypted (line 12, column 17)",
            "resources.api.properties.connection.headers.Bad Header: `Bad Header` is not a header name: use letters, digits and !#$%&'*+-.^_`|~ (line 13, column 33)",
            "resources.api.properties.connection.headers.X-Key: the value of `X-Key` may hold only visible ASCII, spaces and tabs (line 13, column 43)",
            "resources.api.properties.connection.oauthClientCredentials.auth_url: `u` is not an http:// or https:// URL of the token endpoint (line 14, column 44)",
            "resources.api.properties.connection.prefix: `api` must start with `/` (line 11, column 17)",
            "resources.poll.properties.read.interval: only a `subscribe` endpoint polls (line 20, column 37)",
            "resources.poll.properties.read.method: only a `write` endpoint sends with a method; `subscribe` and `read` use GET (line 20, column 50)",
            "resources.poll.properties.read.path: `state` must start with `/` (line 20, column 20)",
        ]
    );
}

#[test]
fn mqtt_tls_material_is_checked_at_validation() {
    let file = "metadata: {name: Tls}\nresources:\n  cloud:\n    type: Cybus::Connection\n    properties:\n      protocol: Mqtt\n      connection:\n        host: h\n        scheme: mqtt\n        caCert: not a certificate\n        protocolVersion: 3\n  aws:\n    type: Cybus::Connection\n    properties:\n      protocol: Mqtt\n      connection: {host: h, scheme: mqtts, mutualAuthentication: true, clientCert: '-----BEGIN CERTIFICATE-----'}\n";
    let problems = load(file, "tls", &Map::new(), &Environment::offline()).expect_err("invalid");
    let mut found: Vec<String> = problems.iter().map(ToString::to_string).collect();
    found.sort();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with(
            "resources.aws.properties.connection.clientPrivateKey: clientCert is given"
        ),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with(
            "resources.cloud.properties.connection.caCert: is only used with scheme mqtts or wss"
        ),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with("resources.cloud.properties.connection.protocolVersion: "),
        "{found:#?}"
    );
    assert!(
        found[2].contains("4 (MQTT 3.1.1) or 5 (MQTT 5.0)"),
        "{found:#?}"
    );
}

#[test]
fn an_agent_name_must_be_usable_as_a_user_and_a_topic_level() {
    let file = r#"
metadata: {name: Cell}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      agentName: "press/7"
      connection: {host: 10.0.0.1, port: 502}
  counter:
    type: Cybus::Mapping
    properties:
      agentName: "press+"
      mappings:
        - subscribe: {topic: a}
          publish: {topic: b}
"#;
    let problems = load_inline(file).expect_err("invalid agent names");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("resources.plc.properties.agentName: agent name \"press/7\"")
            && problems[1].starts_with("resources.counter.properties.agentName")
            && problems.iter().all(|p| p.contains("letters, digits")),
        "{problems:?}"
    );
}

/// Connectware types a mapping's `endpoint` as a string: a `!ref`, the bare name of a resource of
/// the service, or `service::resource` all name it. Resource ids may contain dots.
#[test]
fn a_mapping_names_its_endpoint_by_ref_by_name_or_service_and_name() {
    let file = r#"
metadata: {name: Cell}
resources:
  plc:
    type: Cybus::Connection
    properties:
      protocol: Modbus
      connection: {host: 10.0.0.1, port: 502}
  1.1_Temperature:
    type: Cybus::Endpoint
    properties:
      protocol: Modbus
      connection: !ref plc
      subscribe: {fc: 3, address: 0}
  byName:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {endpoint: 1.1_Temperature}
          publish: {topic: a}
        - subscribe: [{endpoint: "cell::1.1_Temperature"}, {endpoint: !ref 1.1_Temperature}]
          publish: {topic: b}
"#;
    let service = load_inline(file).unwrap_or_else(|problems| panic!("{problems:?}"));
    let mapping = &service.resources["byName"];
    assert!(mapping.depends_on.contains("1.1_Temperature"));
    let order = &service.start_order;
    let position = |id: &str| order.iter().position(|r| r == id);
    assert!(
        position("1.1_Temperature") < position("byName"),
        "{order:?}"
    );
}

#[test]
fn a_mapping_source_of_the_wrong_shape_is_named_without_serde_internals() {
    let file = r#"
metadata: {name: Cell}
resources:
  wrongName:
    type: Cybus::Mapping
    properties:
      mappings:
        - subscribe: {endpoint: noSuchEndpoint}
          publish: {topic: a}
        - subscribe: 42
          publish: {topic: b}
"#;
    let problems = load_inline(file).expect_err("two problems");
    assert!(
        problems.iter().all(|p| !p.contains("untagged")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("mappings[0].subscribe.endpoint")
                && p.contains("`noSuchEndpoint` is not a resource of this service")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("mappings[1].subscribe")
            && p.contains("a mapping (`endpoint: !ref ...` or `topic: ...`) or a list of them")),
        "{problems:?}"
    );
}
