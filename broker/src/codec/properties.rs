//! MQTT 5 properties: one struct for every packet type, with a per-packet mask of which
//! identifiers may appear (a property in the wrong packet is a protocol error, MQTT-2.2.2-2).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::wire::{self, DecodeError};

pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const AUTHENTICATION_METHOD: u8 = 0x15;
pub const AUTHENTICATION_DATA: u8 = 0x16;
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub const RESPONSE_INFORMATION: u8 = 0x1A;
pub const SERVER_REFERENCE: u8 = 0x1C;
pub const REASON_STRING: u8 = 0x1F;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_QOS: u8 = 0x24;
pub const RETAIN_AVAILABLE: u8 = 0x25;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// Which property identifiers a packet may carry, as a bit mask over the identifier.
#[derive(Debug, Clone, Copy)]
pub struct Allowed(u64);

const fn mask(ids: &[u8]) -> Allowed {
    let mut bits = 0u64;
    let mut i = 0;
    while i < ids.len() {
        bits |= 1 << ids[i];
        i += 1;
    }
    Allowed(bits)
}

impl Allowed {
    pub const CONNECT: Allowed = mask(&[
        SESSION_EXPIRY_INTERVAL,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        REQUEST_RESPONSE_INFORMATION,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
    ]);
    pub const WILL: Allowed = mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        WILL_DELAY_INTERVAL,
        USER_PROPERTY,
    ]);
    pub const CONNACK: Allowed = mask(&[
        SESSION_EXPIRY_INTERVAL,
        ASSIGNED_CLIENT_IDENTIFIER,
        SERVER_KEEP_ALIVE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        REASON_STRING,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        USER_PROPERTY,
        MAXIMUM_PACKET_SIZE,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
    ]);
    pub const PUBLISH: Allowed = mask(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        SUBSCRIPTION_IDENTIFIER,
        TOPIC_ALIAS,
        USER_PROPERTY,
    ]);
    pub const ACK: Allowed = mask(&[REASON_STRING, USER_PROPERTY]);
    pub const SUBSCRIBE: Allowed = mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
    pub const UNSUBSCRIBE: Allowed = mask(&[USER_PROPERTY]);
    pub const DISCONNECT: Allowed = mask(&[
        SESSION_EXPIRY_INTERVAL,
        SERVER_REFERENCE,
        REASON_STRING,
        USER_PROPERTY,
    ]);
    pub const AUTH: Allowed = mask(&[
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REASON_STRING,
        USER_PROPERTY,
    ]);

    fn contains(self, id: u8) -> bool {
        id < 64 && self.0 & (1 << id) != 0
    }
}

/// Every MQTT 5 property. A packet uses the subset its [`Allowed`] mask permits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub reason_string: Option<ByteString>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(ByteString, ByteString)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn byte_flag(buf: &mut Bytes, name: &'static str) -> Result<u8, DecodeError> {
    let value = wire::read_u8(buf)?;
    if value > 1 {
        return Err(DecodeError::Protocol(name));
    }
    Ok(value)
}

