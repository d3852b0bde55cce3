//! S7comm PDUs as the client sends and reads them: communication setup, "read var" with many
//! items, "write var" with one. Decoding never trusts the CPU: every length is checked against
//! what arrived, and a PDU that does not add up is an error (the session is then dropped), never
//! a panic; the fuzz target in `protocol-mapper/fuzz` holds the decoders to that.

use std::fmt;

const PROTOCOL_ID: u8 = 0x32;
/// ROSCTR: a request ("job").
const JOB: u8 = 0x01;
/// ROSCTR: an acknowledgement without data (errors are answered this way too).
const ACK: u8 = 0x02;
/// ROSCTR: an acknowledgement with data.
const ACK_DATA: u8 = 0x03;
const SETUP_COMMUNICATION: u8 = 0xF0;
const READ_VAR: u8 = 0x04;
const WRITE_VAR: u8 = 0x05;
/// An item's return code when it succeeded.
const ITEM_OK: u8 = 0xFF;

/// Transport sizes of an address item.
const ITEM_BIT: u8 = 0x01;
const ITEM_BYTE: u8 = 0x02;
/// Transport sizes of a data item: lengths in bits for these, in bytes for the others.
const DATA_BIT: u8 = 0x03;
const DATA_BYTE: u8 = 0x04;
const DATA_INTEGER: u8 = 0x05;

/// The smallest PDU a CPU may offer: room for a header and a few items. No CPU offers less
/// than 240; a smaller offer is refused as malformed.
pub const MIN_PDU: u16 = 64;

/// Bytes of a job header; an acknowledgement adds the error class and code.
pub const JOB_HEADER: usize = 10;
pub const ACK_HEADER: usize = 12;
/// Bytes one address item takes in a read request.
pub const READ_ITEM: usize = 12;
/// Bytes before the data of one item in a read answer.
pub const DATA_ITEM_HEADER: usize = 4;

/// Where a read or write goes: an S7 area code, a data block number (0 outside data blocks),
/// and the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub area: u8,
    pub db: u16,
    pub byte: u32,
}

/// Bytes to read from a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadItem {
    pub place: Place,
    pub len: u16,
}

/// What a PDU from the CPU can be besides the answer that was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// The bytes are not the answer to our request: the session cannot go on.
    Malformed(String),
    /// The CPU refused the whole request with an error class and code.
    Refused(u16),
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PduError::Malformed(why) => write!(f, "malformed S7 answer: {why}"),
            PduError::Refused(code) => write!(f, "{}", refusal_text(*code)),
        }
    }
}

fn malformed(why: impl Into<String>) -> PduError {
    PduError::Malformed(why.into())
}

/// The text of a job error (class and code), with what to do about the common ones.
pub fn refusal_text(code: u16) -> String {
    let why = match code {
        0x8104 => {
            "the CPU does not offer this service; on an S7-1200/1500 allow PUT/GET access in the CPU's protection settings"
        }
        0x8500 => "the request does not fit the negotiated PDU size",
        0x8701 | 0x8702 => "the address is not valid for this CPU",
        0xD602 | 0xD604 | 0xD605 => "the CPU is password protected for this access",
        _ => "the CPU refused the request",
    };
    format!("S7 error {code:#06x}: {why}")
}

/// The text of an item's return code.
pub fn item_error_text(code: u8) -> String {
    let why = match code {
        0x01 => "hardware fault",
        0x03 => "access to the object is not allowed",
        0x05 => "the address is out of range (does the data block have that many bytes?)",
        0x06 => "the data type is not supported",
        0x07 => "the data type is inconsistent with the object",
        0x0A => "the object does not exist (is the data block there, and not optimized?)",
        _ => "the CPU refused the item",
    };
    format!("S7 item error {code:#04x}: {why}")
}

fn job(reference: u16, parameters: &[u8], data: &[u8]) -> Vec<u8> {
    let mut pdu = Vec::with_capacity(JOB_HEADER + parameters.len() + data.len());
    pdu.extend_from_slice(&[PROTOCOL_ID, JOB, 0, 0]);
    pdu.extend_from_slice(&reference.to_be_bytes());
    pdu.extend_from_slice(&len16(parameters.len()).to_be_bytes());
    pdu.extend_from_slice(&len16(data.len()).to_be_bytes());
    pdu.extend_from_slice(parameters);
    pdu.extend_from_slice(data);
    pdu
}

