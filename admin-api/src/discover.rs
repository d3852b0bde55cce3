//! `POST /api/discover/opcua`: browse an OPC UA server and answer the commissioning file for
//! it and the variables found, so a user interface can offer what `ironbridge discover opcua`
//! does. The browsing is the gateway's ([`Discoverer`]); this module checks the request and
//! maps the outcome. The caller needs http write permission on the path, like any POST: it
//! makes the gateway connect to a host of the caller's choosing.

use std::sync::Arc;

use admin::services::BoxFuture;
use axum::http::StatusCode;
use axum::{Extension, Json, Router};
use commissioning::model::{MessageSecurityMode, SecurityPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{ApiJson, ApiState};

/// Deepest browse and most nodes a request may ask for: a bound on what one request costs.
pub const MAX_DEPTH: usize = 50;
pub const MAX_NODES: usize = 100_000;

/// What the gateway does for a discovery request.
pub trait Discoverer: Send + Sync + 'static {
    /// Browses the server; the error says why it could not (unreachable, refused, bad root).
    fn opcua(
        &self,
        request: OpcuaDiscoveryRequest,
    ) -> BoxFuture<'_, Result<OpcuaDiscoveryResponse, String>>;
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaDiscoveryRequest {
    /// `opc.tcp://HOST[:PORT][/PATH]`.
    pub url: String,
    /// The node to start at (default: the Objects folder), e.g. `ns=2;s=Machine`.
    pub root: Option<String>,
    /// Levels of objects below the root (default 10, at most 50).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Nodes visited at most (default 10000, at most 100000).
    #[serde(default = "default_max_nodes")]
    pub max_nodes: usize,
    /// `None` (default), `Basic256Sha256`, `Aes128_Sha256_RsaOaep` or `Aes256_Sha256_RsaPss`.
    #[serde(default = "no_policy")]
    #[schema(value_type = String)]
    pub security_policy: SecurityPolicy,
    /// `None` (default), `Sign` or `SignAndEncrypt`.
    #[serde(default = "no_mode")]
    #[schema(value_type = String)]
    pub message_security_mode: MessageSecurityMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Also map every value below this topic, e.g. `acme/berlin/assembly/line1`.
    pub uns: Option<String>,
}

fn default_depth() -> usize {
    10
}
fn default_max_nodes() -> usize {
    10_000
}
fn no_policy() -> SecurityPolicy {
    SecurityPolicy::None
}
fn no_mode() -> MessageSecurityMode {
    MessageSecurityMode::None
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpcuaDiscoveryResponse {
    /// The commissioning file: it validates and installs as it is.
    pub yaml: String,
    pub nodes: Vec<DiscoveredNode>,
    /// Nodes visited (objects and variables).
    pub visited: usize,
    /// Why the browse stopped early, when it did.
    pub truncated: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredNode {
    /// Browse names from the root.
    pub path: Vec<String>,
    pub node_id: String,
    pub data_type: String,
    pub array: bool,
    pub writable: bool,
}

pub(crate) fn routes(discoverer: Arc<dyn Discoverer>) -> Router<ApiState> {
    Router::new()
        .route("/api/discover/opcua", axum::routing::post(opcua))
        .layer(Extension(discoverer))
}

/// Browses an OPC UA server and answers a commissioning file for its variables.
#[utoipa::path(post, path = "/api/discover/opcua", tag = "discovery", request_body = OpcuaDiscoveryRequest,
    responses((status = 200, body = OpcuaDiscoveryResponse), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody, description = "the server could not be browsed: unreachable, certificate or credentials refused")),
    security(("token" = [])))]
pub async fn opcua(
    Extension(discoverer): Extension<Arc<dyn Discoverer>>,
    ApiJson(request): ApiJson<OpcuaDiscoveryRequest>,
) -> ApiResult<Json<OpcuaDiscoveryResponse>> {
    if !request.url.starts_with("opc.tcp://") {
        return Err(ApiError::bad_request(format!(
            "`{}` is not an opc.tcp:// URL",
            request.url
        )));
    }
    if request.depth > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "depth {} is above {MAX_DEPTH}",
            request.depth
        )));
    }
    if request.max_nodes == 0 || request.max_nodes > MAX_NODES {
        return Err(ApiError::bad_request(format!(
            "maxNodes must be 1-{MAX_NODES}, not {}",
            request.max_nodes
        )));
    }
    discoverer
        .opcua(request)
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "discovery_failed", e))
}
