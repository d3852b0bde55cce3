//! The one place where errors become HTTP responses: `{"error": {"code", "message", "details"?}}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value as Json_;
use utoipa::ToSchema;

use admin::error::AdminError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `invalid_commissioning_file`, `too_many_requests`,
    /// `internal`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub details: Option<Json_>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Boxed: rare (diagnostics), and errors travel in every handler's `Result`.
    details: Option<Box<Json_>>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> ApiError {
        let message = error.to_string();
        match error {
            AdminError::Invalid(_) => ApiError::bad_request(message),
            AdminError::Unauthenticated(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            AdminError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AdminError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            AdminError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AdminError::InvalidFile(diagnostics) => ApiError {
                details: Some(Box::new(serde_json::json!({ "diagnostics": diagnostics }))),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_commissioning_file",
                    message,
                )
            },
            AdminError::Throttled(wait) => ApiError {
                retry_after: Some(wait.as_secs().max(1)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            },
            AdminError::Store(e) => {
                tracing::error!(error = %e, "Database error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is not available; try again",
                )
            }
            AdminError::Internal(e) => {
                tracing::error!(error = %e, "Internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the gateway log",
                )
            }
        }
    }
}

/// Body problems: too large is 413, the wrong content type 415, everything else 400.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            _ => ApiError::bad_request(format!("malformed JSON body: {}", rejection.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("malformed query: {}", rejection.body_text()))
    }
}

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is too large",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                details: self.details.map(|details| *details),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
