//! Encoding: [`Packet`]s to bytes. 3.1.1 encodings drop properties and translate reason codes.

use bytes::{BufMut, BytesMut};

use super::packet::*;
use super::wire;

/// Appends the encoding of `packet` to `buf`.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol.is_v5();
    match packet {
        Packet::Connect(connect) => encode_connect(connect, buf),
        Packet::ConnAck(ack) => {
            let props = v5.then_some(&ack.properties);
            let len = 2 + props_len(props);
            header(buf, 0x20, len);
            buf.put_u8(u8::from(ack.session_present));
            buf.put_u8(if v5 {
                ack.code.0
            } else {
                ack.code.v311_connack()
            });
            if let Some(p) = props {
                p.encode(buf);
            }
        }
        Packet::Publish(publish) => encode_publish(publish.into(), v5, buf),
        Packet::PubAck(ack) => encode_ack(0x40, ack, v5, buf),
        Packet::PubRec(ack) => encode_ack(0x50, ack, v5, buf),
        Packet::PubRel(ack) => encode_ack(0x62, ack, v5, buf),
        Packet::PubComp(ack) => encode_ack(0x70, ack, v5, buf),
        Packet::Subscribe(sub) => {
            let props = v5.then_some(&sub.properties);
            let len =
                2 + props_len(props) + sub.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>();
            header(buf, 0x82, len);
            buf.put_u16(sub.packet_id);
            if let Some(p) = props {
                p.encode(buf);
            }
            for (filter, o) in &sub.filters {
                wire::write_string(buf, filter);
                let mut options = o.qos as u8;
                if v5 {
                    options |= u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling & 0x03) << 4;
                }
                buf.put_u8(options);
            }
        }
        Packet::SubAck(ack) => encode_suback(0x90, ack, v5, buf),
        Packet::Unsubscribe(unsub) => {
            let props = v5.then_some(&unsub.properties);
            let len =
                2 + props_len(props) + unsub.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
            header(buf, 0xA2, len);
            buf.put_u16(unsub.packet_id);
            if let Some(p) = props {
                p.encode(buf);
            }
            for filter in &unsub.filters {
                wire::write_string(buf, filter);
            }
        }
        Packet::UnsubAck(ack) => encode_suback(0xB0, ack, v5, buf),
        Packet::PingReq => buf.put_slice(&[0xC0, 0]),
        Packet::PingResp => buf.put_slice(&[0xD0, 0]),
        Packet::Disconnect(d) => {
            if !v5 || (d.code.0 == 0 && d.properties.is_empty()) {
                buf.put_slice(&[0xE0, 0]);
            } else {
                let len = 1 + props_len(Some(&d.properties));
                header(buf, 0xE0, len);
                buf.put_u8(d.code.0);
                d.properties.encode(buf);
            }
        }
        Packet::Auth(a) => {
            let len = 1 + props_len(Some(&a.properties));
            header(buf, 0xF0, len);
            buf.put_u8(a.code.0);
            a.properties.encode(buf);
        }
    }
}

/// A PUBLISH to encode, borrowing its topic and payload, so a message delivered to many clients
/// is written into each write buffer without touching its reference counts.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: u16,
    pub properties: &'a super::Properties,
    pub payload: &'a [u8],
}

impl<'a> From<&'a Publish> for PublishRef<'a> {
    fn from(p: &'a Publish) -> PublishRef<'a> {
        PublishRef {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            properties: &p.properties,
            payload: &p.payload,
        }
    }
}

/// Size in bytes of the whole encoded PUBLISH, used to honour a client's maximum packet size.
pub fn publish_size(publish: PublishRef<'_>, v5: bool) -> usize {
    let len = publish_remaining_len(publish, v5);
    1 + wire::varint_len(len) + len
}

fn publish_remaining_len(publish: PublishRef<'_>, v5: bool) -> usize {
    let id_len = if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + publish.topic.len()
        + id_len
        + props_len(v5.then_some(publish.properties))
        + publish.payload.len()
}

pub fn encode_publish(publish: PublishRef<'_>, v5: bool, buf: &mut BytesMut) {
    let len = publish_remaining_len(publish, v5);
    let byte1 =
        0x30 | u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain);
    header(buf, byte1, len);
    wire::write_string(buf, publish.topic);
    if publish.qos != QoS::AtMostOnce {
        buf.put_u16(publish.packet_id);
    }
    if v5 {
        publish.properties.encode(buf);
    }
    buf.put_slice(publish.payload);
}

fn encode_connect(c: &Connect, buf: &mut BytesMut) {
    let v5 = c.protocol.is_v5();
    let name: &[u8] = if c.protocol == Protocol::V31 {
        b"MQIsdp"
    } else {
        b"MQTT"
    };
    let mut len =
        2 + name.len() + 1 + 1 + 2 + props_len(v5.then_some(&c.properties)) + 2 + c.client_id.len();
    if let Some(w) = &c.will {
        len += props_len(v5.then_some(&w.properties)) + 2 + w.topic.len() + 2 + w.payload.len();
    }
    len += c.username.as_ref().map_or(0, |u| 2 + u.len());
    len += c.password.as_ref().map_or(0, |p| 2 + p.len());
    header(buf, 0x10, len);
    wire::write_binary(buf, name);
    buf.put_u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        c.properties.encode(buf);
    }
    wire::write_string(buf, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            w.properties.encode(buf);
        }
        wire::write_string(buf, &w.topic);
        wire::write_binary(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        wire::write_string(buf, u);
    }
    if let Some(p) = &c.password {
        wire::write_binary(buf, p);
    }
}

fn encode_ack(byte1: u8, ack: &Ack, v5: bool, buf: &mut BytesMut) {
    // MQTT 5 allows omitting a success reason code without properties (MQTT-3.4.2.1).
    if !v5 || (ack.code.0 == 0 && ack.properties.is_empty()) {
        header(buf, byte1, 2);
        buf.put_u16(ack.packet_id);
        return;
    }
    let len = 3 + props_len(Some(&ack.properties));
    header(buf, byte1, len);
    buf.put_u16(ack.packet_id);
    buf.put_u8(ack.code.0);
    ack.properties.encode(buf);
}

fn encode_suback(byte1: u8, ack: &SubAck, v5: bool, buf: &mut BytesMut) {
    // A 3.1.1 UNSUBACK carries no return codes at all.
    let codes = if !v5 && byte1 == 0xB0 {
        0
    } else {
        ack.codes.len()
    };
    let len = 2 + props_len(v5.then_some(&ack.properties)) + codes;
    header(buf, byte1, len);
    buf.put_u16(ack.packet_id);
    if v5 {
        ack.properties.encode(buf);
        buf.extend(ack.codes.iter().map(|c| c.0));
    } else if codes > 0 {
        buf.extend(ack.codes.iter().map(|c| c.v311_suback()));
    }
}

fn props_len(props: Option<&super::Properties>) -> usize {
    props.map_or(0, |p| {
        let len = p.encoded_len();
        wire::varint_len(len) + len
    })
}

fn header(buf: &mut BytesMut, byte1: u8, remaining: usize) {
    buf.reserve(5 + remaining);
    buf.put_u8(byte1);
    wire::write_varint(buf, remaining);
}
