//! What flows through the router: an application message and its delivery to one subscriber.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::time::Instant;

use crate::codec::{Properties, QoS};

/// Identifies a session inside the router (an index into its session table).
pub type SessionKey = usize;

/// An application message as published, shared by every subscriber it is delivered to.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties that travel with the message to subscribers (MQTT-3.3.2-4 and following).
    pub properties: Option<Box<MessageProperties>>,
    /// From the message expiry interval; an expired message is not delivered.
    pub expires_at: Option<Instant>,
    /// The session that published it, for the no-local subscription option.
    pub origin: Option<SessionKey>,
}

impl Message {
    /// A message with no MQTT 5 properties and no expiry, as in-process components publish them.
    pub fn new(
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: None,
            expires_at: None,
            origin: None,
        }
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Like [`Message::is_expired`], reading the clock only for messages that can expire.
    pub fn is_expired_now(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
    }

    /// Seconds left before expiry, rounded up, for the property sent to the subscriber.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// The MQTT 5 properties the server forwards unaltered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(ByteString, ByteString)>,
}

impl MessageProperties {
    /// Takes the forwarded properties out of a received PUBLISH or will; `None` when there are none.
    pub fn from_properties(p: &mut Properties) -> Option<Box<MessageProperties>> {
        let props = MessageProperties {
            payload_format_indicator: p.payload_format_indicator.take(),
            content_type: p.content_type.take(),
            response_topic: p.response_topic.take(),
            correlation_data: p.correlation_data.take(),
            user_properties: std::mem::take(&mut p.user_properties),
        };
        (props != MessageProperties::default()).then(|| Box::new(props))
    }

    pub fn write_to(&self, p: &mut Properties) {
        p.payload_format_indicator = self.payload_format_indicator;
        p.content_type.clone_from(&self.content_type);
        p.response_topic.clone_from(&self.response_topic);
        p.correlation_data.clone_from(&self.correlation_data);
        p.user_properties.clone_from(&self.user_properties);
    }
}

/// One message on its way to one session, with the QoS and flags of the matching subscription.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}