/// Lengths here are bounded by the PDU size (at most 960 bytes).
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Asks for one outstanding request each way and a PDU of `pdu_size` bytes.
pub fn setup_request(reference: u16, pdu_size: u16) -> Vec<u8> {
    let [hi, lo] = pdu_size.to_be_bytes();
    job(
        reference,
        &[SETUP_COMMUNICATION, 0, 0, 1, 0, 1, hi, lo],
        &[],
    )
}

/// The PDU size the CPU agreed to.
pub fn parse_setup_response(pdu: &[u8], reference: u16) -> Result<u16, PduError> {
    let (parameters, _) = acknowledgement(pdu, reference)?;
    match parameters {
        [SETUP_COMMUNICATION, _, _, _, _, _, hi, lo, ..] => {
            let size = u16::from_be_bytes([*hi, *lo]);
            if size < MIN_PDU {
                return Err(malformed(format!("the CPU offers a PDU of {size} bytes")));
            }
            Ok(size)
        }
        _ => Err(malformed("not an answer to the communication setup")),
    }
}

fn address_item(out: &mut Vec<u8>, transport: u8, count: u16, place: Place, bit: u8) {
    let address = place.byte * 8 + u32::from(bit);
    let [_, a2, a1, a0] = address.to_be_bytes();
    out.extend_from_slice(&[0x12, 0x0A, 0x10, transport]);
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&place.db.to_be_bytes());
    out.extend_from_slice(&[place.area, a2, a1, a0]);
}

/// A read of several byte ranges in one request.
pub fn read_request(reference: u16, items: &[ReadItem]) -> Vec<u8> {
    let mut parameters = Vec::with_capacity(2 + READ_ITEM * items.len());
    // At most 20 items are ever packed (see `plan.rs`).
    parameters.extend_from_slice(&[READ_VAR, u8::try_from(items.len()).unwrap_or(u8::MAX)]);
    for item in items {
        address_item(&mut parameters, ITEM_BYTE, item.len, item.place, 0);
    }
    job(reference, &parameters, &[])
}

/// The bytes of each item of a read answer, or the item's return code when the CPU refused it.
pub fn parse_read_response(
    pdu: &[u8],
    reference: u16,
    items: usize,
) -> Result<Vec<Result<Vec<u8>, u8>>, PduError> {
    let (parameters, mut data) = acknowledgement(pdu, reference)?;
    match parameters {
        [READ_VAR, count] if usize::from(*count) == items => {}
        [READ_VAR, count] => {
            return Err(malformed(format!(
                "{count} items answered, {items} asked for"
            )));
        }
        _ => return Err(malformed("not an answer to a read")),
    }
    let mut answers = Vec::with_capacity(items);
    for index in 0..items {
        let [code, transport, hi, lo, rest @ ..] = data else {
            return Err(malformed(format!("item {index} is cut short")));
        };
        let length = usize::from(u16::from_be_bytes([*hi, *lo]));
        let bytes = match *transport {
            DATA_BIT | DATA_BYTE | DATA_INTEGER => length.div_ceil(8),
            _ => length,
        };
        let payload = rest.get(..bytes).ok_or_else(|| {
            malformed(format!(
                "item {index} announces {bytes} bytes, {} arrived",
                rest.len()
            ))
        })?;
        // Items after the first start at an even offset: an odd length is followed by a fill
        // byte, except after the last item.
        let fill = usize::from(bytes % 2 == 1 && index + 1 < items);
        data = rest.get(bytes + fill..).unwrap_or(&[]);
        answers.push(if *code == ITEM_OK {
            Ok(payload.to_vec())
        } else {
            Err(*code)
        });
    }
    Ok(answers)
}

/// What one write request sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteItem<'a> {
    Bytes {
        place: Place,
        data: &'a [u8],
    },
    /// One bit: the CPU changes that bit alone, so the program's other bits in the byte are
    /// safe (a read-modify-write of the byte would race with it).
    Bit {
        place: Place,
        bit: u8,
        value: bool,
    },
}

