//! Framing and decoding: bytes from the socket to [`Packet`]s.

use bytes::{Buf, Bytes, BytesMut};

use super::ReasonCode;
use super::packet::*;
use super::properties::{Allowed, Properties};
use super::wire::{self, DecodeError};

/// Splits one whole packet off the front of `buf` and decodes it.
///
/// Returns `Ok(None)` while `buf` holds less than a whole packet. A packet larger than `max_size`
/// is rejected as soon as its fixed header is readable, before its body is buffered.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = frame_len(buf)? else {
        return Ok(None);
    };
    let size = header_len + remaining;
    if size > max_size {
        return Err(DecodeError::TooLarge {
            size,
            max: max_size,
        });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    let byte1 = frame[0];
    frame.advance(header_len);
    decode_body(byte1, frame, protocol).map(Some)
}

/// Length of the fixed header and the remaining length, once both are readable.
fn frame_len(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((2 + i, remaining)));
        }
    }
    Err(DecodeError::Malformed(
        "remaining length longer than 4 bytes",
    ))
}

/// Decodes a packet whose fixed header byte is `byte1` and whose body (after the remaining
/// length) is `body`.
pub fn decode_body(byte1: u8, mut body: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
    let kind = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let v5 = protocol.is_v5();
    let expect_flags = |expected: u8| {
        if flags == expected {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "reserved fixed header flags are set",
            ))
        }
    };
    let packet = match kind {
        1 => {
            expect_flags(0)?;
            Packet::Connect(Box::new(decode_connect(&mut body)?))
        }
        2 => {
            expect_flags(0)?;
            Packet::ConnAck(decode_connack(&mut body, v5)?)
        }
        3 => Packet::Publish(decode_publish(flags, &mut body, v5)?),
        4 => {
            expect_flags(0)?;
            Packet::PubAck(decode_ack(&mut body, v5)?)
        }
        5 => {
            expect_flags(0)?;
            Packet::PubRec(decode_ack(&mut body, v5)?)
        }
        6 => {
            expect_flags(0b0010)?;
            Packet::PubRel(decode_ack(&mut body, v5)?)
        }
        7 => {
            expect_flags(0)?;
            Packet::PubComp(decode_ack(&mut body, v5)?)
        }
        8 => {
            expect_flags(0b0010)?;
            Packet::Subscribe(decode_subscribe(&mut body, v5)?)
        }
        9 => {
            expect_flags(0)?;
            Packet::SubAck(decode_suback(&mut body, v5, true)?)
        }
        10 => {
            expect_flags(0b0010)?;
            Packet::Unsubscribe(decode_unsubscribe(&mut body, v5)?)
        }
        11 => {
            expect_flags(0)?;
            Packet::UnsubAck(decode_suback(&mut body, v5, false)?)
        }
        12 => {
            expect_flags(0)?;
            Packet::PingReq
        }
        13 => {
            expect_flags(0)?;
            Packet::PingResp
        }
        14 => {
            expect_flags(0)?;
            Packet::Disconnect(decode_disconnect(&mut body, v5)?)
        }
        15 if v5 => {
            expect_flags(0)?;
            Packet::Auth(decode_auth(&mut body)?)
        }
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    };
    if body.has_remaining() {
        return Err(DecodeError::Malformed(
            "bytes left over after the packet's fields",
        ));
    }
    Ok(packet)
}

fn decode_connect(buf: &mut Bytes) -> Result<Connect, DecodeError> {
    let name = wire::read_binary(buf)?;
    let level = wire::read_u8(buf)?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp", 3) => Protocol::V31,
        (b"MQTT", other) | (b"MQIsdp", other) => {
            return Err(DecodeError::UnsupportedProtocol(other));
        }
        _ => return Err(DecodeError::Protocol("unknown protocol name")),
    };
    let flags = wire::read_u8(buf)?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved CONNECT flag is set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain set without a will",
        ));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
    if protocol != Protocol::V5 && has_password && !has_username {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let keep_alive = wire::read_u16(buf)?;
    let properties = if protocol.is_v5() {
        Properties::decode(buf, Allowed::CONNECT)?
    } else {
        Properties::default()
    };
    let client_id = wire::read_string(buf)?;
    let will = if will_flag {
        let properties = if protocol.is_v5() {
            Properties::decode(buf, Allowed::WILL)?
        } else {
            Properties::default()
        };
        let topic = wire::read_string(buf)?;
        if !crate::topic::is_valid_topic_name(&topic) {
            return Err(DecodeError::TopicNameInvalid(
                "will topic is empty or has wildcards",
            ));
        }
        let payload = wire::read_binary(buf)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = has_username.then(|| wire::read_string(buf)).transpose()?;
    let password = has_password.then(|| wire::read_binary(buf)).transpose()?;
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_connack(buf: &mut Bytes, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = wire::read_u8(buf)?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flags are set"));
    }
    let raw = wire::read_u8(buf)?;
    let (code, properties) = if v5 {
        (ReasonCode(raw), Properties::decode(buf, Allowed::CONNACK)?)
    } else if raw <= 5 {
        (ReasonCode::from_v311_connack(raw), Properties::default())
    } else {
        return Err(DecodeError::Malformed("reserved CONNACK return code"));
    };
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        code,
        properties,
    })
}

