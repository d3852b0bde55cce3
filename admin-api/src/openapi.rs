//! `/api/openapi.json`, generated from the handlers' annotations and the DTO types.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::dto::*;
use crate::error::{ErrorBody, ErrorDetail};
use crate::{accounts, discover, services, system};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ironbridge admin API", description = "Services, users, roles and permissions of an Ironbridge gateway."),
    paths(
        accounts::login, accounts::logout, accounts::change_password, accounts::permissions,
        accounts::list_users, accounts::create_user, accounts::get_user, accounts::update_user, accounts::delete_user,
        accounts::list_roles, accounts::create_role, accounts::get_role, accounts::update_role, accounts::delete_role,
        services::list, services::install, services::details, services::reconfigure, services::delete,
        services::operate, services::status, services::dependencies, services::validate,
        system::info, system::health,
        discover::opcua,
    ),
    components(schemas(ErrorBody, ErrorDetail, PermissionDto, DiagnosticDto)),
    modifiers(&BearerToken, &CommonErrors),
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The answers every route can give, documented once rather than on each handler: 401 and 403
/// where a token is needed, 400, 413 and 415 where a body is read.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_errors(operation);
            }
        }
    }
}

fn add_common_errors(operation: &mut Operation) {
    let mut codes: Vec<(&str, &str)> = Vec::new();
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        codes.push(("401", "no token, or an invalid, expired or revoked one"));
        codes.push((
            "403",
            "the token's user lacks the http permission for this path",
        ));
    }
    if operation.request_body.is_some() {
        codes.push((
            "400",
            "malformed body (not JSON, wrong types, unknown fields)",
        ));
        codes.push(("413", "the body is larger than admin.max_body_bytes"));
        codes.push(("415", "unsupported Content-Type"));
    }
    for (code, description) in codes {
        operation
            .responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
