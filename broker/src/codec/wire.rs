//! Primitive MQTT data types: integers, variable byte integers, UTF-8 strings and binary data.
//! Readers take a `Bytes` so strings and payloads are zero-copy slices of the receive buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::ReasonCode;

/// Why a packet could not be decoded. Each variant maps to the reason code the broker sends
/// (MQTT 5) before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocol(u8),
    #[error("topic name is invalid: {0}")]
    TopicNameInvalid(&'static str),
}

impl DecodeError {
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
        }
    }
}

const TRUNCATED: DecodeError = DecodeError::Malformed("packet shorter than its fields");

pub fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.remaining() < 1 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u8())
}

pub fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u16())
}

pub fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.remaining() < 4 {
        return Err(TRUNCATED);
    }
    Ok(buf.get_u32())
}

/// Variable byte integer (1 to 4 bytes, at most 268,435,455).
pub fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let byte = read_u8(buf)?;
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::Malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

pub fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = read_u16(buf)? as usize;
    if buf.remaining() < len {
        return Err(TRUNCATED);
    }
    Ok(buf.split_to(len))
}

/// UTF-8 encoded string; invalid UTF-8 and U+0000 are malformed (MQTT-1.5.4-1, MQTT-1.5.4-2).
pub fn read_string(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
    let raw = read_binary(buf)?;
    if raw.contains(&0) {
        return Err(DecodeError::Malformed("string contains U+0000"));
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
}

pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub fn write_varint(buf: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

pub fn write_binary(buf: &mut BytesMut, value: &[u8]) {
    // Callers validate lengths at decode time or build values from decoded packets; a longer value
    // is truncated rather than producing a corrupt frame.
    let len = value.len().min(u16::MAX as usize);
    buf.put_u16(len as u16);
    buf.put_slice(&value[..len]);
}

pub fn write_string(buf: &mut BytesMut, value: &str) {
    write_binary(buf, value.as_bytes());
}
