//! `/api/openapi.json`, generated from the handlers' annotations and the DTO types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto::*;
use super::error::{ErrorBody, ErrorDetail};
use super::{accounts, services, system};

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
    ),
    components(schemas(ErrorBody, ErrorDetail, PermissionDto, DiagnosticDto)),
    modifiers(&BearerToken),
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

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
