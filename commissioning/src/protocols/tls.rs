//! The TLS material of a client connection (MQTT, HTTP), checked the same way for both:
//! certificates need an encrypted scheme, a client certificate needs its key (and the other way
//! round), `mutualAuthentication` needs both, and each is PEM.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::resolve::position_of;

pub(super) struct TlsMaterial<'a> {
    /// The connection's scheme encrypts (`mqtts`, `wss`, `https`).
    pub encrypted: bool,
    /// The schemes that do, for messages: "mqtts or wss".
    pub encrypted_schemes: &'static str,
    pub ca_cert: Option<&'a str>,
    pub client_cert: Option<&'a str>,
    pub client_private_key: Option<&'a str>,
    pub mutual_authentication: bool,
}

pub(super) fn check(
    m: &TlsMaterial<'_>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    for (field, value, marker) in [
        ("caCert", m.ca_cert, "CERTIFICATE"),
        ("clientCert", m.client_cert, "CERTIFICATE"),
        ("clientPrivateKey", m.client_private_key, "PRIVATE KEY"),
    ] {
        let Some(value) = value else { continue };
        if !m.encrypted {
            problem(
                field,
                format!(
                    "is only used with scheme {}; the connection is not encrypted",
                    m.encrypted_schemes
                ),
            );
        } else if !value.contains("-----BEGIN") || !value.contains(marker) {
            problem(
                field,
                format!("expected a PEM block (-----BEGIN ...{marker}-----)"),
            );
        }
    }
    match (m.client_cert, m.client_private_key) {
        (Some(_), None) => problem(
            "clientPrivateKey",
            "clientCert is given, so the matching clientPrivateKey is needed".into(),
        ),
        (None, Some(_)) => problem(
            "clientCert",
            "clientPrivateKey is given, so the matching clientCert is needed".into(),
        ),
        (None, None) if m.mutual_authentication => problem(
            "mutualAuthentication",
            "mutual TLS needs clientCert and clientPrivateKey (PEM)".into(),
        ),
        _ => {}
    }
    if m.mutual_authentication && !m.encrypted {
        problem(
            "mutualAuthentication",
            format!("mutual TLS needs scheme {}", m.encrypted_schemes),
        );
    }
}
