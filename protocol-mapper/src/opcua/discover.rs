//! Discovery: browse an OPC UA server's address space and list its variables with their data
//! types, for `commissioning::discovery` to write a commissioning file from. Breadth first from
//! the root (the Objects folder unless given) along hierarchical references, bounded in depth
//! and in nodes, following continuation points, skipping methods and, below the Objects folder,
//! the server's own objects (namespace 0). The session is opened the way a connection opens it (same certificates,
//! security and identity), so what discovery reaches, the generated file reaches too.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use commissioning::discovery::FoundVariable;
use commissioning::model::OpcuaConnection;
use opcua::client::Session;
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, DataTypeId,
    NodeClass, NodeClassMask, NodeId, ObjectId, ReadValueId, ReferenceDescription, ReferenceTypeId,
    TimestampsToReturn, Variant,
};

use super::connection::ToolSession;

/// Nodes browsed per request, and variables whose attributes are read per request: small
/// enough for any server's operation limits.
const BATCH: usize = 50;
/// The AccessLevel bit that says a client may write the value.
const CURRENT_WRITE: u8 = 0x02;

pub struct Options {
    /// The server and how to reach it: host, port, resourcePath, credentials, security.
    pub connection: OpcuaConnection,
    /// Where browsing starts (a node id); the Objects folder when `None`.
    pub root: Option<String>,
    /// Levels below the root that are browsed.
    pub max_depth: usize,
    /// Nodes (objects and variables) visited at most; more is reported as `truncated`.
    pub max_nodes: usize,
}

#[derive(Debug)]
pub struct Discovery {
    pub variables: Vec<FoundVariable>,
    /// Nodes visited (objects and variables).
    pub visited: usize,
    /// Why the browse stopped early, when it did.
    pub truncated: Option<String>,
}

/// Browses the server. `progress(visited, variables)` is called after every browse request.
/// The error says what to change: the server cannot be reached, refuses the certificate or the
/// credentials, or the root is not a node id.
pub async fn discover(
    options: &Options,
    pki_dir: PathBuf,
    mut progress: impl FnMut(usize, usize) + Send,
) -> Result<Discovery, String> {
    let root = match &options.root {
        Some(text) => text
            .parse::<NodeId>()
            .map_err(|_| format!("`{text}` is not a node id, e.g. `ns=2;s=Machine` or `i=85`"))?,
        None => ObjectId::ObjectsFolder.into(),
    };
    let tool = ToolSession::open(&options.connection, pki_dir).await?;
    let outcome = browse_all(tool.session(), root, options, &mut progress).await;
    tool.close().await;
    outcome
}

/// A node waiting to be browsed: its id, the browse names leading to it, its depth.
struct Pending {
    node: NodeId,
    path: Vec<String>,
    depth: usize,
}

/// A variable found, before its attributes are read.
struct Found {
    node: NodeId,
    path: Vec<String>,
}

async fn browse_all(
    session: &Session,
    root: NodeId,
    options: &Options,
    progress: &mut (impl FnMut(usize, usize) + Send),
) -> Result<Discovery, String> {
    // Below the Objects folder, namespace 0 holds the server's own objects (Server, Aliases,
    // ...), not the machine's; a root the user names is browsed whole.
    let skip_standard = root == ObjectId::ObjectsFolder;
    let mut seen: HashSet<NodeId> = HashSet::from([root.clone()]);
    let mut queue = VecDeque::from([Pending {
        node: root,
        path: Vec::new(),
        depth: 0,
    }]);
    let mut found: Vec<Found> = Vec::new();
    let mut truncated = None;
    'browsing: while !queue.is_empty() {
        let batch: Vec<Pending> = queue.drain(..queue.len().min(BATCH)).collect();
        let references = browse(session, &batch).await?;
        for (parent, children) in batch.iter().zip(references) {
            for child in children {
                if child.node_id.server_index != 0 {
                    continue; // on another server
                }
                let node = child.node_id.node_id;
                if (skip_standard && node.namespace == 0) || !seen.insert(node.clone()) {
                    continue;
                }
                if seen.len() > options.max_nodes {
                    truncated = Some(format!(
                        "stopped after {} nodes (--max-nodes, `maxNodes` in the API); start at a narrower root",
                        options.max_nodes
                    ));
                    break 'browsing;
                }
                let mut path = parent.path.clone();
                path.push(child.browse_name.name.to_string());
                match child.node_class {
                    NodeClass::Variable => found.push(Found { node, path }),
                    NodeClass::Object if parent.depth < options.max_depth => {
                        queue.push_back(Pending {
                            node,
                            path,
                            depth: parent.depth + 1,
                        });
                    }
                    NodeClass::Object => {
                        truncated.get_or_insert_with(|| {
                            format!(
                                "objects deeper than {} levels were not browsed (--depth, `depth` in the API)",
                                options.max_depth
                            )
                        });
                    }
                    _ => {}
                }
            }
        }
        progress(seen.len(), found.len());
    }
    let variables = describe(session, found).await?;
    Ok(Discovery {
        visited: seen.len(),
        variables,
        truncated,
    })
}