fn decode_publish(flags: u8, buf: &mut Bytes, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos =
        QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP flag set on a QoS 0 PUBLISH"));
    }
    let topic = wire::read_string(buf)?;
    if topic.contains(['+', '#']) {
        return Err(DecodeError::TopicNameInvalid(
            "PUBLISH topic contains a wildcard",
        ));
    }
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        let id = wire::read_u16(buf)?;
        if id == 0 {
            return Err(DecodeError::Protocol("packet identifier 0"));
        }
        id
    };
    let properties = if v5 {
        Properties::decode(buf, Allowed::PUBLISH)?
    } else {
        Properties::default()
    };
    // An empty topic is only valid in MQTT 5 with a topic alias; the connection resolves aliases.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::TopicNameInvalid("PUBLISH topic is empty"));
    }
    let payload = std::mem::take(buf);
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload,
    })
}

fn decode_ack(buf: &mut Bytes, v5: bool) -> Result<Ack, DecodeError> {
    let packet_id = wire::read_u16(buf)?;
    if packet_id == 0 {
        return Err(DecodeError::Protocol("packet identifier 0"));
    }
    let mut ack = Ack::new(packet_id, ReasonCode::SUCCESS);
    if v5 && buf.has_remaining() {
        ack.code = ReasonCode(wire::read_u8(buf)?);
        if buf.has_remaining() {
            ack.properties = Properties::decode(buf, Allowed::ACK)?;
        }
    }
    Ok(ack)
}

fn decode_subscribe(buf: &mut Bytes, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = wire::read_u16(buf)?;
    if packet_id == 0 {
        return Err(DecodeError::Protocol("packet identifier 0"));
    }
    let properties = if v5 {
        Properties::decode(buf, Allowed::SUBSCRIBE)?
    } else {
        Properties::default()
    };
    if properties.subscription_identifiers.len() > 1 {
        return Err(DecodeError::Protocol(
            "more than one subscription identifier",
        ));
    }
    let mut filters = Vec::new();
    while buf.has_remaining() {
        let filter = wire::read_string(buf)?;
        let options = wire::read_u8(buf)?;
        let reserved = if v5 { 0xC0 } else { 0xFC };
        if options & reserved != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits are set",
            ));
        }
        let qos =
            QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(DecodeError::Protocol("retain handling 3"));
        }
        filters.push((
            filter,
            SubscriptionOptions {
                qos,
                no_local: options & 0x04 != 0,
                retain_as_published: options & 0x08 != 0,
                retain_handling,
            },
        ));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

/// SUBACK (`is_suback`) or UNSUBACK. A 3.1.1 UNSUBACK has no return codes; a 3.1.1 SUBACK only
/// 0, 1, 2 and 0x80 (MQTT-3.9.3-2).
fn decode_suback(buf: &mut Bytes, v5: bool, is_suback: bool) -> Result<SubAck, DecodeError> {
    let packet_id = wire::read_u16(buf)?;
    let properties = if v5 {
        Properties::decode(buf, Allowed::ACK)?
    } else {
        Properties::default()
    };
    if !v5 && !is_suback {
        return Ok(SubAck {
            packet_id,
            properties,
            codes: Vec::new(),
        });
    }
    if !v5 && buf.iter().any(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(DecodeError::Malformed("reserved SUBACK return code"));
    }
    let codes = buf.iter().map(|&c| ReasonCode(c)).collect();
    buf.advance(buf.remaining());
    Ok(SubAck {
        packet_id,
        properties,
        codes,
    })
}

fn decode_unsubscribe(buf: &mut Bytes, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = wire::read_u16(buf)?;
    if packet_id == 0 {
        return Err(DecodeError::Protocol("packet identifier 0"));
    }
    let properties = if v5 {
        Properties::decode(buf, Allowed::UNSUBSCRIBE)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while buf.has_remaining() {
        filters.push(wire::read_string(buf)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn decode_disconnect(buf: &mut Bytes, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    if v5 && buf.has_remaining() {
        disconnect.code = ReasonCode(wire::read_u8(buf)?);
        if buf.has_remaining() {
            disconnect.properties = Properties::decode(buf, Allowed::DISCONNECT)?;
        }
    }
    Ok(disconnect)
}

fn decode_auth(buf: &mut Bytes) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    if buf.has_remaining() {
        auth.code = ReasonCode(wire::read_u8(buf)?);
        if buf.has_remaining() {
            auth.properties = Properties::decode(buf, Allowed::AUTH)?;
        }
    }
    Ok(auth)
}
