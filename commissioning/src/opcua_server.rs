//! Checks of `Cybus::Server::Opcua` and `Cybus::Node::Opcua` beyond their types, reported where
//! they are written.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{OpcuaNode, OpcuaServer, OpcuaServerDataType, OpcuaServerNodeType};
use crate::resolve::position_of;

pub(crate) fn check_server(
    server: &OpcuaServer,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if server.port == 0 {
        problem("port", "expected 1-65535".into());
    }
    if !server.resource_path.is_empty() && !server.resource_path.starts_with('/') {
        problem(
            "resourcePath",
            format!("`{}` must start with `/`", server.resource_path),
        );
    }
    if !server.application_uri.contains(':') {
        problem(
            "applicationUri",
            format!(
                "`{}` is not a URI, e.g. urn:acme:gateway",
                server.application_uri
            ),
        );
    }
    if server.hostname.trim().is_empty() {
        problem(
            "hostname",
            "give the name clients reach the gateway by".into(),
        );
    }
    if server.endpoints().is_empty() {
        problem(
            "securityModes",
            "no endpoint results: securityPolicy None goes only with securityMode None, every other policy with Sign or SignAndEncrypt".into(),
        );
    }
}

pub(crate) fn check_node(
    node: &OpcuaNode,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if node.browse_name.trim().is_empty() {
        problem("browseName", "must not be empty".into());
    }
    if let Some(id) = &node.node_id
        && let Err(e) = crate::opcua_address::check_node_id(id)
    {
        problem("nodeId", e);
    }
    match node.node_type {
        OpcuaServerNodeType::Method => problem(
            "nodeType",
            "`Method` nodes are not supported: the server offers folders (`Object`) and `Variable`s".into(),
        ),
        OpcuaServerNodeType::Object => {
            for (field, given) in [
                ("dataType", node.data_type.is_some()),
                ("operation", node.operation.is_some()),
                ("initialValue", node.initial_value.is_some()),
            ] {
                if given {
                    problem(field, "only a `Variable` has this; an `Object` is a folder".into());
                }
            }
        }
        OpcuaServerNodeType::Variable => match node.data_type {
            None => problem(
                "dataType",
                "a `Variable` needs its dataType, e.g. `Double`".into(),
            ),
            Some(data_type) => {
                if let Some(value) = &node.initial_value
                    && let Err(e) = fits(value, data_type, node.value_rank == 1)
                {
                    problem("initialValue", e);
                }
            }
        },
    }
    if !matches!(node.value_rank, -1 | 1) {
        problem(
            "valueRank",
            format!(
                "expected -1 (a scalar) or 1 (an array), got {}",
                node.value_rank
            ),
        );
    }
}

/// Whether a JSON value can be a value of `data_type` (the range is checked when it is set).
fn fits(value: &Json, data_type: OpcuaServerDataType, array: bool) -> Result<(), String> {
    if array {
        let Json::Array(items) = value else {
            return Err(format!("expected an array of {data_type:?} (valueRank 1)"));
        };
        return items
            .iter()
            .try_for_each(|item| fits(item, data_type, false));
    }
    let fine = match data_type {
        OpcuaServerDataType::Boolean => value.is_boolean(),
        OpcuaServerDataType::Float | OpcuaServerDataType::Double => value.is_number(),
        OpcuaServerDataType::String
        | OpcuaServerDataType::DateTime
        | OpcuaServerDataType::ByteString => value.is_string(),
        _ => value.is_i64() || value.is_u64(),
    };
    match fine {
        true => Ok(()),
        false => Err(format!("{value} is not a value of type {data_type:?}")),
    }
}
