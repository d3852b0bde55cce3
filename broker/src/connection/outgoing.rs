//! Messages to the client: packet ids, the in-flight window, the backlog, topic aliases, expiry and
//! the client's maximum packet size.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Connection;
use crate::codec::{self, Ack, Packet, Properties, Publish, QoS, ReasonCode};
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
            && (self.inflight.len() >= self.send_quota || !self.backlog.is_empty())
        {
            self.backlog.push_back(delivery);
            return;
        }
        self.transmit(delivery);
    }

    /// Sends from the backlog while the in-flight window has room.
    pub(super) fn drain_backlog(&mut self) {
        while self.inflight.len() < self.send_quota {
            let Some(delivery) = self.backlog.pop_front() else {
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
                    if !self.encode_delivery(&delivery, id, true) {
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
        self.send_seq += 1;
        self.inflight.insert(id, (self.send_seq, entry));
    }

    /// First transmission of a delivery (redeliveries go through `resend_inflight`).
    fn transmit(&mut self, delivery: Delivery) {
        if delivery.message.is_expired(Instant::now()) {
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

    fn allocate_packet_id(&mut self) -> u16 {
        // The window is far smaller than the id space, so a free id is always near.
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Writes the PUBLISH; false when it was dropped for exceeding the client's maximum packet
    /// size (MQTT-3.1.2-25: the server acts as if it had been sent).
    fn encode_delivery(&mut self, delivery: &Delivery, packet_id: u16, dup: bool) -> bool {
        let message = &delivery.message;
        let v5 = self.protocol.is_v5();
        let mut publish = Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id,
            properties: Properties::default(),
            payload: message.payload.clone(),
        };
        if v5 {
            if let Some(props) = &message.properties {
                props.write_to(&mut publish.properties);
            }
            publish.properties.message_expiry_interval = message.remaining_expiry(Instant::now());
            publish
                .properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
        }
        let size = codec::publish_size(&publish, v5);
        if size > self.client_max_packet_size {
            self.tally.messages_dropped += 1;
            return false;
        }
        if v5 && self.client_topic_alias_maximum > 0 {
            self.apply_topic_alias(&mut publish);
        }
        codec::encode_publish(&publish, v5, &mut self.wbuf);
        self.tally.messages_sent += 1;
        true
    }

    /// Gives topics aliases while the client allows more; a known topic is then sent empty.
    fn apply_topic_alias(&mut self, publish: &mut Publish) {
        if let Some(&alias) = self.aliases_out.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = Default::default();
        } else if self.aliases_out.len() < usize::from(self.client_topic_alias_maximum) {
            let alias = self.aliases_out.len() as u16 + 1;
            self.aliases_out.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }
}
