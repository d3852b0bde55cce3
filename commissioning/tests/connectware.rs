//! Files written for Connectware load unchanged: the forms its documentation and published
//! files use, each as a user would write it, and the warnings and errors the rest gets.

use commissioning::connectware::{SECTIONS, Support};
use commissioning::model::{OpcuaNodeType, ResourceKind};
use commissioning::{Diagnostic, Environment, Service, load_file};
use serde_json::{Value as Json, json};

fn load_with(file: &str, parameters: Json) -> Result<Service, Vec<Diagnostic>> {
    let parameters = parameters.as_object().cloned().unwrap_or_default();
    load_file(file, None, &parameters, &Environment::offline())
}

fn messages(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

/// The errors alone: the file's two ignored properties add their warnings to every answer.
fn errors(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect()
}

const OPCUA_MACHINE: &str = r#"
description: A machine as Connectware's examples write it
metadata:
  name: !sub 'Machine ${machineNum}'
parameters:
  machineNum:
    type: integer
    default: 7
  opcuaHost:
    type: string
    default: 10.0.0.7
resources:
  opcuaConnection:
    type: Cybus::Connection
    properties:
      protocol: Opcua
      connection:
        host: !ref opcuaHost
        port: 4840
        options:
          securityPolicy: None
          messageSecurityMode: None
        connectionStrategy:
          initialDelay: 500
          maxDelay: 5000
  1.1_DataNodes:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref opcuaConnection
      subscribe:
        nodeId: ns=2;s=Machine.Speed
        interval: 500
  stepUp:
    type: Cybus::Endpoint
    properties:
      protocol: Opcua
      connection: !ref opcuaConnection
      targetState: enabled
      subscribe:
        browsePathPrefix: 2:Machine
        browsePath: 2:StepUp
        nodeType: Variable
  toCloud:
    type: Cybus::Mapping
    properties:
      agentName: edge-1
      inputBuffering:
        enabled: true
      mappings:
        - subscribe:
            endpoint: stepUp
          publish:
            topic: plant/stepUp
"#;

#[test]
fn a_connectware_opcua_file_loads_with_warnings_for_what_has_no_effect() {
    let service = load_with(OPCUA_MACHINE, json!({})).unwrap_or_else(|d| panic!("{d:#?}"));
    // The id is derived from the substituted name, as Connectware documents it.
    assert_eq!(service.id, "machine7");
    assert_eq!(service.metadata.name, "Machine 7");
    let ResourceKind::Endpoint(node) = &service.resources["1.1_DataNodes"].kind else {
        panic!("an endpoint");
    };
    let commissioning::model::Address::Opcua(address) = &node.address else {
        panic!("an OPC UA address");
    };
    assert_eq!(
        address.sampling_interval,
        Some(500),
        "`interval` is the sampling interval"
    );
    let ResourceKind::Endpoint(step) = &service.resources["stepUp"].kind else {
        panic!("an endpoint");
    };
    let commissioning::model::Address::Opcua(address) = &step.address else {
        panic!("an OPC UA address");
    };
    assert_eq!(
        address.full_browse_path().as_deref(),
        Some("2:Machine/2:StepUp")
    );
    assert_eq!(address.node_type, Some(OpcuaNodeType::Variable));
    let ResourceKind::Connection(connection) = &service.resources["opcuaConnection"].kind else {
        panic!("a connection");
    };
    let commissioning::model::ConnectionParams::Opcua(opcua) = &connection.params else {
        panic!("OPC UA");
    };
    assert_eq!(opcua.strategy().map(|s| s.max_delay), Some(5000));
    assert_eq!(
        messages(&service.warnings),
        [
            "warning: resources.stepUp.properties.targetState: ignored: Ironbridge does not implement `targetState` (an endpoint runs while its connection is connected; disable the service or set the connection's `targetState` instead) (line 39, column 20)",
            "warning: resources.toCloud.properties.inputBuffering: ignored: Ironbridge does not implement `inputBuffering` (every mapping entry already takes its messages one at a time, in order, through a bounded queue) (line 49, column 9)",
        ]
    );
}

#[test]
fn the_name_takes_the_given_parameters() {
    let service = load_with(OPCUA_MACHINE, json!({"machineNum": 12})).expect("valid");
    assert_eq!(service.id, "machine12");
}

#[test]
fn a_required_parameter_without_a_value_is_reported_once_where_it_is_declared() {
    let file = OPCUA_MACHINE.replace("    type: integer\n    default: 7\n", "    type: integer\n");
    let problems = load_with(&file, json!({})).expect_err("invalid");
    assert_eq!(
        errors(&problems),
        [
            "parameters.machineNum: required parameter has no value and no default (line 7, column 5)"
        ]
    );
    // The same for a parameter used in a resource, through a definition.
    let file = OPCUA_MACHINE
        .replace("    default: 10.0.0.7\n", "")
        .replace("host: !ref opcuaHost", "host: !ref plcHost")
        .replace(
            "resources:\n",
            "definitions:\n  plcHost: !sub '${opcuaHost}'\nresources:\n",
        );
    let problems = load_with(&file, json!({})).expect_err("invalid");
    assert_eq!(
        errors(&problems),
        [
            "parameters.opcuaHost: required parameter has no value and no default (line 10, column 5)"
        ]
    );
}

#[test]
fn a_name_that_cannot_become_an_id_hides_no_other_problem() {
    let file = OPCUA_MACHINE
        .replace("!sub 'Machine ${machineNum}'", "'***'")
        .replace("port: 4840", "port: 48400000");
    let problems = errors(&load_with(&file, json!({})).expect_err("invalid"));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("metadata.name: service id \"\""),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(
            "resources.opcuaConnection.properties.connection.port: expected integer 0-65535"
        ),
        "{problems:#?}"
    );
}

