//! MQTT 5 reason codes, and their translation to the 3.1.1 return codes where 3.1.1 has any.

/// A reason code as MQTT 5 defines it. The same numbers are used internally for 3.1.1 sessions and
/// translated only when encoding (see [`ReasonCode::v311_connack`] and [`ReasonCode::v311_suback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    pub const DISCONNECT_WITH_WILL: ReasonCode = ReasonCode(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    pub const IMPLEMENTATION_SPECIFIC: ReasonCode = ReasonCode(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    pub const CLIENT_ID_NOT_VALID: ReasonCode = ReasonCode(0x85);
    pub const BAD_USERNAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    pub const PACKET_ID_IN_USE: ReasonCode = ReasonCode(0x91);
    pub const PACKET_ID_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The CONNACK return code a 3.1.1 client understands.
    pub fn v311_connack(self) -> u8 {
        match self {
            ReasonCode::SUCCESS => 0x00,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 0x01,
            ReasonCode::CLIENT_ID_NOT_VALID => 0x02,
            ReasonCode::BAD_USERNAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => 0x04,
            ReasonCode::NOT_AUTHORIZED => 0x05,
            _ => 0x03, // server unavailable
        }
    }

    /// The SUBACK return code a 3.1.1 client understands: the granted QoS or 0x80.
    pub fn v311_suback(self) -> u8 {
        if self.is_error() { 0x80 } else { self.0 }
    }

    /// Decodes a 3.1.1 CONNACK return code into its MQTT 5 equivalent.
    pub fn from_v311_connack(code: u8) -> ReasonCode {
        match code {
            0x00 => ReasonCode::SUCCESS,
            0x01 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            0x02 => ReasonCode::CLIENT_ID_NOT_VALID,
            0x03 => ReasonCode::SERVER_UNAVAILABLE,
            0x04 => ReasonCode::BAD_USERNAME_OR_PASSWORD,
            0x05 => ReasonCode::NOT_AUTHORIZED,
            other => ReasonCode(other),
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}
