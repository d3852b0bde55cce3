//! `protocol: Mqtt`: a connection to another broker (a cloud, another plant) and an
//! endpoint's topic.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::tls::{self, TlsMaterial};
use crate::connectware::{MQTT_CONNECTION, MQTT_ENDPOINT};
use crate::diagnostic::{Diagnostic, Pos};
use crate::model::{MqttAddress, MqttConnection, MqttScheme};
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

/// TLS material of an MQTT connection, as for every client connection.
fn check_tls(
    m: &MqttConnection,
    conn_path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let material = TlsMaterial {
        encrypted: matches!(m.scheme, MqttScheme::Mqtts | MqttScheme::Wss),
        encrypted_schemes: "mqtts or wss",
        ca_cert: m.ca_cert.as_deref(),
        client_cert: m.client_cert.as_deref(),
        client_private_key: m.client_private_key.as_deref(),
        mutual_authentication: m.mutual_authentication,
    };
    tls::check(&material, conn_path, positions, diagnostics);
}
