//! Request and response bodies of the REST API. The only place HTTP DTOs are defined; their
//! schemas feed `/api/openapi.json`.

use commissioning::Diagnostic;
use commissioning::model::Permission;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use utoipa::ToSchema;

/// `{resource, operation, context}`; MQTT resources are topic filters, HTTP resources API paths,
/// both with `+` and `#`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionDto {
    pub resource: String,
    pub operation: OperationDto,
    pub context: ContextDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationDto {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ContextDto {
    Mqtt,
    Http,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Token lifetime, 1-720 hours (default 24).
    pub expire_time_in_hours: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub token: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub username: String,
    pub roles: Vec<String>,
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
    /// Set for users a service created; they are changed through the service only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub password: Option<String>,
    pub roles: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<PermissionDto>>)]
    pub permissions: Option<Vec<Permission>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    pub old_password: String,
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleDto {
    pub name: String,
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
    pub builtin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    pub name: String,
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionsResponse {
    pub username: String,
    pub roles: Vec<String>,
    #[schema(value_type = Vec<PermissionDto>)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallRequest {
    /// Defaults to `metadata.name` lower-cased with everything outside `[a-z0-9]` removed.
    pub id: Option<String>,
    /// The YAML text.
    pub commissioning_file: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Json>,
    /// `enabled` (default) or `disabled`.
    pub target_state: Option<String>,
}

/// Query of `PUT /api/services/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ReconfigureQuery {
    /// Only work out which resources would restart; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconfigureRequest {
    pub commissioning_file: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Json>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    /// `enable` or `disable`
    #[schema(pattern = "^(enable|disable)$")]
    pub operation: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub state: String,
    pub deviated: bool,
    /// The resources not in the state the service wants (what makes it `deviated`).
    pub deviations: Vec<String>,
    /// Why the last operation failed (the service is `failed`), if it did.
    pub last_error: Option<String>,
    pub target_state: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDetail {
    #[serde(flatten)]
    pub summary: ServiceSummary,
    pub description: Option<String>,
    pub mqtt_root: String,
    pub commissioning_file: String,
    #[schema(value_type = Object)]
    pub parameters: Map<String, Json>,
    pub resources: Vec<ResourceDto>,
    pub depends_on: Vec<String>,
    pub installed_at: i64,
    pub updated_at: i64,
    /// After a reconfigure: the resources that were restarted, added or removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_resources: Option<Vec<String>>,
    /// After an operation: whether it changed anything (false when already in that state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDto {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Counters. Of every connection, what it did since it started (`values`, `lastValueAt`,
    /// `endpointErrors`, `requests`, `requestsFailed`, `failedAttempts`, `sessionsLost`), and
    /// of an MQTT connection also its store-and-forward queue (`queuedMessages`, `queuedBytes`,
    /// `droppedQueueFull`, `delivered`, `deliveredPerSecond`, ...); of an endpoint its own
    /// `values`, `lastValueAt` and `errors`; of a mapping (and an endpoint's rules) the
    /// messages through it (`received`, `published`, `dropped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub id: String,
    pub state: String,
    pub deviated: bool,
    /// Resources not in their target state.
    pub deviations: Vec<String>,
    pub last_error: Option<String>,
    pub resources: Vec<ResourceDto>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependenciesResponse {
    pub depends_on: Vec<String>,
    pub depended_on_by: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    pub valid: bool,
    #[schema(value_type = Vec<DiagnosticDto>)]
    pub diagnostics: Vec<Diagnostic>,
    /// The parameters the file declares, in file order, with their JSON-schema style
    /// declaration (`type`, `default`, `enum`, `minimum`, ...): what a form asks for.
    pub parameters: Vec<ParameterDto>,
}

/// One declared parameter of a commissioning file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParameterDto {
    pub name: String,
    /// The declaration as written: `type`, and any of `default`, `title`, `description`,
    /// `enum`, `minimum`, `maximum`, `minLength`, `maxLength`, `pattern`, `format`.
    #[schema(value_type = Object)]
    pub schema: Json,
}

/// One problem in a commissioning file.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticDto {
    /// YAML path, e.g. `resources.plc.properties.connection.port`.
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `error` makes the file invalid; `warning` (a Connectware property Ironbridge does not
    /// implement, say) does not.
    #[schema(value_type = String, example = "error")]
    pub severity: commissioning::Severity,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InfoResponse {
    pub name: String,
    pub version: String,
    pub uptime_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` when every part is `ok`, else `degraded`.
    pub status: String,
    #[schema(value_type = Object)]
    pub parts: Map<String, Json>,
}
