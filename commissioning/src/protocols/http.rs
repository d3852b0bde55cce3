//! `protocol: Http`: a REST server's connection properties and an endpoint's path.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::tls::{self, TlsMaterial};
use crate::connectware::{HTTP_CONNECTION, HTTP_ENDPOINT};
use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{HttpAddress, HttpConnection, HttpScheme, Operation};
use crate::resolve::position_of;
use crate::typed::typed;

pub(super) fn connection(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<HttpConnection> {
    HTTP_CONNECTION.take_ignored(&mut properties, path, positions, diagnostics);
    let mut connection: HttpConnection = typed(properties, path, positions, diagnostics)?;
    // An empty certificate is none, so a file can default a `caCert` parameter to ''.
    for pem in [
        &mut connection.ca_cert,
        &mut connection.client_cert,
        &mut connection.client_private_key,
    ] {
        if pem.as_deref().is_some_and(|p| p.trim().is_empty()) {
            *pem = None;
        }
    }
    let material = TlsMaterial {
        encrypted: connection.scheme == HttpScheme::Https,
        encrypted_schemes: "https",
        ca_cert: connection.ca_cert.as_deref(),
        client_cert: connection.client_cert.as_deref(),
        client_private_key: connection.client_private_key.as_deref(),
        mutual_authentication: connection.mutual_authentication,
    };
    tls::check(&material, path, positions, diagnostics);
    check_headers(
        &connection.headers,
        &join(path, "headers"),
        positions,
        diagnostics,
    );
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if let Some(oauth) = &connection.oauth_client_credentials {
        if !(oauth.auth_url.starts_with("https://") || oauth.auth_url.starts_with("http://")) {
            problem(
                "oauthClientCredentials.auth_url",
                format!(
                    "`{}` is not an http:// or https:// URL of the token endpoint",
                    oauth.auth_url
                ),
            );
        }
        if oauth.grant_type != "client_credentials" {
            problem(
                "oauthClientCredentials.grant_type",
                format!(
                    "`{}`: only the client_credentials grant is supported",
                    oauth.grant_type
                ),
            );
        }
    }
    for (field, value) in [
        ("prefix", &connection.prefix),
        ("probePath", &connection.probe_path),
    ] {
        if !value.is_empty() && !value.starts_with('/') {
            problem(field, format!("`{value}` must start with `/`"));
        }
    }
    for (field, ms) in [
        ("probeInterval", connection.probe_interval),
        ("requestTimeout", connection.request_timeout),
    ] {
        if ms == 0 {
            problem(field, "must be at least 1 ms".into());
        }
    }
    Some(connection)
}

pub(super) fn address(
    mut properties: Json,
    operation: Operation,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<HttpAddress> {
    HTTP_ENDPOINT.take_ignored(&mut properties, path, positions, diagnostics);
    let address: HttpAddress = typed(properties, path, positions, diagnostics)?;
    check_headers(
        &address.headers,
        &join(path, "headers"),
        positions,
        diagnostics,
    );
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if !address.path.starts_with('/') {
        problem("path", format!("`{}` must start with `/`", address.path));
    }
    if address.method.is_some() && operation != Operation::Write {
        problem(
            "method",
            "only a `write` endpoint sends with a method; `subscribe` and `read` use GET".into(),
        );
    }
    super::check_polling(
        operation,
        address.interval,
        address.cron_expression.as_deref(),
        path,
        positions,
        diagnostics,
    );
    Some(address)
}

/// Header names are HTTP tokens and values visible ASCII (RFC 9110 section 5): a header that
/// could not be sent is a problem of the file, not of every request.
fn check_headers(
    headers: &BTreeMap<String, String>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    for (name, value) in headers {
        let p = join(path, name);
        let problem = if name.is_empty() || !name.chars().all(token) {
            Some(format!(
                "`{name}` is not a header name: use letters, digits and !#$%&'*+-.^_`|~"
            ))
        } else if !value
            .chars()
            .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
        {
            Some(format!(
                "the value of `{name}` may hold only visible ASCII, spaces and tabs"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), problem));
        }
    }
}
