//! `/api/services...` and `/api/validate/service`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value as Json_};

use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody, too_large};
use crate::{ApiJson, ApiState, Authenticated};
use admin::services::{Authority, Installed, Operation, ServiceInput, StatusReport, TargetState};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/services", get(list).post(install))
        .route(
            "/api/services/{id}",
            get(details).put(reconfigure).delete(delete),
        )
        .route("/api/services/{id}/operation", post(operate))
        .route("/api/services/{id}/status", get(status))
        .route("/api/services/{id}/dependencies", get(dependencies))
        .route("/api/validate/service", post(validate))
}

fn summary(installed: &Installed, report: &StatusReport) -> ServiceSummary {
    ServiceSummary {
        id: installed.service.id.clone(),
        name: installed.service.metadata.name.clone(),
        version: installed.service.metadata.version.clone(),
        state: installed.state.as_str().into(),
        deviated: report.deviated,
        deviations: report.deviations.clone(),
        last_error: report.last_error.clone(),
        target_state: installed.record.target_state.as_str().into(),
    }
}

fn resources(report: &StatusReport) -> Vec<ResourceDto> {
    report
        .resources
        .iter()
        .map(|r| ResourceDto {
            id: r.id.clone(),
            kind: r.kind.into(),
            state: r.state.as_str().into(),
            message: r.message.clone(),
            metrics: r.metrics.clone(),
        })
        .collect()
}

/// A service as the API shows it: every secret masked (passwords in the file and parameters,
/// substituted ones in the description and errors), so reading a service never reveals them.
fn detail(state: &ApiState, installed: &Installed) -> ServiceDetail {
    let report = state.admin.report(installed);
    let secrets = installed.secrets();
    let mask = |text: &str| commissioning::secrets::mask(text, &secrets).into_owned();
    ServiceDetail {
        summary: summary(installed, &report),
        description: installed.service.description.as_deref().map(mask),
        mqtt_root: installed.service.mqtt_root.clone(),
        commissioning_file: mask(&installed.record.commissioning_file),
        parameters: installed
            .service
            .masked_parameters(&installed.record.parameters),
        resources: resources(&report),
        depends_on: installed.service.depends_on.iter().cloned().collect(),
        installed_at: installed.record.installed_at,
        updated_at: installed.record.updated_at,
        changed_resources: None,
        changed: None,
    }
}

#[utoipa::path(get, path = "/api/services", tag = "services", responses((status = 200, body = Vec<ServiceSummary>)), security(("token" = [])))]
pub async fn list(State(state): State<ApiState>) -> Json<Vec<ServiceSummary>> {
    let services = state.admin.services_list().await;
    Json(
        services
            .iter()
            .map(|s| summary(s, &state.admin.report(s)))
            .collect(),
    )
}

fn target_state(value: Option<&str>) -> ApiResult<Option<TargetState>> {
    value
        .map(|text| {
            TargetState::parse(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "targetState must be `enabled` or `disabled`, got {text:?}"
                ))
            })
        })
        .transpose()
}

/// An install or validate request: JSON (`{commissioningFile, parameters, ...}`) or the raw YAML
/// with `Content-Type: application/yaml` and `id`, `targetState` and parameters in the query.
pub struct Upload(ServiceInput);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let uri = request.uri().clone();
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        match content_type.as_str() {
            "application/json" => {
                let request: InstallRequest = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
                Ok(Upload(ServiceInput {
                    id: request.id,
                    commissioning_file: request.commissioning_file,
                    parameters: request.parameters,
                    target_state: target_state(request.target_state.as_deref())?,
                }))
            }
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                let file = String::from_utf8(body.to_vec()).map_err(|_| {
                    ApiError::bad_request("the commissioning file is not UTF-8 text")
                })?;
                let Query(mut query) = Query::<HashMap<String, String>>::try_from_uri(&uri)?;
                let id = query.remove("id");
                // The token may travel in the query too; it is not a parameter.
                query.remove("apiToken");
                let target = target_state(query.remove("targetState").as_deref())?;
                let parameters: Map<String, Json_> = query
                    .into_iter()
                    .map(|(k, v)| (k, Json_::String(v)))
                    .collect();
                Ok(Upload(ServiceInput {
                    id,
                    commissioning_file: file,
                    parameters,
                    target_state: target,
                }))
            }
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json ({commissioningFile, parameters}) or application/yaml (the file, parameters as query)",
            )),
        }
    }
}

/// Installs a service from a commissioning file and, unless `targetState` is `disabled`,
/// enables it.
#[utoipa::path(post, path = "/api/services", tag = "services", request_body(content = InstallRequest, description = "or the YAML itself as application/yaml with parameters in the query"),
    responses((status = 201, body = ServiceDetail), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)), security(("token" = [])))]
