//! `protocol: Opcua`: the client connection's properties and an endpoint's node.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::connectware::{OPCUA_CONNECTION, OPCUA_ENDPOINT, OPCUA_OPTIONS};
use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{OpcuaAddress, OpcuaConnection, OpcuaNodeType};
use crate::opcua_address::{check_node_id, parse_browse_path};
use crate::resolve::position_of;
use crate::typed::typed;

pub(super) fn connection(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<OpcuaConnection> {
    OPCUA_CONNECTION.take_ignored(&mut properties, path, positions, diagnostics);
    if let Some(options) = properties.get_mut("options") {
        OPCUA_OPTIONS.take_ignored(options, &join(path, "options"), positions, diagnostics);
    }
    typed(properties, path, positions, diagnostics)
}

/// A node given by exactly one of `nodeId` or `browsePath`, each in OPC UA's text syntax.
pub(super) fn address(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<OpcuaAddress> {
    OPCUA_ENDPOINT.take_ignored(&mut properties, path, positions, diagnostics);
    let a: OpcuaAddress = typed(properties, path, positions, diagnostics)?;
    if a.node_id.is_some() == a.browse_path.is_some() {
        diagnostics.push(Diagnostic::new(
            path,
            position_of(positions, path),
            "give exactly one of `nodeId` or `browsePath`",
        ));
    }
    if a.browse_path_prefix.is_some() && a.browse_path.is_none() {
        let p = join(path, "browsePathPrefix");
        diagnostics.push(Diagnostic::new(
            &p,
            position_of(positions, &p),
            "`browsePathPrefix` is put before `browsePath`; give a `browsePath` too",
        ));
    }
    if let Some(kind @ (OpcuaNodeType::Object | OpcuaNodeType::Method)) = a.node_type {
        let p = join(path, "nodeType");
        diagnostics.push(Diagnostic::new(
            &p,
            position_of(positions, &p),
            format!(
                "`{kind:?}` nodes are not supported: Ironbridge reads, writes and subscribes to variables (`nodeType: Variable`)"
            ),
        ));
    }
    let checks = [
        ("nodeId", a.node_id.as_deref().map(check_node_id)),
        (
            "browsePath",
            a.full_browse_path()
                .map(|p| parse_browse_path(&p).map(|_| ())),
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
