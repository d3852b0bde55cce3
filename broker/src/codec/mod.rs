//! The MQTT 3.1.1 / 5.0 packet codec. Pure functions over byte buffers: no I/O, no allocation
//! beyond the decoded values (strings and payloads are slices of the receive buffer).

mod decode;
mod encode;
mod packet;
mod properties;
mod reason;
mod wire;

pub use decode::{decode, decode_body};
pub use encode::{PublishRef, encode, encode_publish, publish_size};
pub use packet::*;
pub use properties::{Allowed, Properties};
pub use reason::ReasonCode;
pub use wire::DecodeError;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    fn roundtrip(packet: Packet, protocol: Protocol) {
        let mut buf = BytesMut::new();
        encode(&packet, protocol, &mut buf);
        let decoded = decode(&mut buf, protocol, 1 << 20)
            .expect("decodes")
            .expect("whole packet");
        assert_eq!(decoded, packet, "{protocol:?}");
        assert!(buf.is_empty());
    }

    fn v5_props() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(30),
            content_type: Some("application/json".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x01\x02")),
            user_properties: vec![("site".into(), "berlin".into())],
            subscription_identifiers: vec![7, 300_000],
            topic_alias: Some(3),
            ..Properties::default()
        }
    }

    #[test]
    fn every_packet_roundtrips_in_both_versions() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let v5 = protocol.is_v5();
            let props = if v5 {
                v5_props()
            } else {
                Properties::default()
            };
            let connect_props = if v5 {
                Properties {
                    session_expiry_interval: Some(60),
                    receive_maximum: Some(10),
                    topic_alias_maximum: Some(5),
                    maximum_packet_size: Some(4096),
                    ..Properties::default()
                }
            } else {
                Properties::default()
            };
            let will_props = if v5 {
                Properties {
                    will_delay_interval: Some(5),
                    ..Properties::default()
                }
            } else {
                Properties::default()
            };
            let packets = vec![
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start: true,
                    keep_alive: 30,
                    properties: connect_props,
                    client_id: "plc-7".into(),
                    will: Some(Will {
                        topic: "plc/7/state".into(),
                        payload: Bytes::from_static(b"offline"),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: will_props,
                    }),
                    username: Some("line1".into()),
                    password: Some(Bytes::from_static(b"secret")),
                })),
                Packet::ConnAck(ConnAck {
                    session_present: true,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }),
                Packet::Publish(Publish {
                    dup: true,
                    qos: QoS::ExactlyOnce,
                    retain: true,
                    topic: "a/b".into(),
                    packet_id: 42,
                    properties: props.clone(),
                    payload: Bytes::from_static(b"{\"value\":1}"),
                }),
                Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtMostOnce,
                    retain: false,
                    topic: "a".into(),
                    packet_id: 0,
                    properties: Properties::default(),
                    payload: Bytes::new(),
                }),
                Packet::PubAck(Ack::new(1, ReasonCode::SUCCESS)),
                Packet::PubRec(Ack::new(2, ReasonCode::SUCCESS)),
                Packet::PubRel(Ack::new(3, ReasonCode::SUCCESS)),
                Packet::PubComp(Ack::new(4, ReasonCode::SUCCESS)),
                Packet::Subscribe(Subscribe {
                    packet_id: 5,
                    properties: Properties::default(),
                    filters: vec![
                        (
                            "a/+/c".into(),
                            SubscriptionOptions {
                                qos: QoS::AtLeastOnce,
                                ..Default::default()
                            },
                        ),
                        ("#".into(), SubscriptionOptions::default()),
                    ],
                }),
                Packet::SubAck(SubAck {
                    packet_id: 5,
                    properties: Properties::default(),
                    codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::SUCCESS],
                }),
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: 6,
                    properties: Properties::default(),
                    filters: vec!["a/+/c".into()],
                }),
                Packet::PingReq,
                Packet::PingResp,
                Packet::Disconnect(Disconnect::default()),
            ];
            for packet in packets {
                roundtrip(packet, protocol);
            }
        }
    }

    #[test]
    fn v5_only_fields_roundtrip() {
        let p = Protocol::V5;
        roundtrip(Packet::PubAck(Ack::new(9, ReasonCode::NOT_AUTHORIZED)), p);
        roundtrip(
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties {
                    subscription_identifiers: vec![12],
                    ..Properties::default()
                },
                filters: vec![(
                    "x/#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
                )],
            }),
            p,
        );
        roundtrip(
            Packet::UnsubAck(SubAck {
                packet_id: 2,
                properties: Properties::default(),
                codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
            }),
            p,
        );
        roundtrip(
            Packet::Disconnect(Disconnect {
                code: ReasonCode::SESSION_TAKEN_OVER,
                properties: Properties {
                    reason_string: Some("another client took over".into()),
                    ..Properties::default()
                },
            }),
            p,
        );
        roundtrip(Packet::Auth(Auth::default()), p);
    }

    #[test]
    fn partial_input_waits_for_more_bytes() {
        let mut full = BytesMut::new();
        encode(&Packet::PingReq, Protocol::V311, &mut full);
        let mut partial = BytesMut::from(&full[..1]);
        assert_eq!(decode(&mut partial, Protocol::V311, 100), Ok(None));
    }

    /// Each row: bytes on the wire, and the reason code the broker must answer with.
    #[test]
    fn malformed_packets_are_rejected_with_the_right_reason() {
        let cases: &[(&[u8], Protocol, ReasonCode)] = &[
            // Remaining length with five continuation bytes.
            (
                &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // PINGREQ with flags set.
            (&[0xC1, 0x00], Protocol::V311, ReasonCode::MALFORMED_PACKET),
            // SUBSCRIBE with flags 0000 instead of 0010.
            (
                &[0x80, 0x06, 0, 1, 0, 1, b'a', 0],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // PUBLISH QoS 3.
            (
                &[0x36, 0x05, 0, 1, b'a', 0, 1],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // PUBLISH with a wildcard in its topic.
            (
                &[0x30, 0x03, 0, 1, b'#'],
                Protocol::V311,
                ReasonCode::TOPIC_NAME_INVALID,
            ),
            // PUBLISH with invalid UTF-8 in its topic.
            (
                &[0x30, 0x04, 0, 2, 0xC3, 0x28],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // PUBLISH topic length larger than the packet.
            (
                &[0x30, 0x03, 0, 9, b'a'],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // PUBLISH QoS 1 with packet id 0.
            (
                &[0x32, 0x05, 0, 1, b'a', 0, 0],
                Protocol::V311,
                ReasonCode::PROTOCOL_ERROR,
            ),
            // DUP on QoS 0.
            (
                &[0x38, 0x03, 0, 1, b'a'],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // Reserved packet type 0.
            (&[0x00, 0x00], Protocol::V311, ReasonCode::MALFORMED_PACKET),
            // AUTH is not a 3.1.1 packet.
            (&[0xF0, 0x00], Protocol::V311, ReasonCode::MALFORMED_PACKET),
            // SUBSCRIBE with no filters.
            (
                &[0x82, 0x02, 0, 1],
                Protocol::V311,
                ReasonCode::PROTOCOL_ERROR,
            ),
            // 3.1.1 subscription options with reserved bits.
            (
                &[0x82, 0x06, 0, 1, 0, 1, b'a', 0x04],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
            // MQTT 5 PUBLISH with a property that belongs to CONNECT (session expiry).
            (
                &[0x30, 0x09, 0, 1, b'a', 5, 0x11, 0, 0, 0, 1],
                Protocol::V5,
                ReasonCode::PROTOCOL_ERROR,
            ),
            // MQTT 5 PUBLISH with topic alias given twice.
            (
                &[0x30, 0x0A, 0, 1, b'a', 6, 0x23, 0, 1, 0x23, 0, 2],
                Protocol::V5,
                ReasonCode::PROTOCOL_ERROR,
            ),
            // MQTT 5 PUBLISH with an empty topic and no alias.
            (
                &[0x30, 0x03, 0, 0, 0],
                Protocol::V5,
                ReasonCode::TOPIC_NAME_INVALID,
            ),
            // CONNECT with an unknown protocol level.
            (
                &[0x10, 0x0A, 0, 4, b'M', b'Q', b'T', b'T', 9, 0, 0, 0],
                Protocol::V311,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ),
            // 3.1.1 DISCONNECT with a body.
            (
                &[0xE0, 0x01, 0],
                Protocol::V311,
                ReasonCode::MALFORMED_PACKET,
            ),
        ];
        for (bytes, protocol, expected) in cases {
            let mut buf = BytesMut::from(*bytes);
            let err =
                decode(&mut buf, *protocol, 1 << 20).expect_err(&format!("{bytes:02X?} must fail"));
            assert_eq!(err.reason_code(), *expected, "{bytes:02X?}: {err}");
        }
    }

    #[test]
    fn oversize_packet_is_rejected_before_its_body_arrives() {
        let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0x03][..]);
        let err = decode(&mut buf, Protocol::V311, 1024).expect_err("too large");
        assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    }
}
