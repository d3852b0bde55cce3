//! `protocol: Opcua`: the client connection's properties and an endpoint's node.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{OpcuaAddress, OpcuaConnection};
use crate::opcua_address::{check_node_id, parse_browse_path};
use crate::resolve::position_of;
use crate::typed::typed;

pub(super) fn connection(
    properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<OpcuaConnection> {
    typed(properties, path, positions, diagnostics)
}

/// A node given by exactly one of `nodeId` or `browsePath`, each in OPC UA's text syntax.
pub(super) fn address(
    properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<OpcuaAddress> {
    let a: OpcuaAddress = typed(properties, path, positions, diagnostics)?;
    if a.node_id.is_some() == a.browse_path.is_some() {
        diagnostics.push(Diagnostic::new(
            path,
            position_of(positions, path),
            "give exactly one of `nodeId` or `browsePath`",
        ));
    }
    let checks = [
        ("nodeId", a.node_id.as_deref().map(check_node_id)),
        (
            "browsePath",
            a.browse_path
                .as_deref()
                .map(|p| parse_browse_path(p).map(|_| ())),
        ),
    ];
    for (key, outcome) in checks {
        if let Some(Err(message)) = outcome {
            let p = join(path, key);
            diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
        }
    }
    Some(a)
}
