//! `/api/login`, `/api/logout`, `/api/users`, `/api/roles`, `/api/permissions`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::dto::*;
use crate::error::{ApiResult, ErrorBody};
use crate::{ApiJson, ApiState, Authenticated, ClientAddress};
use admin::access::is_builtin_role;
use admin::accounts::{UserChange, UserView};
use admin::store::RoleRecord;

pub fn public_routes() -> Router<ApiState> {
    Router::new().route("/api/login", post(login))
}

pub fn self_service_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/logout", post(logout))
        .route("/api/users/change-password", post(change_password))
        .route("/api/permissions", get(permissions))
}

pub fn protected_routes() -> Router<ApiState> {
    Router::new()
        .route("/api/users", get(list_users).post(create_user))
        .route(
            "/api/users/{id}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route("/api/roles", get(list_roles).post(create_role))
        .route(
            "/api/roles/{id}",
            get(get_role).put(update_role).delete(delete_role),
        )
}

fn user_dto(user: UserView) -> UserDto {
    UserDto {
        username: user.name,
        roles: user.roles,
        permissions: user.permissions,
        service_id: user.service_id,
        created_at: user.created_at,
    }
}

fn role_dto(role: RoleRecord) -> RoleDto {
    RoleDto {
        builtin: is_builtin_role(&role.name),
        name: role.name,
        permissions: role.permissions,
        service_id: role.service_id,
    }
}

/// Exchanges a user name and password for a token. Repeated failures are answered with 429.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let login = state
        .admin
        .login(
            &request.username,
            &request.password,
            request.expire_time_in_hours,
            address,
        )
        .await?;
    Ok(Json(LoginResponse {
        token: login.token,
        expires_at: login.expires_at,
        permissions: login.permissions,
    }))
}

/// Revokes the token used for this request.
#[utoipa::path(post, path = "/api/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)), security(("token" = [])))]
pub async fn logout(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<StatusCode> {
    state.admin.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's own password; every token issued before stops working.
#[utoipa::path(post, path = "/api/users/change-password", tag = "users", request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("token" = [])))]
pub async fn change_password(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    state
        .admin
        .change_own_password(&caller, &request.old_password, &request.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's roles and effective permissions.
#[utoipa::path(get, path = "/api/permissions", tag = "users", responses((status = 200, body = PermissionsResponse)), security(("token" = [])))]
pub async fn permissions(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<PermissionsResponse>> {
    let user = state.admin.user(&caller.name).await?;
    Ok(Json(PermissionsResponse {
        username: caller.name,
        roles: user.roles,
        permissions: caller.permissions,
    }))
}

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = Vec<UserDto>)), security(("token" = [])))]
pub async fn list_users(State(state): State<ApiState>) -> ApiResult<Json<Vec<UserDto>>> {
    Ok(Json(
        state
            .admin
            .users()
            .await?
            .into_iter()
            .map(user_dto)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = UserDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn create_user(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    state
        .admin
        .check_grantable(&caller, &request.roles, &request.permissions)?;
    let user = state
        .admin
        .create_user(
            &request.username,
            &request.password,
            request.roles,
            request.permissions,
            None,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user_dto(user))))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "user name")),
    responses((status = 200, body = UserDto), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn get_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<UserDto>> {
    Ok(Json(user_dto(state.admin.user(&id).await?)))
}

/// Changes password, roles and/or direct permissions. A new password revokes the user's tokens.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "user name")), request_body = UpdateUserRequest,
    responses((status = 200, body = UserDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn update_user(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<UserDto>> {
    state.admin.check_grantable(
        &caller,
        request.roles.as_deref().unwrap_or_default(),
        request.permissions.as_deref().unwrap_or_default(),
    )?;
    let change = UserChange {
        password: request.password,
        roles: request.roles,
        permissions: request.permissions,
    };
    Ok(Json(user_dto(state.admin.update_user(&id, change).await?)))
}

/// Deletes a user; its tokens and MQTT permissions end at once.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, description = "user name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn delete_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.admin.delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/roles", tag = "roles", responses((status = 200, body = Vec<RoleDto>)), security(("token" = [])))]
pub async fn list_roles(State(state): State<ApiState>) -> ApiResult<Json<Vec<RoleDto>>> {
    Ok(Json(
        state
            .admin
            .roles()
            .await?
            .into_iter()
            .map(role_dto)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/roles", tag = "roles", request_body = CreateRoleRequest,
    responses((status = 201, body = RoleDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn create_role(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateRoleRequest>,
) -> ApiResult<(StatusCode, Json<RoleDto>)> {
    state
        .admin
        .check_grantable(&caller, &[], &request.permissions)?;
    let role = state
        .admin
        .create_role(&request.name, request.permissions, None)
        .await?;
    Ok((StatusCode::CREATED, Json(role_dto(role))))
}

#[utoipa::path(get, path = "/api/roles/{id}", tag = "roles", params(("id" = String, Path, description = "role name")),
    responses((status = 200, body = RoleDto), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn get_role(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleDto>> {
    Ok(Json(role_dto(state.admin.role(&id).await?)))
}

#[utoipa::path(put, path = "/api/roles/{id}", tag = "roles", params(("id" = String, Path, description = "role name")), request_body = UpdateRoleRequest,
    responses((status = 200, body = RoleDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn update_role(
    State(state): State<ApiState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateRoleRequest>,
) -> ApiResult<Json<RoleDto>> {
    state
        .admin
        .check_grantable(&caller, &[], &request.permissions)?;
    Ok(Json(role_dto(
        state.admin.update_role(&id, request.permissions).await?,
    )))
}

#[utoipa::path(delete, path = "/api/roles/{id}", tag = "roles", params(("id" = String, Path, description = "role name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("token" = [])))]
pub async fn delete_role(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.admin.delete_role(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
