//! `protocol: S7`: a Siemens CPU's connection properties and an endpoint's variable address.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::connectware::{S7_CONNECTION, S7_ENDPOINT};
use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{Operation, S7Address, S7Connection};
use crate::resolve::position_of;
use crate::s7_address::S7Type;
use crate::typed::typed;

/// The PDU sizes S7 CPUs negotiate: 240 (S7-300, S7-1200, LOGO!) to 960 (S7-1500).
const PDU_SIZES: std::ops::RangeInclusive<u16> = 240..=960;

pub(super) fn connection(
    mut properties: Json,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<S7Connection> {
    S7_CONNECTION.take_ignored(&mut properties, path, positions, diagnostics);
    let connection: S7Connection = typed(properties, path, positions, diagnostics)?;
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    if connection.host.trim().is_empty() {
        problem("host", "`host` is empty; give the CPU's address".into());
    }
    // The remote TSAP carries rack and slot as rack * 32 + slot in one byte.
    if connection.rack > 7 {
        problem("rack", format!("expected 0-7, got {}", connection.rack));
    }
    if connection.slot > 31 {
        problem("slot", format!("expected 0-31, got {}", connection.slot));
    }
    if let Some(size) = connection.pdu_size
        && !PDU_SIZES.contains(&size)
    {
        problem(
            "pduSize",
            format!(
                "expected {}-{}, got {size}",
                PDU_SIZES.start(),
                PDU_SIZES.end()
            ),
        );
    }
    if connection.poll_interval == Some(0) {
        problem("pollInterval", "expected at least 1 ms".into());
    }
    Some(connection)
}

pub(super) fn address(
    mut properties: Json,
    operation: Operation,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<S7Address> {
    S7_ENDPOINT.take_ignored(&mut properties, path, positions, diagnostics);
    let address: S7Address = typed(properties, path, positions, diagnostics)?;
    let mut problem = |field: &str, message: String| {
        let p = join(path, field);
        diagnostics.push(Diagnostic::new(&p, position_of(positions, &p), message));
    };
    match (&address.data_type, address.variable()) {
        (Some(name), Err(e)) if S7Type::from_name(name).is_none() => problem("dataType", e),
        (_, Err(e)) => problem("address", e),
        (_, Ok(_)) => {}
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