impl Properties {
    /// Reads the property length and the properties that follow it.
    pub fn decode(buf: &mut Bytes, allowed: Allowed) -> Result<Properties, DecodeError> {
        let len = wire::read_varint(buf)? as usize;
        if buf.remaining() < len {
            return Err(DecodeError::Malformed("property length exceeds packet"));
        }
        let mut props = buf.split_to(len);
        let mut p = Properties::default();
        while props.has_remaining() {
            let id = wire::read_varint(&mut props)?;
            let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property"))?;
            if !allowed.contains(id) {
                return Err(DecodeError::Protocol("property not allowed in this packet"));
            }
            let b = &mut props;
            match id {
                PAYLOAD_FORMAT_INDICATOR => set_once(
                    &mut p.payload_format_indicator,
                    byte_flag(b, "payload format indicator must be 0 or 1")?,
                )?,
                MESSAGE_EXPIRY_INTERVAL => {
                    set_once(&mut p.message_expiry_interval, wire::read_u32(b)?)?
                }
                CONTENT_TYPE => set_once(&mut p.content_type, wire::read_string(b)?)?,
                RESPONSE_TOPIC => {
                    let topic = wire::read_string(b)?;
                    if !crate::topic::is_valid_topic_name(&topic) {
                        return Err(DecodeError::Protocol("response topic contains wildcards"));
                    }
                    set_once(&mut p.response_topic, topic)?
                }
                CORRELATION_DATA => set_once(&mut p.correlation_data, wire::read_binary(b)?)?,
                SUBSCRIPTION_IDENTIFIER => {
                    let id = wire::read_varint(b)?;
                    if id == 0 {
                        return Err(DecodeError::Protocol("subscription identifier 0"));
                    }
                    p.subscription_identifiers.push(id);
                }
                SESSION_EXPIRY_INTERVAL => {
                    set_once(&mut p.session_expiry_interval, wire::read_u32(b)?)?
                }
                ASSIGNED_CLIENT_IDENTIFIER => {
                    set_once(&mut p.assigned_client_identifier, wire::read_string(b)?)?
                }
                SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, wire::read_u16(b)?)?,
                AUTHENTICATION_METHOD => {
                    set_once(&mut p.authentication_method, wire::read_string(b)?)?
                }
                AUTHENTICATION_DATA => set_once(&mut p.authentication_data, wire::read_binary(b)?)?,
                REQUEST_PROBLEM_INFORMATION => set_once(
                    &mut p.request_problem_information,
                    byte_flag(b, "request problem information must be 0 or 1")?,
                )?,
                WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, wire::read_u32(b)?)?,
                REQUEST_RESPONSE_INFORMATION => set_once(
                    &mut p.request_response_information,
                    byte_flag(b, "request response information must be 0 or 1")?,
                )?,
                RESPONSE_INFORMATION => {
                    set_once(&mut p.response_information, wire::read_string(b)?)?
                }
                SERVER_REFERENCE => set_once(&mut p.server_reference, wire::read_string(b)?)?,
                REASON_STRING => set_once(&mut p.reason_string, wire::read_string(b)?)?,
                RECEIVE_MAXIMUM => {
                    let value = wire::read_u16(b)?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("receive maximum 0"));
                    }
                    set_once(&mut p.receive_maximum, value)?
                }
                TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, wire::read_u16(b)?)?,
                TOPIC_ALIAS => set_once(&mut p.topic_alias, wire::read_u16(b)?)?,
                MAXIMUM_QOS => set_once(
                    &mut p.maximum_qos,
                    byte_flag(b, "maximum QoS must be 0 or 1")?,
                )?,
                RETAIN_AVAILABLE => {
                    set_once(&mut p.retain_available, byte_flag(b, "retain available")?)?
                }
                USER_PROPERTY => {
                    let key = wire::read_string(b)?;
                    let value = wire::read_string(b)?;
                    p.user_properties.push((key, value));
                }
                MAXIMUM_PACKET_SIZE => {
                    let value = wire::read_u32(b)?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("maximum packet size 0"));
                    }
                    set_once(&mut p.maximum_packet_size, value)?
                }
                WILDCARD_SUBSCRIPTION_AVAILABLE => set_once(
                    &mut p.wildcard_subscription_available,
                    byte_flag(b, "wildcard subscription available")?,
                )?,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_once(
                    &mut p.subscription_identifier_available,
                    byte_flag(b, "subscription identifier available")?,
                )?,
                SHARED_SUBSCRIPTION_AVAILABLE => set_once(
                    &mut p.shared_subscription_available,
                    byte_flag(b, "shared subscription available")?,
                )?,
                _ => return Err(DecodeError::Malformed("unknown property")),
            }
        }
        Ok(p)
    }

    /// Length in bytes of the encoded properties, without the length prefix.
    pub fn encoded_len(&self) -> usize {
        fn s(v: &Option<ByteString>) -> usize {
            v.as_ref().map_or(0, |v| 3 + v.len())
        }
        fn b(v: &Option<Bytes>) -> usize {
            v.as_ref().map_or(0, |v| 3 + v.len())
        }
        fn n<T>(v: &Option<T>, width: usize) -> usize {
            v.as_ref().map_or(0, |_| 1 + width)
        }
        n(&self.payload_format_indicator, 1)
            + n(&self.message_expiry_interval, 4)
            + s(&self.content_type)
            + s(&self.response_topic)
            + b(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|id| 1 + wire::varint_len(*id as usize))
                .sum::<usize>()
            + n(&self.session_expiry_interval, 4)
            + s(&self.assigned_client_identifier)
            + n(&self.server_keep_alive, 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(&self.request_problem_information, 1)
            + n(&self.will_delay_interval, 4)
            + n(&self.request_response_information, 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(&self.receive_maximum, 2)
            + n(&self.topic_alias_maximum, 2)
            + n(&self.topic_alias, 2)
            + n(&self.maximum_qos, 1)
            + n(&self.retain_available, 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + n(&self.maximum_packet_size, 4)
            + n(&self.wildcard_subscription_available, 1)
            + n(&self.subscription_identifier_available, 1)
            + n(&self.shared_subscription_available, 1)
    }

    /// Writes the length prefix and the properties.
    pub fn encode(&self, buf: &mut BytesMut) {
        wire::write_varint(buf, self.encoded_len());
        fn byte(buf: &mut BytesMut, id: u8, v: Option<u8>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        }
        fn two(buf: &mut BytesMut, id: u8, v: Option<u16>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        }
        fn four(buf: &mut BytesMut, id: u8, v: Option<u32>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        }
        fn string(buf: &mut BytesMut, id: u8, v: &Option<ByteString>) {
            if let Some(v) = v {
                buf.put_u8(id);
                wire::write_string(buf, v);
            }
        }
        fn binary(buf: &mut BytesMut, id: u8, v: &Option<Bytes>) {
            if let Some(v) = v {
                buf.put_u8(id);
                wire::write_binary(buf, v);
            }
        }
        byte(buf, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(buf, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        string(buf, CONTENT_TYPE, &self.content_type);
        string(buf, RESPONSE_TOPIC, &self.response_topic);
        binary(buf, CORRELATION_DATA, &self.correlation_data);
        for id in &self.subscription_identifiers {
            buf.put_u8(SUBSCRIPTION_IDENTIFIER);
            wire::write_varint(buf, *id as usize);
        }
        four(buf, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        string(
            buf,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        two(buf, SERVER_KEEP_ALIVE, self.server_keep_alive);
        string(buf, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(buf, AUTHENTICATION_DATA, &self.authentication_data);
        byte(
            buf,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        four(buf, WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(
            buf,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        string(buf, RESPONSE_INFORMATION, &self.response_information);
        string(buf, SERVER_REFERENCE, &self.server_reference);
        string(buf, REASON_STRING, &self.reason_string);
        two(buf, RECEIVE_MAXIMUM, self.receive_maximum);
        two(buf, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        two(buf, TOPIC_ALIAS, self.topic_alias);
        byte(buf, MAXIMUM_QOS, self.maximum_qos);
        byte(buf, RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            buf.put_u8(USER_PROPERTY);
            wire::write_string(buf, k);
            wire::write_string(buf, v);
        }
        four(buf, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        byte(
            buf,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        byte(
            buf,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        byte(
            buf,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }

    pub fn is_empty(&self) -> bool {
        self.encoded_len() == 0
    }
}
