//! `protocol: Mqtt`: a connection to another broker (a cloud, another plant) and an
//! endpoint's topic.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::connectware::{MQTT_CONNECTION, MQTT_ENDPOINT};
use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{MqttAddress, MqttConnection, MqttScheme};
use crate::resolve::position_of;
use crate::typed::typed;

pub(super) fn connection(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<MqttConnection> {
    MQTT_CONNECTION.take_ignored(&mut properties, path, positions, diagnostics);
    let connection: MqttConnection = typed(properties, path, positions, diagnostics)?;
    check_tls(&connection, path, positions, diagnostics);
    Some(connection)
}

pub(super) fn address(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<MqttAddress> {
    MQTT_ENDPOINT.take_ignored(&mut properties, path, positions, diagnostics);
    typed(properties, path, positions, diagnostics)
}

/// TLS material of an MQTT connection: certificates need a TLS scheme, a client certificate
/// needs its key (and the other way round), `mutualAuthentication` needs both, and each is PEM.
fn check_tls(
    m: &MqttConnection,
    conn_path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: String| {
        let p = join(conn_path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    let tls = matches!(m.scheme, MqttScheme::Mqtts | MqttScheme::Wss);
    for (field, value, marker) in [
        ("caCert", &m.ca_cert, "CERTIFICATE"),
        ("clientCert", &m.client_cert, "CERTIFICATE"),
        ("clientPrivateKey", &m.client_private_key, "PRIVATE KEY"),
    ] {
        let Some(value) = value else { continue };
        if !tls {
            problem(
                field,
                "is only used with scheme mqtts or wss; the connection is not encrypted".into(),
            );
        } else if !value.contains("-----BEGIN") || !value.contains(marker) {
            problem(
                field,
                format!("expected a PEM block (-----BEGIN ...{marker}-----)"),
            );
        }
    }
    match (&m.client_cert, &m.client_private_key) {
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
    if m.mutual_authentication && !tls {
        problem(
            "mutualAuthentication",
            "mutual TLS needs scheme mqtts or wss".into(),
        );
    }
}
