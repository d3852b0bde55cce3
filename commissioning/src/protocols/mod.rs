//! What each protocol adds to a commissioning file: the properties of its `Cybus::Connection`
//! and the address of its `Cybus::Endpoint` (`subscribe`, `read` or `write`), typed and checked
//! with every problem reported. The one place in this crate that matches on a protocol: a new
//! protocol is a module here and an arm in each function below.

mod http;
mod modbus;
mod mqtt;
mod opcua;
mod s7;
mod tls;

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos};
use crate::model::{Address, ConnectionParams, Operation, Protocol};

/// A connection's `connection` properties.
pub(crate) fn connection(
    protocol: Protocol,
    properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ConnectionParams> {
    Some(match protocol {
        Protocol::Modbus => ConnectionParams::Modbus(modbus::connection(
            properties,
            path,
            positions,
            diagnostics,
        )?),
        Protocol::Opcua => {
            ConnectionParams::Opcua(opcua::connection(properties, path, positions, diagnostics)?)
        }
        Protocol::Mqtt => {
            ConnectionParams::Mqtt(mqtt::connection(properties, path, positions, diagnostics)?)
        }
        Protocol::Http => ConnectionParams::Http(Box::new(http::connection(
            properties,
            path,
            positions,
            diagnostics,
        )?)),
        Protocol::S7 => {
            ConnectionParams::S7(s7::connection(properties, path, positions, diagnostics)?)
        }
    })
}

/// An endpoint's address, for `operation`.
pub(crate) fn address(
    protocol: Protocol,
    operation: Operation,
    properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Address> {
    Some(match protocol {
        Protocol::Modbus => Address::Modbus(modbus::address(
            properties,
            operation,
            path,
            positions,
            diagnostics,
        )?),
        Protocol::Opcua => {
            Address::Opcua(opcua::address(properties, path, positions, diagnostics)?)
        }
        Protocol::Mqtt => Address::Mqtt(mqtt::address(properties, path, positions, diagnostics)?),
        Protocol::Http => Address::Http(http::address(
            properties,
            operation,
            path,
            positions,
            diagnostics,
        )?),
        Protocol::S7 => Address::S7(s7::address(
            properties,
            operation,
            path,
            positions,
            diagnostics,
        )?),
    })
}
