//! The REST API (`/api`, described at `/api/openapi.json`): one router per resource merged here, token checks and the
//! permission check for every protected route in one middleware.

mod accounts;
pub mod data;
pub mod discover;
pub mod dto;
pub mod error;
mod openapi;
mod services;
mod system;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Json, Router};
use commissioning::model::{AccessContext, AccessOperation};
use serde::de::DeserializeOwned;

use admin::Admin;
use admin::access::allows;
use admin::accounts::Caller;
use error::{ApiError, ApiResult};

/// Health of parts the admin API does not own (the broker, connections), supplied by the
/// gateway.
pub type HealthProbe = Arc<dyn Fn() -> Vec<HealthPart> + Send + Sync>;

/// One part in `/api/system/health`.
pub struct HealthPart {
    pub name: String,
    /// `Some(false)` makes the gateway unhealthy (503); `None` is information only (a machine
    /// being offline is not the gateway's ill health).
    pub ok: Option<bool>,
    /// Extra fields shown with the part's `status`.
    pub detail: serde_json::Map<String, serde_json::Value>,
    /// Fields that name things (connections, a broker's address and user): shown only to
    /// callers with a valid token, since the health route is open to anyone.
    pub names: serde_json::Map<String, serde_json::Value>,
}

impl HealthPart {
    pub fn up(name: &str, ok: bool) -> HealthPart {
        HealthPart {
            name: name.into(),
            ok: Some(ok),
            detail: serde_json::Map::new(),
            names: serde_json::Map::new(),
        }
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub admin: Arc<Admin>,
    pub health: HealthProbe,
}

/// The API under `/api` plus `/api/openapi.json`. Unknown `/api/...` paths get a JSON 404.
pub fn router(admin: Arc<Admin>, health: HealthProbe) -> Router {
    build(admin, health, None)
}

/// [`router`] with `/api/discover/...`, which browses devices through `discoverer`.
pub fn router_with_discovery(
    admin: Arc<Admin>,
    health: HealthProbe,
    discoverer: Arc<dyn discover::Discoverer>,
) -> Router {
    build(admin, health, Some(discoverer))
}

fn build(
    admin: Arc<Admin>,
    health: HealthProbe,
    discoverer: Option<Arc<dyn discover::Discoverer>>,
) -> Router {
    let max_body = admin.config.max_body_bytes;
    let state = ApiState { admin, health };
    let mut protected = Router::new()
        .merge(accounts::protected_routes())
        .merge(services::routes())
        .merge(system::protected_routes());
    if let Some(discoverer) = discoverer {
        protected = protected.merge(discover::routes(discoverer));
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_permission,
    ));
    let self_service = accounts::self_service_routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .merge(self_service)
        .merge(accounts::public_routes())
        .merge(system::public_routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The bearer token from `Authorization: Bearer ...` or `?apiToken=...`.
fn token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The scheme is case-insensitive (RFC 7235 section 2.1): `bearer` and `BEARER` work too.
        let (scheme, credentials) = value.trim_start().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credentials.trim().to_string());
    }
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "apiToken").then(|| value.to_string())
    })
}

/// Whether the request carries a valid token; for open routes that show more to logged-in users.
fn is_logged_in(state: &ApiState, parts: &Parts) -> bool {
    authenticate(state, parts).is_ok()
}

fn authenticate(state: &ApiState, parts: &Parts) -> ApiResult<Caller> {
    authenticate_parts(&state.admin, parts)
}

fn authenticate_parts(admin: &Admin, parts: &Parts) -> ApiResult<Caller> {
    let token = token(parts).ok_or_else(|| {
        ApiError::from(admin::AdminError::Unauthenticated("send a token as `Authorization: Bearer <token>` or `?apiToken=`; get one from POST /api/login".into()))
    })?;
    Ok(admin.caller(&token)?)
}

/// Token only: for what every logged-in user may do to themselves.
async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match authenticate(&state, &parts) {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

/// Token and an http-context permission covering the path: GET needs `read`, anything else
/// `write`.
async fn require_permission(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match authenticate(&state, &parts) {
        Ok(caller) => caller,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let operation = match parts.method {
        Method::GET | Method::HEAD => AccessOperation::Read,
        _ => AccessOperation::Write,
    };
    let path = parts.uri.path().trim_end_matches('/');
    if !allows(&caller.permissions, AccessContext::Http, operation, path) {
        let verb = if operation == AccessOperation::Read {
            "read"
        } else {
            "write"
        };
        return axum::response::IntoResponse::into_response(ApiError::from(
            admin::AdminError::Forbidden(format!(
                "user {:?} has no http {verb} permission on {path}",
                caller.name
            )),
        ));
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The caller a middleware authenticated.
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| ApiError::from(admin::AdminError::Unauthenticated("no token".into())))
    }
}

/// The client's address when the server recorded it (for login throttling).
pub struct ClientAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// JSON body whose problems answer in our error format (400, 413, 415).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}
