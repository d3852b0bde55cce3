//! `/api/system/info`, `/api/system/health`, `/api/permissions` and the OpenAPI document.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value as Json_};

use crate::ApiState;
use crate::dto::{HealthResponse, InfoResponse};
use admin::services::ServiceState;

pub fn public_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/system/health", get(health))
        .route(
            "/api/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
}

pub fn protected_routes() -> Router<ApiState> {
    Router::new().route("/api/system/info", get(info))
}

/// Name, version and uptime.
#[utoipa::path(get, path = "/api/system/info", tag = "system", responses((status = 200, body = InfoResponse)), security(("token" = [])))]
pub async fn info(State(state): State<ApiState>) -> Json<InfoResponse> {
    Json(InfoResponse {
        name: "Ironbridge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.admin.uptime_secs(),
    })
}

/// Health of each part; 503 when any is not ok. Open without a token, for load balancers and
/// orchestrators' probes: it then shows states and counts only. With a token it also names
/// what is down (connections, failed services, the external broker).
#[utoipa::path(get, path = "/api/system/health", tag = "system", responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn health(
    State(state): State<ApiState>,
    request: Parts,
) -> (StatusCode, Json<HealthResponse>) {
    let logged_in = crate::is_logged_in(&state, &request);
    let mut parts = Map::new();
    let mut healthy = true;
    for mut part in (state.health)() {
        healthy &= part.ok.unwrap_or(true);
        if logged_in {
            part.detail.append(&mut part.names);
        }
        let value = match (part.ok, part.detail.is_empty()) {
            (Some(ok), true) => Json_::String(if ok { "ok" } else { "down" }.into()),
            (ok, _) => {
                let mut detail = part.detail;
                if let Some(ok) = ok {
                    detail.insert("status".into(), (if ok { "ok" } else { "down" }).into());
                }
                Json_::Object(detail)
            }
        };
        parts.insert(part.name, value);
    }
    let database = state.admin.database_ok().await;
    healthy &= database;
    parts.insert(
        "database".into(),
        Json_::String(if database { "ok" } else { "down" }.into()),
    );
    let services = state.admin.service_states();
    let failed: Vec<String> = services
        .iter()
        .filter(|(_, state)| *state == ServiceState::Failed)
        .map(|(id, _)| id.clone())
        .collect();
    let services = match logged_in {
        true => serde_json::json!({ "installed": services.len(), "failed": failed }),
        false => serde_json::json!({ "installed": services.len(), "failed": failed.len() }),
    };
    parts.insert("services".into(), services);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthResponse {
            status: if healthy { "ok" } else { "degraded" }.into(),
            parts,
        }),
    )
}