/// The objects and variables below each pending node, every continuation point followed.
async fn browse(
    session: &Session,
    batch: &[Pending],
) -> Result<Vec<Vec<ReferenceDescription>>, String> {
    let descriptions: Vec<BrowseDescription> = batch
        .iter()
        .map(|pending| BrowseDescription {
            node_id: pending.node.clone(),
            browse_direction: BrowseDirection::Forward,
            reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
            include_subtypes: true,
            node_class_mask: (NodeClassMask::OBJECT | NodeClassMask::VARIABLE).bits(),
            result_mask: BrowseResultMask::All as u32,
        })
        .collect();
    let results = session
        .browse(&descriptions, 0, None)
        .await
        .map_err(|e| format!("browsing failed: {e}"))?;
    let mut all = Vec::with_capacity(batch.len());
    for result in results {
        let mut references = result.references.unwrap_or_default();
        let mut continuation: ByteString = result.continuation_point;
        while !continuation.is_null() {
            let mut next = session
                .browse_next(false, std::slice::from_ref(&continuation))
                .await
                .map_err(|e| format!("browsing on (BrowseNext) failed: {e}"))?;
            let Some(more) = next.pop() else { break };
            references.extend(more.references.unwrap_or_default());
            continuation = more.continuation_point;
        }
        all.push(references);
    }
    Ok(all)
}

/// Reads each variable's DataType, ValueRank, AccessLevel and value.
async fn describe(session: &Session, found: Vec<Found>) -> Result<Vec<FoundVariable>, String> {
    // The value too: servers that declare an array's ValueRank as scalar are common, and
    // the value says what it is.
    let attributes = [
        AttributeId::DataType,
        AttributeId::ValueRank,
        AttributeId::AccessLevel,
        AttributeId::Value,
    ];
    let mut variables = Vec::with_capacity(found.len());
    for chunk in found.chunks(BATCH) {
        let reads: Vec<ReadValueId> = chunk
            .iter()
            .flat_map(|f| {
                attributes.map(|attribute| ReadValueId {
                    node_id: f.node.clone(),
                    attribute_id: attribute as u32,
                    ..Default::default()
                })
            })
            .collect();
        let values = session
            .read(&reads, TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| format!("reading the variables' data types failed: {e}"))?;
        for (f, values) in chunk.iter().zip(values.chunks(attributes.len())) {
            let value = |i: usize| values.get(i).and_then(|v| v.value.as_ref());
            let data_type = match value(0) {
                Some(Variant::NodeId(id)) => type_name(id),
                _ => "unknown".into(),
            };
            let array = matches!(value(1), Some(Variant::Int32(rank)) if *rank >= 0)
                || matches!(value(3), Some(Variant::Array(_)));
            let writable =
                matches!(value(2), Some(Variant::Byte(level)) if level & CURRENT_WRITE != 0);
            variables.push(FoundVariable {
                path: f.path.clone(),
                node_id: f.node.to_string(),
                data_type,
                array,
                writable,
            });
        }
    }
    Ok(variables)
}

/// A data type's name when it is one of the standard ones (`Double`, `Int32`, `Duration`),
/// else its node id.
fn type_name(id: &NodeId) -> String {
    let standard = match (&id.namespace, &id.identifier) {
        (0, opcua::types::Identifier::Numeric(n)) => DataTypeId::try_from(*n).ok(),
        _ => None,
    };
    standard.map_or_else(|| id.to_string(), |t| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_types_have_names() {
        assert_eq!(type_name(&DataTypeId::Double.into()), "Double");
        assert_eq!(type_name(&DataTypeId::Duration.into()), "Duration");
        assert_eq!(type_name(&NodeId::new(3, 3001)), "ns=3;i=3001");
    }
}