pub async fn install(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Upload(input): Upload,
) -> ApiResult<(StatusCode, Json<ServiceDetail>)> {
    let installed = state
        .admin
        .install_service(input, &Authority::Caller(caller.permissions))
        .await?;
    Ok((StatusCode::CREATED, Json(detail(&state, &installed))))
}

#[utoipa::path(get, path = "/api/services/{id}", tag = "services", params(("id" = String, Path)),
    responses((status = 200, body = ServiceDetail), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn details(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceDetail>> {
    let installed = state.admin.service(&id).await?;
    Ok(Json(detail(&state, &installed)))
}

/// New file and/or parameters; only resources whose resolved properties changed restart. With
/// `?dryRun=true` nothing changes: the answer is the service as it is, with the
/// `changedResources` the reconfiguration would restart or remove.
#[utoipa::path(put, path = "/api/services/{id}", tag = "services", params(("id" = String, Path), ReconfigureQuery), request_body = ReconfigureRequest,
    responses((status = 200, body = ServiceDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("token" = [])))]
pub async fn reconfigure(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    uri: Uri,
    ApiJson(request): ApiJson<ReconfigureRequest>,
) -> ApiResult<Json<ServiceDetail>> {
    let Query(query) = Query::<ReconfigureQuery>::try_from_uri(&uri)?;
    if request.commissioning_file.is_none() && request.parameters.is_none() {
        return Err(ApiError::bad_request(
            "give a new commissioningFile, new parameters, or both",
        ));
    }
    let authority = Authority::Caller(caller.permissions);
    let (installed, changed) = if query.dry_run {
        state
            .admin
            .preview_reconfigure(
                &id,
                request.commissioning_file,
                request.parameters,
                &authority,
            )
            .await?
    } else {
        state
            .admin
            .reconfigure_service(
                &id,
                request.commissioning_file,
                request.parameters,
                &authority,
            )
            .await?
    };
    let mut detail = detail(&state, &installed);
    detail.changed_resources = Some(changed);
    Ok(Json(detail))
}

/// Disables the service and removes it. 409 while other services reference it.
#[utoipa::path(delete, path = "/api/services/{id}", tag = "services", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.admin.delete_service(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `enable` or `disable`. `changed` is false when the service already was in that state.
#[utoipa::path(post, path = "/api/services/{id}/operation", tag = "services", params(("id" = String, Path)), request_body = OperationRequest,
    responses((status = 200, body = ServiceDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn operate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<OperationRequest>,
) -> ApiResult<Json<ServiceDetail>> {
    let operation = match request.operation.as_str() {
        "enable" => Operation::Enable,
        "disable" => Operation::Disable,
        other => {
            return Err(ApiError::bad_request(format!(
                "operation must be `enable` or `disable`, got {other:?}"
            )));
        }
    };
    let (changed, installed) = state.admin.operate(&id, operation).await?;
    let mut detail = detail(&state, &installed);
    detail.changed = Some(changed);
    Ok(Json(detail))
}

#[utoipa::path(get, path = "/api/services/{id}/status", tag = "services", params(("id" = String, Path)),
    responses((status = 200, body = StatusResponse), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn status(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusResponse>> {
    let report = state.admin.status(&id).await?;
    Ok(Json(StatusResponse {
        resources: resources(&report),
        id: report.id,
        state: report.state.as_str().into(),
        deviated: report.deviated,
        deviations: report.deviations,
        last_error: report.last_error,
    }))
}

#[utoipa::path(get, path = "/api/services/{id}/dependencies", tag = "services", params(("id" = String, Path)),
    responses((status = 200, body = DependenciesResponse), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn dependencies(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DependenciesResponse>> {
    let (depends_on, depended_on_by) = state.admin.dependencies(&id).await?;
    Ok(Json(DependenciesResponse {
        depends_on,
        depended_on_by,
    }))
}

/// Validates a file and parameters against the installed services; installs nothing.
#[utoipa::path(post, path = "/api/validate/service", tag = "services", request_body(content = InstallRequest, description = "the same body as an install; `targetState` is ignored"),
    responses((status = 200, body = ValidateResponse), (status = 400, body = ErrorBody)), security(("token" = [])))]
pub async fn validate(
    State(state): State<ApiState>,
    Upload(input): Upload,
) -> ApiResult<Json<ValidateResponse>> {
    let diagnostics = state.admin.validate_service(&input).await;
    let parameters = commissioning::declared_parameter_specs(&input.commissioning_file)
        .into_iter()
        .map(|(name, spec)| ParameterDto {
            name,
            schema: serde_json::to_value(spec).unwrap_or_default(),
        })
        .collect();
    Ok(Json(ValidateResponse {
        valid: !diagnostics.iter().any(commissioning::Diagnostic::is_error),
        diagnostics,
        parameters,
    }))
}
