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

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{Address, ConnectionParams, Operation, Protocol, parse_cron};
use crate::resolve::position_of;

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

/// A polled endpoint's schedule: a `cronExpression` that parses, and not together with an
/// `interval` (which one would win is not obvious to whoever reads the file).
fn check_schedule(
    interval: Option<u64>,
    cron_expression: Option<&str>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if let Some(expression) = cron_expression
        && let Err(e) = parse_cron(expression)
    {
        let p = join(path, "cronExpression");
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), e));
    }
    if interval.is_some() && cron_expression.is_some() {
        diagnostics.push(Diagnostic::new(
            path,
            position_of(positions, path),
            "give `interval` or `cronExpression`, not both",
        ));
    }
}

/// The schedule of an endpoint of a protocol where only `subscribe` polls (HTTP, S7): as
/// [`check_schedule`], an `interval` of at least 1 ms, and neither `interval` nor
/// `cronExpression` on a `read` or `write` endpoint, which runs when asked.
fn check_polling(
    operation: Operation,
    interval: Option<u64>,
    cron_expression: Option<&str>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: &str| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if interval == Some(0) {
        problem("interval", "must be at least 1 ms");
    }
    if operation != Operation::Subscribe {
        if interval.is_some() {
            problem("interval", "only a `subscribe` endpoint polls");
        }
        if cron_expression.is_some() {
            problem("cronExpression", "only a `subscribe` endpoint polls");
        }
    }
    check_schedule(interval, cron_expression, path, positions, diagnostics);
}