/// Bytes a write request of `data_len` bytes takes besides the data.
pub const WRITE_OVERHEAD: usize = JOB_HEADER + 2 + READ_ITEM + DATA_ITEM_HEADER;

pub fn write_request(reference: u16, item: &WriteItem<'_>) -> Vec<u8> {
    let mut parameters = vec![WRITE_VAR, 1];
    let mut data = vec![0];
    match item {
        WriteItem::Bytes { place, data: bytes } => {
            address_item(&mut parameters, ITEM_BYTE, len16(bytes.len()), *place, 0);
            data.push(DATA_BYTE);
            data.extend_from_slice(&len16(bytes.len() * 8).to_be_bytes());
            data.extend_from_slice(bytes);
        }
        WriteItem::Bit { place, bit, value } => {
            address_item(&mut parameters, ITEM_BIT, 1, *place, *bit);
            data.extend_from_slice(&[DATA_BIT, 0, 1, u8::from(*value)]);
        }
    }
    job(reference, &parameters, &data)
}

/// `Ok(Err(code))` when the CPU refused the item.
pub fn parse_write_response(pdu: &[u8], reference: u16) -> Result<Result<(), u8>, PduError> {
    let (parameters, data) = acknowledgement(pdu, reference)?;
    match (parameters, data) {
        ([WRITE_VAR, 1], [ITEM_OK, ..]) => Ok(Ok(())),
        ([WRITE_VAR, 1], [code, ..]) => Ok(Err(*code)),
        _ => Err(malformed("not an answer to a write of one item")),
    }
}