#[test]
fn an_undocumented_property_is_an_error_that_names_the_nearest_one() {
    let file = OPCUA_MACHINE.replace("interval: 500", "intervall: 500");
    let problems = errors(&load_with(&file, json!({})).expect_err("invalid"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("unknown property `intervall`; did you mean `interval`?"),
        "{problems:#?}"
    );
}

#[test]
fn method_and_object_nodes_are_refused_with_the_reason() {
    let file = OPCUA_MACHINE.replace("nodeType: Variable", "nodeType: Method");
    let problems = errors(&load_with(&file, json!({})).expect_err("invalid"));
    assert_eq!(
        problems,
        [
            "resources.stepUp.properties.subscribe.nodeType: `Method` nodes are not supported: Ironbridge reads, writes and subscribes to variables (`nodeType: Variable`) (line 43, column 19)"
        ]
    );
}

/// The names serde accepts for a model, read from its "unknown field" message.
fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let probe = json!({"\u{1}probe": null});
    let Err(error) = serde_json::from_value::<T>(probe) else {
        panic!("the probe deserialised");
    };
    let message = error.to_string();
    // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`"
    let list = message
        .split_once("expected ")
        .map(|(_, list)| list.trim_start_matches("one of "))
        .unwrap_or_else(|| panic!("{message}"));
    list.split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|name| name.trim_matches(['`', ' ']).to_string())
        .collect()
}

#[test]
fn the_schema_table_and_the_models_agree() {
    use commissioning::model::*;
    for section in SECTIONS {
        let fields = match section.name {
            "Cybus::Mapping" => fields_of::<Mapping>(),
            "Opcua connection" => fields_of::<OpcuaConnection>(),
            "Opcua connection options" => fields_of::<OpcuaOptions>(),
            "Opcua endpoint" => {
                let mut fields = fields_of::<OpcuaAddress>();
                fields.push("interval".into()); // serde does not list aliases
                fields
            }
            "Modbus connection" => fields_of::<ModbusConnection>(),
            "Modbus endpoint" => fields_of::<ModbusAddress>(),
            "Mqtt connection" => fields_of::<MqttConnection>(),
            "Mqtt endpoint" => fields_of::<MqttAddress>(),
            "Http connection" => fields_of::<HttpConnection>(),
            "Http endpoint" => fields_of::<HttpAddress>(),
            "S7 connection" => fields_of::<S7Connection>(),
            "S7 endpoint" => fields_of::<S7Address>(),
            "Cybus::Server::Http" => fields_of::<HttpServer>(),
            "Cybus::Node::Http" => fields_of::<HttpNode>(),
            "Cybus::Server::Opcua" => fields_of::<OpcuaServer>(),
            "Cybus::Node::Opcua" => fields_of::<OpcuaNode>(),
            // The resource shapes are private; their fields are checked through files above.
            _ => continue,
        };
        for (name, support) in section.properties {
            let known = fields.iter().any(|f| f == name);
            match support {
                Support::Implemented | Support::Extension => {
                    assert!(known, "{}: `{name}` is not in the model", section.name)
                }
                Support::Ignored(_) => {
                    assert!(
                        !known,
                        "{}: `{name}` is in the model but listed as ignored",
                        section.name
                    )
                }
            }
        }
        for field in &fields {
            assert!(
                section.properties.iter().any(|(name, _)| name == field),
                "{}: the model's `{field}` is missing from the table",
                section.name
            );
        }
    }
}

#[test]
fn valid_files_have_no_warnings() {
    let file = OPCUA_MACHINE
        .replace("      targetState: enabled\n", "")
        .replace("      inputBuffering:\n        enabled: true\n", "");
    let service = load_with(&file, json!({})).expect("valid");
    assert!(service.warnings.is_empty(), "{:?}", service.warnings);
}

#[test]
fn http_nodes_are_checked_where_they_are_written() {
    let file = r#"
metadata: {name: Intake}
resources:
  server:
    type: Cybus::Server::Http
    properties: {basePath: /press, requestMaxBodySize: 600000}
  a:
    type: Cybus::Node::Http
    properties: {parent: !ref server, method: POST, route: /counter}
  b:
    type: Cybus::Node::Http
    properties: {parent: !ref server, method: POST, route: counter/}
  c:
    type: Cybus::Node::Http
    properties: {parent: !ref server, method: GET, route: /../api/users}
  d:
    type: Cybus::Node::Http
    properties: {parent: !ref a, method: DELETE, route: /x}
"#;
    let problems = errors(&load_with(file, json!({})).expect_err("invalid"));
    assert_eq!(
        problems,
        [
            "resources.server.properties.requestMaxBodySize: expected 1-512000 bytes, got 600000 (line 6, column 56)",
            "resources.b.properties.route: `counter/` must start with `/` (line 12, column 60)",
            "resources.c.properties.route: `..` in `/../api/users`: use letters, digits and `-._~` between the `/` (line 15, column 59)",
            "resources.d.properties.method: unknown value `DELETE`; expected one of `POST`, `PUT`, `GET` (line 18, column 42)",
        ]
    );
    let duplicate = file
        .replace("requestMaxBodySize: 600000", "requestMaxBodySize: 1000")
        .replace("route: counter/", "route: /counter")
        .replace("/../api/users", "/order")
        .replace(
            "parent: !ref a, method: DELETE",
            "parent: !ref server, method: PUT",
        );
    let problems = errors(&load_with(&duplicate, json!({})).expect_err("invalid"));
    assert_eq!(
        problems,
        ["resources.b: POST /data/press/counter is already served by node `a`"]
    );
}
