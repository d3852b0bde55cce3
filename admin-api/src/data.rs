//! `/data/...`: the routes that services declare with `Cybus::Server::Http` and
//! `Cybus::Node::Http`, on the same ports as the API. Who may call them is the same decision as
//! for the API: a token (or basic authentication for machines that cannot log in) and an
//! http-context permission covering the path (`data/press/#` or `/data/press/#`), `read` for GET
//! and `write` for POST and PUT. What a route does is the gateway's ([`DataNodes`]).

use std::sync::Arc;

use admin::services::BoxFuture;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use commissioning::model::{AccessContext, AccessOperation, HTTP_SERVER_MAX_BODY};

use admin::Admin;
use admin::access::allows;
use admin::accounts::Caller;

use crate::error::ApiError;

/// What the routes of HTTP nodes do; the gateway implements it over its broker.
pub trait DataNodes: Send + Sync + 'static {
    /// Handles a request for `path` (`/data/...`) that the caller may make.
    fn handle(&self, request: DataRequest) -> BoxFuture<'_, Result<DataAnswer, DataRefusal>>;
}

pub struct DataRequest {
    pub method: Method,
    pub path: String,
    /// The media type without parameters, lower-cased (`application/json`).
    pub content_type: Option<String>,
    pub body: Bytes,
}

pub enum DataAnswer {
    /// POST or PUT: the body was published.
    Published,
    /// GET: the last message on the node's topic.
    Value(Bytes),
    /// GET before any message arrived.
    NoValueYet,
}

pub enum DataRefusal {
    NoRoute,
    /// The path exists with other methods.
    MethodNotAllowed(Vec<&'static str>),
    TooLarge(usize),
    UnsupportedType(String),
    BadJson(String),
    Unavailable(String),
}

#[derive(Clone)]
struct DataState {
    admin: Arc<Admin>,
    nodes: Arc<dyn DataNodes>,
}

/// `/data` and everything below it.
pub fn router(admin: Arc<Admin>, nodes: Arc<dyn DataNodes>) -> Router {
    let state = DataState { admin, nodes };
    Router::new()
        .route("/data", axum::routing::any(serve))
        .route("/data/{*rest}", axum::routing::any(serve))
        // Nodes check their own `requestMaxBodySize`; nothing larger than the largest allowed
        // is read at all.
        .layer(axum::extract::DefaultBodyLimit::max(HTTP_SERVER_MAX_BODY))
        .with_state(state)
}

async fn serve(State(state): State<DataState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let caller = match authenticate(&state.admin, &parts).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let operation = match parts.method {
        Method::GET | Method::HEAD => AccessOperation::Read,
        _ => AccessOperation::Write,
    };
    let path = parts.uri.path().trim_end_matches('/').to_string();
    // Connectware writes these permissions without the leading `/`; both forms work.
    let permitted = [path.as_str(), path.trim_start_matches('/')]
        .iter()
        .any(|target| allows(&caller.permissions, AccessContext::Http, operation, target));
    if !permitted {
        let verb = match operation {
            AccessOperation::Read => "read",
            _ => "write",
        };
        return ApiError::from(admin::AdminError::Forbidden(format!(
            "user {:?} has no http {verb} permission on {path}",
            caller.name
        )))
        .into_response();
    }
    let body = match axum::body::to_bytes(body, HTTP_SERVER_MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return refused(DataRefusal::TooLarge(HTTP_SERVER_MAX_BODY)),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let request = DataRequest {
        method: parts.method.clone(),
        path,
        content_type,
        body,
    };
    match state.nodes.handle(request).await {
        Ok(DataAnswer::Published) => StatusCode::NO_CONTENT.into_response(),
        Ok(DataAnswer::NoValueYet) => StatusCode::NO_CONTENT.into_response(),
        Ok(DataAnswer::Value(payload)) => {
            let kind = match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
                Ok(_) => "application/json",
                Err(_) => "application/octet-stream",
            };
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
                payload,
            )
                .into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

fn refused(refusal: DataRefusal) -> Response {
    let error = match refusal {
        DataRefusal::NoRoute => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no HTTP node serves this path",
        ),
        DataRefusal::MethodNotAllowed(allowed) => {
            let message = format!("this path takes {}", allowed.join(", "));
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        DataRefusal::TooLarge(limit) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than this node's {limit} bytes (requestMaxBodySize)"),
        ),
        DataRefusal::UnsupportedType(message) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        ),
        DataRefusal::BadJson(message) => ApiError::bad_request(message),
        DataRefusal::Unavailable(message) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    };
    error.into_response()
}

/// A token, as for the API, or basic authentication: a machine posting its values may not be
/// able to log in first. Basic credentials go through the same password check and failed-login
/// throttling as a login.
async fn authenticate(admin: &Admin, parts: &Parts) -> Result<Caller, ApiError> {
    if let Some((username, password)) = basic_credentials(parts) {
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        return Ok(admin
            .check_basic_credentials(&username, &password, address)
            .await?);
    }
    crate::authenticate_parts(admin, parts)
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some((username.to_string(), password.to_string()))
}
