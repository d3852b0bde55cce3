//! Messages to the client: packet ids, the in-flight window, the backlog, topic aliases, expiry and
//! the client's maximum packet size.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Connection;
use bytestring::ByteString;

use crate::codec::{self, Ack, Packet, Properties, PublishRef, QoS, ReasonCode};
use crate::message::Delivery;
use crate::router::Inflight;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Sends a delivery now, or keeps it for when the in-flight window has room. QoS 0 needs no
    /// window and goes out at once.
    pub(super) fn send_or_queue(&mut self, delivery: Delivery) {
        if delivery.qos != QoS::AtMostOnce
            && (self.inflight_len() >= usize::from(self.send_quota) || !self.backlog_is_empty())
        {
            self.traffic().backlog.push_back(delivery);
            return;
        }
        self.transmit(delivery);
    }

    /// Sends from the backlog while the in-flight window has room.
    pub(super) fn drain_backlog(&mut self) {
        while self.inflight_len() < usize::from(self.send_quota) {
            let Some(delivery) = self.traffic.as_mut().and_then(|t| t.backlog.pop_front()) else {
                break;
            };
            self.transmit(delivery);
        }
    }

    /// On a resumed session, unacknowledged messages go out again first, with DUP set, and
    /// released QoS 2 messages get their PUBREL again (MQTT-4.4.0-1).
    pub(super) fn resend_inflight(&mut self, inflight: Vec<(u16, Inflight)>) {
        for (id, entry) in inflight {
            match entry {
                Inflight::Publish(delivery) => {
                    if !self.may_receive(&delivery) || !self.encode_delivery(&delivery, id, true) {
                        continue;
                    }
                    self.track(id, Inflight::Publish(delivery));
                }
                Inflight::Released => {
                    self.write_packet(&Packet::PubRel(Ack::new(id, ReasonCode::SUCCESS)));
                    self.track(id, Inflight::Released);
                }
            }
        }
    }

    fn track(&mut self, id: u16, entry: Inflight) {
        let traffic = self.traffic();
        traffic.send_seq += 1;
        traffic.inflight.insert(id, (traffic.send_seq, entry));
    }

    /// First transmission of a delivery (redeliveries go through `resend_inflight`).
    fn transmit(&mut self, delivery: Delivery) {
        if delivery.message.is_expired_now() || !self.may_receive(&delivery) {
            return;
        }
        if delivery.qos == QoS::AtMostOnce {
            self.encode_delivery(&delivery, 0, false);
            return;
        }
        let id = self.allocate_packet_id();
        if self.encode_delivery(&delivery, id, false) {
            self.track(id, Inflight::Publish(delivery));
        }
    }

    /// Every delivery is checked against the receiver's current permissions, not only the
    /// SUBSCRIBE that made it: a permission taken away (or a session queued for someone else)
    /// stops the messages at once. Denied deliveries are dropped and counted.
    fn may_receive(&mut self, delivery: &Delivery) -> bool {
        if self.receives_everything {
            return true;
        }
        let allowed = self
            .ctx
            .auth
            .authorize_receive(&self.principal, &delivery.message.topic);
        if !allowed {
            self.traffic().tally.deliveries_denied += 1;
        }
        allowed
    }

    fn allocate_packet_id(&mut self) -> u16 {
        // The window is far smaller than the id space, so a free id is always near.
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self
                .traffic
                .as_ref()
                .is_some_and(|t| t.inflight.contains_key(&id))
            {
                return id;
            }
        }
    }

    /// Writes the PUBLISH; false when it was dropped for exceeding the client's maximum packet
    /// size (MQTT-3.1.2-25: the server acts as if it had been sent).
    fn encode_delivery(&mut self, delivery: &Delivery, packet_id: u16, dup: bool) -> bool {
        let message = &delivery.message;
        let v5 = self.protocol.is_v5();
        let mut properties = Properties::default();
        if v5 {
            if let Some(props) = &message.properties {
                props.write_to(&mut properties);
            }
            if message.expires_at.is_some() {
                properties.message_expiry_interval = message.remaining_expiry(Instant::now());
            }
            properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
        }
        // The alias goes into the size check (a new one adds 3 bytes) but is only recorded once
        // the message is really sent: the client must see every alias binding.
        let alias = match v5 && self.client_topic_alias_maximum > 0 {
            true => self.topic_alias(&message.topic),
            false => None,
        };
        properties.topic_alias = alias.map(|(alias, _)| alias);
        let publish = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: if matches!(alias, Some((_, false))) {
                ""
            } else {
                &message.topic
            },
            packet_id,
            properties: &properties,
            payload: &message.payload,
        };
        let too_large = codec::publish_size(publish, v5) > self.client_max_packet_size as usize;
        let traffic = self.traffic();
        if too_large {
            traffic.tally.messages_dropped += 1;
            return false;
        }
        if let Some((alias, true)) = alias {
            traffic.aliases_out.insert(message.topic.clone(), alias);
        }
        codec::encode_publish(publish, v5, &mut traffic.wbuf);
        traffic.tally.messages_sent += 1;
        true
    }

    /// The alias for `topic` and whether it is new (then the topic is sent along to bind it).
    /// Aliases are handed out while the client allows more; later topics go without one.
    fn topic_alias(&self, topic: &ByteString) -> Option<(u16, bool)> {
        let bound = self.traffic.as_ref().map_or(0, |t| t.aliases_out.len());
        if let Some(&alias) = self.traffic.as_ref().and_then(|t| t.aliases_out.get(topic)) {
            return Some((alias, false));
        }
        if bound >= usize::from(self.client_topic_alias_maximum) {
            return None;
        }
        Some((bound as u16 + 1, true))
    }
}
