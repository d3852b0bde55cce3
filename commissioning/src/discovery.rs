//! Commissioning files written from what a device offers: `ironbridge discover opcua` and
//! `POST /api/discover/opcua` browse a server and hand the variables found here, which writes
//! a file that validates and installs as it is. The connection is parameterised (host, port,
//! credentials), each variable is a `subscribe` endpoint by `nodeId` with its browse path as
//! topic, and its data type is a comment; optionally a mapping republishes every value under a
//! UNS-style topic tree.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Where the server is and how to reach it, as the file will say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpcuaServer {
    pub host: String,
    pub port: u16,
    pub resource_path: Option<String>,
    /// `securityPolicy` and `messageSecurityMode` as Connectware names them (`Basic256Sha256`,
    /// `SignAndEncrypt`); `None` for no message security.
    pub security: Option<(String, String)>,
    /// A user name makes `username` and `password` parameters (the password has no default
    /// worth keeping: it is given at install).
    pub username: Option<String>,
}

/// One variable found on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVariable {
    /// Browse names from the browse root, without namespace indexes.
    pub path: Vec<String>,
    /// The node id in its standard text form (`ns=2;s=Machine.Speed`).
    pub node_id: String,
    /// The data type's name (`Double`) or node id when it is not a built-in type.
    pub data_type: String,
    pub array: bool,
    pub writable: bool,
}

/// The commissioning file for `variables` on `server`. With `uns` (`enterprise/site/area/line`)
/// a mapping also republishes each value at `<uns>/<browse path>`.
pub fn opcua_file(server: &OpcuaServer, variables: &[FoundVariable], uns: Option<&str>) -> String {
    let mut yaml = String::new();
    let _ = writeln!(
        yaml,
        "# Written by `ironbridge discover opcua` from opc.tcp://{}:{}: {} variables.",
        server.host,
        server.port,
        variables.len()
    );
    yaml.push_str("# Each endpoint subscribes to one variable; the comment gives its data type.\n");
    let _ = writeln!(
        yaml,
        "description: {}",
        quoted(&format!("OPC UA server {}:{}", server.host, server.port))
    );
    let _ = writeln!(
        yaml,
        "\nmetadata:\n  name: {}\n",
        quoted(&format!("OPC UA {}", server.host))
    );
    yaml.push_str("parameters:\n");
    let _ = writeln!(
        yaml,
        "  opcuaHost:\n    type: string\n    default: {}",
        quoted(&server.host)
    );
    let _ = writeln!(
        yaml,
        "  opcuaPort:\n    type: integer\n    default: {}",
        server.port
    );
    if let Some(user) = &server.username {
        let _ = writeln!(
            yaml,
            "  opcuaUsername:\n    type: string\n    default: {}",
            quoted(user)
        );
        yaml.push_str("  opcuaPassword:\n    type: string\n    description: given at install\n    default: ''\n");
    }
    yaml.push_str("\nresources:\n  opcuaConnection:\n    type: Cybus::Connection\n    properties:\n      protocol: Opcua\n      connection:\n        host: !ref opcuaHost\n        port: !ref opcuaPort\n");
    if let Some(path) = &server.resource_path {
        let _ = writeln!(yaml, "        resourcePath: {}", quoted(path));
    }
    if server.username.is_some() {
        yaml.push_str(
            "        username: !ref opcuaUsername\n        password: !ref opcuaPassword\n",
        );
    }
    if let Some((policy, mode)) = &server.security {
        let _ = writeln!(
            yaml,
            "        options:\n          securityPolicy: {policy}\n          messageSecurityMode: {mode}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut topics = Vec::with_capacity(variables.len());
    for variable in variables {
        let id = unique_id(&mut ids, &resource_id(&variable.path));
        let topic = topic_of(&variable.path);
        let mut kind = variable.data_type.clone();
        if variable.array {
            kind.push_str("[]");
        }
        if variable.writable {
            kind.push_str(", writable");
        }
        let _ = writeln!(
            yaml,
            "\n  # {} ({kind})\n  {id}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Opcua\n      connection: !ref opcuaConnection\n      topic: {}\n      subscribe:\n        nodeId: {}",
            variable.path.join("/"),
            quoted(&topic),
            quoted(&variable.node_id)
        );
        topics.push((id, topic));
    }
    if let Some(uns) = uns.map(|u| u.trim_matches('/')).filter(|u| !u.is_empty()) {
        yaml.push_str(
            "\n  unsMapping:\n    type: Cybus::Mapping\n    properties:\n      mappings:\n",
        );
        for (id, topic) in &topics {
            let _ = writeln!(
                yaml,
                "        - subscribe: {{endpoint: !ref {id}}}\n          publish: {{topic: {}}}",
                quoted(&format!("{uns}/{topic}"))
            );
        }
    }
    yaml
}

/// A YAML single-quoted scalar: nothing in it is special but the quote, which is doubled.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A browse name as one topic level: MQTT's wildcards and separators, control characters and
/// spaces become `_`; an empty name becomes `_`.
fn topic_level(name: &str) -> String {
    let level: String = name
        .chars()
        .map(|c| match c {
            '+' | '#' | '/' | '$' => '_',
            c if c.is_control() || c.is_whitespace() => '_',
            c => c,
        })
        .collect();
    if level.is_empty() { "_".into() } else { level }
}

fn topic_of(path: &[String]) -> String {
    path.iter()
        .map(|name| topic_level(name))
        .collect::<Vec<_>>()
        .join("/")
}

/// A resource id from a browse path: letters, digits and `_` (other characters become `_`),
/// levels joined by `_`.
fn resource_id(path: &[String]) -> String {
    let id: String = path
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let id = id.trim_matches('_');
    if id.is_empty() {
        "variable".into()
    } else {
        id.to_string()
    }
}

/// `id`, or `id_2`, `id_3`, ... when taken; the connection's own id is always taken.
fn unique_id(taken: &mut BTreeSet<String>, id: &str) -> String {
    let mut candidate = id.to_string();
    let mut n = 2;
    while taken.contains(&candidate) || candidate == "opcuaConnection" || candidate == "unsMapping"
    {
        candidate = format!("{id}_{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_topics_and_ids() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            topic_of(&path(&["Machine", "Spindle #1", "a/b"])),
            "Machine/Spindle__1/a_b"
        );
        assert_eq!(
            resource_id(&path(&["Machine", "Spindle #1"])),
            "Machine_Spindle__1"
        );
        assert_eq!(resource_id(&path(&["#"])), "variable");
        let mut taken = BTreeSet::new();
        assert_eq!(unique_id(&mut taken, "a"), "a");
        assert_eq!(unique_id(&mut taken, "a"), "a_2");
        assert_eq!(
            unique_id(&mut taken, "opcuaConnection"),
            "opcuaConnection_2"
        );
        assert_eq!(quoted("it's"), "'it''s'");
    }
}
