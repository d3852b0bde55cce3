//! Discovery as the command line (`ironbridge discover opcua`) and the REST API
//! (`POST /api/discover/opcua`) ask for it: a server URL and options in, a commissioning file and
//! the variables found out. The browsing is the protocol mapper's, the file is written by
//! `commissioning::discovery`.

use std::path::{Path, PathBuf};

use admin::services::BoxFuture;
use admin_api::discover::{
    DiscoveredNode, Discoverer, OpcuaDiscoveryRequest, OpcuaDiscoveryResponse,
};

use commissioning::discovery::{FoundVariable, OpcuaServer, opcua_file};
use commissioning::model::{MessageSecurityMode, OpcuaConnection, OpcuaOptions, SecurityPolicy};
use protocol_mapper::opcua::discover::{self, Options};

/// What to browse and how to reach it.
#[derive(Debug, Clone)]
pub struct OpcuaRequest {
    /// `opc.tcp://host[:port][/path]`.
    pub url: String,
    pub root: Option<String>,
    pub depth: usize,
    pub max_nodes: usize,
    pub security_policy: SecurityPolicy,
    pub security_mode: MessageSecurityMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `enterprise/site/area/line`: also map every value below this topic.
    pub uns: Option<String>,
}

pub struct Discovered {
    /// The commissioning file, ready for `ironbridge validate` and installing.
    pub yaml: String,
    pub variables: Vec<FoundVariable>,
    pub visited: usize,
    pub truncated: Option<String>,
}

/// Browses the server at `request.url`; the client certificate (for message security) is kept
/// in `pki_dir`. `progress(visited, variables)` follows the browse.
pub async fn opcua(
    request: &OpcuaRequest,
    pki_dir: PathBuf,
    progress: impl FnMut(usize, usize) + Send,
) -> Result<Discovered, String> {
    let (host, port, resource_path) = parse_url(&request.url)?;
    let secure = request.security_policy != SecurityPolicy::None;
    if secure != (request.security_mode != MessageSecurityMode::None) {
        return Err(
            "give a security policy and a security mode together (e.g. Basic256Sha256 with SignAndEncrypt), or neither".into(),
        );
    }
    let connection = OpcuaConnection {
        host: host.clone(),
        port,
        resource_path: resource_path.clone(),
        username: request.username.clone(),
        password: request.password.clone(),
        options: Some(OpcuaOptions {
            security_policy: Some(request.security_policy),
            message_security_mode: Some(request.security_mode),
            connection_strategy: None,
        }),
        client_certificate: None,
        client_private_key: None,
        trusted_server_certificates: Vec::new(),
        connection_strategy: None,
    };
    let options = Options {
        connection,
        root: request.root.clone(),
        max_depth: request.depth,
        max_nodes: request.max_nodes,
    };
    let found = discover::discover(&options, pki_dir, progress).await?;
    let server = OpcuaServer {
        host,
        port,
        resource_path,
        security: secure.then(|| {
            (
                name_of(&request.security_policy),
                name_of(&request.security_mode),
            )
        }),
        username: request.username.clone(),
    };
    Ok(Discovered {
        yaml: opcua_file(&server, &found.variables, request.uns.as_deref()),
        variables: found.variables,
        visited: found.visited,
        truncated: found.truncated,
    })
}

/// The REST API's discovery, with the client certificate kept in the data directory so a
/// server that checks client certificates can be told to trust it once.
pub struct GatewayDiscovery {
    pki_dir: PathBuf,
}

impl GatewayDiscovery {
    pub fn new(data_dir: &Path) -> GatewayDiscovery {
        GatewayDiscovery {
            pki_dir: data_dir.join("discovery").join("opcua-pki"),
        }
    }
}

impl Discoverer for GatewayDiscovery {
    fn opcua(
        &self,
        request: OpcuaDiscoveryRequest,
    ) -> BoxFuture<'_, Result<OpcuaDiscoveryResponse, String>> {
        Box::pin(async move {
            let request = OpcuaRequest {
                url: request.url,
                root: request.root,
                depth: request.depth,
                max_nodes: request.max_nodes,
                security_policy: request.security_policy,
                security_mode: request.message_security_mode,
                username: request.username,
                password: request.password,
                uns: request.uns,
            };
            let found = opcua(&request, self.pki_dir.clone(), |_, _| {}).await?;
            Ok(OpcuaDiscoveryResponse {
                yaml: found.yaml,
                nodes: found
                    .variables
                    .into_iter()
                    .map(|v| DiscoveredNode {
                        path: v.path,
                        node_id: v.node_id,
                        data_type: v.data_type,
                        array: v.array,
                        writable: v.writable,
                    })
                    .collect(),
                visited: found.visited,
                truncated: found.truncated,
            })
        })
    }
}

/// The name a commissioning file uses for a setting (its serde name).
fn name_of(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Host, port (4840 unless given) and resource path of an `opc.tcp://` URL.
fn parse_url(text: &str) -> Result<(String, u16, Option<String>), String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("`{text}` is not a URL ({e}); write opc.tcp://HOST:PORT"))?;
    if url.scheme() != "opc.tcp" {
        return Err(format!(
            "`{text}` is not an opc.tcp:// URL; OPC UA servers are reached at opc.tcp://HOST:PORT"
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{text}` names no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let path = url.path().trim_end_matches('/');
    Ok((
        host,
        url.port().unwrap_or(4840),
        (!path.is_empty()).then(|| path.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_path() {
        assert_eq!(
            parse_url("opc.tcp://10.0.0.5:4841/cnc"),
            Ok(("10.0.0.5".into(), 4841, Some("/cnc".into())))
        );
        assert_eq!(parse_url("opc.tcp://plc"), Ok(("plc".into(), 4840, None)));
        assert!(
            parse_url("http://plc")
                .expect_err("not opc.tcp")
                .contains("opc.tcp://")
        );
        assert!(parse_url("plc:4840").is_err());
        assert_eq!(name_of(&SecurityPolicy::Basic256Sha256), "Basic256Sha256");
        assert_eq!(
            name_of(&MessageSecurityMode::SignAndEncrypt),
            "SignAndEncrypt"
        );
    }
}
