//! `protocol: Modbus`: the connection's properties and an endpoint's register address.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::connectware::{MODBUS_CONNECTION, MODBUS_ENDPOINT};
use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{ModbusAddress, ModbusConnection, ModbusTransport, Operation};
use crate::resolve::position_of;
use crate::typed::typed;

pub(super) fn connection(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ModbusConnection> {
    MODBUS_CONNECTION.take_ignored(&mut properties, path, positions, diagnostics);
    let connection: ModbusConnection = typed(properties, path, positions, diagnostics)?;
    check_transport(&connection, path, positions, diagnostics);
    if let Some(size) = connection.max_batch_size
        && !(1..=2000).contains(&size)
    {
        let p = join(path, "maxBatchSize");
        diagnostics.push(Diagnostic::new(
            &p,
            position_of(positions, &p),
            format!("expected 1-2000 (at most 125 are used for registers), got {size}"),
        ));
    }
    Some(connection)
}

pub(super) fn address(
    mut properties: Json,
    operation: Operation,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ModbusAddress> {
    MODBUS_ENDPOINT.take_ignored(&mut properties, path, positions, diagnostics);
    let address: ModbusAddress = typed(properties, path, positions, diagnostics)?;
    check_address(&address, operation, path, positions, diagnostics);
    Some(address)
}

/// What each transport needs: a host for TCP and RTU over TCP, a device and sane line
/// settings for RTU.
fn check_transport(
    c: &ModbusConnection,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    match c.transport {
        ModbusTransport::Tcp | ModbusTransport::RtuOverTcp => {
            if c.host.is_empty() {
                problem(
                    "host",
                    "missing required property `host` (the device or serial gateway)".into(),
                );
            }
            if c.device.is_some() {
                problem(
                    "device",
                    "a serial device is only used with `transport: rtu`".into(),
                );
            }
        }
        ModbusTransport::Rtu => {
            match c.device.as_deref() {
                None | Some("") => problem(
                    "device",
                    "`transport: rtu` needs the serial `device`, e.g. /dev/ttyUSB0".into(),
                ),
                Some(_) => {}
            }
            if !c.host.is_empty() {
                problem(
                    "host",
                    "`transport: rtu` talks to a serial `device`, not a host; use `rtuOverTcp` for a serial gateway".into(),
                );
            }
            if !(5..=8).contains(&c.data_bits) {
                problem("dataBits", format!("expected 5-8, got {}", c.data_bits));
            }
            if !matches!(c.stop_bits, 1 | 2) {
                problem("stopBits", format!("expected 1 or 2, got {}", c.stop_bits));
            }
            if !(50..=4_000_000).contains(&c.baud_rate) {
                problem(
                    "baudRate",
                    format!("expected 50-4000000, got {}", c.baud_rate),
                );
            }
        }
    }
}

fn check_address(
    a: &ModbusAddress,
    operation: Operation,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let fc_path = join(path, "fc");
    let allowed: &[u8] = match operation {
        Operation::Subscribe | Operation::Read => &[1, 2, 3, 4],
        Operation::Write => &[5, 6, 15, 16],
    };
    if !allowed.contains(&a.fc) {
        let list: Vec<String> = allowed.iter().map(u8::to_string).collect();
        diagnostics.push(Diagnostic::new(
            &fc_path,
            position_of(positions, &fc_path),
            format!(
                "function code {} cannot be used here; expected one of {}",
                a.fc,
                list.join(", ")
            ),
        ));
    }
    super::check_schedule(
        a.interval,
        a.cron_expression.as_deref(),
        path,
        positions,
        diagnostics,
    );
    if a.length == 0 || (a.fc <= 2 && a.length > 2000) || (matches!(a.fc, 3 | 4) && a.length > 125)
    {
        let p = join(path, "length");
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), format!("length {} is outside what one Modbus request can carry (1-125 registers, 1-2000 coils)", a.length)));
    }
}