/// Checks an acknowledgement's header and splits off its parameters and data.
fn acknowledgement(pdu: &[u8], reference: u16) -> Result<(&[u8], &[u8]), PduError> {
    let header = pdu
        .get(..ACK_HEADER)
        .ok_or_else(|| malformed(format!("{} bytes are too few for a header", pdu.len())))?;
    if header[0] != PROTOCOL_ID {
        return Err(malformed(format!(
            "protocol id {:#04x} is not S7comm",
            header[0]
        )));
    }
    if !matches!(header[1], ACK | ACK_DATA) {
        return Err(malformed(format!(
            "message type {:#04x} is not an acknowledgement",
            header[1]
        )));
    }
    let answered = u16::from_be_bytes([header[4], header[5]]);
    if answered != reference {
        return Err(malformed(format!(
            "the answer is to request {answered}, not {reference}"
        )));
    }
    let parameters_len = usize::from(u16::from_be_bytes([header[6], header[7]]));
    let data_len = usize::from(u16::from_be_bytes([header[8], header[9]]));
    let error = u16::from_be_bytes([header[10], header[11]]);
    if error != 0 {
        return Err(PduError::Refused(error));
    }
    let body = &pdu[ACK_HEADER..];
    if body.len() != parameters_len + data_len {
        return Err(malformed(format!(
            "the header announces {} bytes, {} arrived",
            parameters_len + data_len,
            body.len()
        )));
    }
    Ok(body.split_at(parameters_len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ack(reference: u16, parameters: &[u8], data: &[u8]) -> Vec<u8> {
        let mut pdu = vec![PROTOCOL_ID, ACK_DATA, 0, 0];
        pdu.extend_from_slice(&reference.to_be_bytes());
        pdu.extend_from_slice(&len16(parameters.len()).to_be_bytes());
        pdu.extend_from_slice(&len16(data.len()).to_be_bytes());
        pdu.extend_from_slice(&[0, 0]);
        pdu.extend_from_slice(parameters);
        pdu.extend_from_slice(data);
        pdu
    }

    const DB1: Place = Place {
        area: 0x84,
        db: 1,
        byte: 4,
    };

    #[test]
    fn read_request_items_carry_bit_addresses() {
        let pdu = read_request(7, &[ReadItem { place: DB1, len: 6 }]);
        assert_eq!(
            pdu,
            [
                0x32, 1, 0, 0, 0, 7, 0, 14, 0, 0, // header
                4, 1, // read var, one item
                0x12, 0x0A, 0x10, 2, 0, 6, 0, 1, 0x84, 0, 0, 32,
            ]
        );
    }

    #[test]
    fn read_answers_are_split_at_their_fill_bytes() {
        let data = [
            0xFF, 4, 0, 8, 0xAB, 0, // one byte, then a fill byte
            0x0A, 0, 0, 0, // refused: object does not exist
            0xFF, 4, 0, 16, 1, 2,
        ];
        let pdu = ack(3, &[4, 3], &data);
        let items = parse_read_response(&pdu, 3, 3).expect("answer");
        assert_eq!(items, [Ok(vec![0xAB]), Err(0x0A), Ok(vec![1, 2])]);
    }

    #[test]
    fn answers_that_do_not_add_up_are_malformed() {
        let good = ack(3, &[4, 1], &[0xFF, 4, 0, 16, 1, 2]);
        assert!(parse_read_response(&good, 3, 1).is_ok());
        let cases: [(&[u8], &str); 5] = [
            (&good[..good.len() - 1], "arrived"),
            (
                &ack(3, &[4, 1], &[0xFF, 4, 0, 24, 1, 2]),
                "announces 3 bytes",
            ),
            (&ack(4, &[4, 1], &[0xFF, 4, 0, 16, 1, 2]), "request 4"),
            (&ack(3, &[4, 2], &[0xFF, 4, 0, 16, 1, 2]), "2 items"),
            (&[0x32, 3, 0], "too few"),
        ];
        for (pdu, expected) in cases {
            let error = parse_read_response(pdu, 3, 1).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    /// The fuzz target's property, on every truncation and every single-byte change of a good
    /// answer: no panic, and an accepted answer has the items asked for.
    #[test]
    fn damaged_answers_never_panic() {
        let good = ack(3, &[4, 2], &[0xFF, 4, 0, 8, 0xAB, 0, 0xFF, 9, 0, 2, 1, 2]);
        assert!(parse_read_response(&good, 3, 2).is_ok());
        let mut damaged = Vec::new();
        for end in 0..good.len() {
            damaged.push(good[..end].to_vec());
        }
        for index in 0..good.len() {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut changed = good.clone();
                changed[index] = value;
                damaged.push(changed);
            }
        }
        for pdu in damaged {
            if let Ok(items) = parse_read_response(&pdu, 3, 2) {
                assert_eq!(items.len(), 2);
            }
            let _ = parse_write_response(&pdu, 3);
            let _ = parse_setup_response(&pdu, 3);
        }
    }

    #[test]
    fn a_refused_job_names_put_get() {
        let mut pdu = ack(1, &[], &[]);
        pdu[10..12].copy_from_slice(&[0x81, 0x04]);
        let error = parse_read_response(&pdu, 1, 1).unwrap_err();
        assert_eq!(error, PduError::Refused(0x8104));
        assert!(error.to_string().contains("PUT/GET"), "{error}");
    }

    #[test]
    fn setup_and_writes() {
        assert_eq!(
            setup_request(1, 960),
            [
                0x32, 1, 0, 0, 0, 1, 0, 8, 0, 0, 0xF0, 0, 0, 1, 0, 1, 3, 0xC0
            ]
        );
        let answer = ack(1, &[0xF0, 0, 0, 1, 0, 1, 0, 240], &[]);
        assert_eq!(parse_setup_response(&answer, 1), Ok(240));
        let bit = write_request(
            2,
            &WriteItem::Bit {
                place: DB1,
                bit: 3,
                value: true,
            },
        );
        assert_eq!(
            &bit[12..24],
            &[0x12, 0x0A, 0x10, 1, 0, 1, 0, 1, 0x84, 0, 0, 35]
        );
        assert_eq!(&bit[24..], &[0, 3, 0, 1, 1]);
        let bytes = write_request(
            2,
            &WriteItem::Bytes {
                place: DB1,
                data: &[9, 8],
            },
        );
        assert_eq!(bytes.len(), WRITE_OVERHEAD + 2);
        assert_eq!(&bytes[24..], &[0, 4, 0, 16, 9, 8]);
        assert_eq!(
            parse_write_response(&ack(2, &[5, 1], &[0xFF]), 2),
            Ok(Ok(()))
        );
        assert_eq!(
            parse_write_response(&ack(2, &[5, 1], &[0x05]), 2),
            Ok(Err(5))
        );
    }
}
