//! Packets from the client: PUBLISH and its QoS flows, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT.

use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Connection, End};
use crate::codec::{
    Ack, Packet, Properties, Publish, QoS, ReasonCode, SubAck, Subscribe, Unsubscribe,
};
use crate::message::{Message, MessageProperties};
use crate::metrics::Metrics;
use crate::router::{Event, Inflight, SubscribeRequest, UnsubscribeRequest};
use crate::topic;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub(super) async fn handle_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubAck(ack) => {
                let inflight = &mut self.traffic().inflight;
                if let Some((_, Inflight::Publish(d))) = inflight.get(&ack.packet_id)
                    && d.qos == QoS::AtLeastOnce
                {
                    inflight.remove(&ack.packet_id);
                    self.drain_backlog();
                }
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.on_pubrec(ack);
                Ok(())
            }
            Packet::PubRel(ack) => {
                let code = if self.traffic().qos2_incoming.remove(&ack.packet_id) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_ID_NOT_FOUND
                };
                self.write_packet(&Packet::PubComp(Ack::new(ack.packet_id, code)));
                Ok(())
            }
            Packet::PubComp(ack) => {
                let inflight = &mut self.traffic().inflight;
                if let Some((_, Inflight::Released)) = inflight.get(&ack.packet_id) {
                    inflight.remove(&ack.packet_id);
                    self.drain_backlog();
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => Box::pin(self.on_subscribe(subscribe)).await,
            Packet::Unsubscribe(unsubscribe) => Box::pin(self.on_unsubscribe(unsubscribe)).await,
            Packet::PingReq => {
                self.write_packet(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    // A session that ends with the connection cannot be extended at the end
                    // (MQTT-3.14.2-2).
                    if self.session_expiry == 0 && expiry != 0 {
                        return Err(End::Server(ReasonCode::PROTOCOL_ERROR));
                    }
                    self.session_expiry = expiry;
                }
                Err(End::ClientDisconnect {
                    with_will: disconnect.code == ReasonCode::DISCONNECT_WITH_WILL,
                })
            }
            // A second CONNECT, AUTH without an authentication method, or a server-only packet.
            _ => Err(End::Server(ReasonCode::PROTOCOL_ERROR)),
        }
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), End> {
        self.traffic().tally.messages_received += 1;
        self.resolve_topic_alias(&mut publish)?;
        let id = publish.packet_id;
        if publish.qos == QoS::ExactlyOnce && self.traffic().qos2_incoming.contains(&id) {
            // A resend of a message already accepted: acknowledge again, route once.
            self.write_packet(&Packet::PubRec(Ack::new(id, ReasonCode::SUCCESS)));
            return Ok(());
        }
        if publish.qos == QoS::ExactlyOnce
            && self.traffic().qos2_incoming.len() >= usize::from(self.ctx.config.receive_maximum)
        {
            return Err(End::Server(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED));
        }
        let mut code = ReasonCode::SUCCESS;
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            code = ReasonCode::PAYLOAD_FORMAT_INVALID;
        } else if !self
            .ctx
            .auth
            .authorize_publish(&self.principal, &publish.topic)
        {
            self.traffic().tally.publishes_denied += 1;
            code = ReasonCode::NOT_AUTHORIZED;
        }
        // 3.1.1 has no way to say no: the message is acknowledged and dropped, as Mosquitto does.
        let ack_code = if self.protocol.is_v5() {
            code
        } else {
            ReasonCode::SUCCESS
        };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write_packet(&Packet::PubAck(Ack::new(id, ack_code))),
            QoS::ExactlyOnce => {
                self.write_packet(&Packet::PubRec(Ack::new(id, ack_code)));
                if !ack_code.is_error() {
                    self.traffic().qos2_incoming.insert(id);
                }
            }
        }
        if code.is_error() {
            return Ok(());
        }
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let properties = if self.protocol.is_v5() {
            MessageProperties::from_properties(&mut publish.properties)
        } else {
            None
        };
        let session = self.session;
        self.traffic().accepted.push(Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at,
            origin: Some(session),
        }));
        Ok(())
    }

    /// Applies an MQTT 5 topic alias: a topic with an alias (re)binds it, an empty topic uses it.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), End> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.ctx.config.topic_alias_maximum {
            return Err(End::Server(ReasonCode::TOPIC_ALIAS_INVALID));
        }
        let aliases = &mut self.traffic().aliases_in;
        if publish.topic.is_empty() {
            match aliases.get(&alias) {
                Some(topic) => publish.topic = topic.clone(),
                None => return Err(End::Server(ReasonCode::PROTOCOL_ERROR)),
            }
        } else {
            aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn on_pubrec(&mut self, ack: Ack) {
        let id = ack.packet_id;
        let inflight = &mut self.traffic().inflight;
        let pubrel_code = match inflight.get_mut(&id) {
            Some((_, entry @ Inflight::Publish(_))) => {
                let is_qos2 = matches!(entry, Inflight::Publish(d) if d.qos == QoS::ExactlyOnce);
                if !is_qos2 {
                    return;
                }
                if ack.code.is_error() {
                    // The client refused the message; the flow ends here (MQTT-4.3.3).
                    inflight.remove(&id);
                    self.drain_backlog();
                    return;
                }
                *entry = Inflight::Released;
                ReasonCode::SUCCESS
            }
            Some((_, Inflight::Released)) => ReasonCode::SUCCESS,
            None => ReasonCode::PACKET_ID_NOT_FOUND,
        };
        self.write_packet(&Packet::PubRel(Ack::new(id, pubrel_code)));
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), End> {
        let v5 = self.protocol.is_v5();
        let mut codes = vec![ReasonCode::SUCCESS; subscribe.filters.len()];
        let mut positions = Vec::new();
        let mut accepted = Vec::new();
        for (i, (filter, options)) in subscribe.filters.into_iter().enumerate() {
            let plain = match topic::parse_shared(&filter) {
                Ok(Some(shared)) => {
                    if options.no_local && v5 {
                        // MQTT-3.8.3-4.
                        return Err(End::Server(ReasonCode::PROTOCOL_ERROR));
                    }
                    shared.filter
                }
                Ok(None) if topic::is_valid_topic_filter(&filter) => &filter[..],
                // MQTT 3.1.1 has no return code for a malformed filter: it is a protocol
                // violation that closes the connection (section 4.8). MQTT 5 says 0x8F.
                _ if !v5 => return Err(End::Server(ReasonCode::TOPIC_FILTER_INVALID)),
                _ => {
                    codes[i] = ReasonCode::TOPIC_FILTER_INVALID;
                    continue;
                }
            };
            if !self.ctx.auth.authorize_subscribe(&self.principal, plain) {
                Metrics::add(&self.ctx.metrics.subscriptions_denied, 1);
                codes[i] = ReasonCode::NOT_AUTHORIZED;
                continue;
            }
            positions.push(i);
            // Copied out of the read buffer: the router keeps the filter as long as the
            // subscription, and a slice would keep the whole buffer with it.
            accepted.push((ByteString::from(&*filter), options));
        }
        let mut retained = Vec::new();
        if !accepted.is_empty() {
            // Earlier publishes of this client reach the router before its subscription changes.
            self.forward_accepted().await?;
            let (reply_tx, reply_rx) = oneshot::channel();
            let request = SubscribeRequest {
                session: self.session,
                subscription_id: subscribe
                    .properties
                    .subscription_identifiers
                    .first()
                    .copied(),
                filters: accepted,
                reply: reply_tx,
            };
            self.router_send(Event::Subscribe(request)).await?;
            let reply = reply_rx
                .await
                .map_err(|_| End::Server(ReasonCode::SERVER_SHUTTING_DOWN))?;
            for (position, code) in positions.into_iter().zip(reply.codes) {
                codes[position] = code;
            }
            retained = reply.retained;
        }
        self.write_packet(&Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            codes,
        }));
        for delivery in retained {
            self.send_or_queue(delivery);
        }
        Ok(())
    }

    async fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), End> {
        self.forward_accepted().await?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let filters: Vec<ByteString> = unsubscribe.filters;
        let request = UnsubscribeRequest {
            session: self.session,
            filters,
            reply: reply_tx,
        };
        self.router_send(Event::Unsubscribe(request)).await?;
        let codes = reply_rx
            .await
            .map_err(|_| End::Server(ReasonCode::SERVER_SHUTTING_DOWN))?;
        self.write_packet(&Packet::UnsubAck(SubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            codes,
        }));
        Ok(())
    }

    async fn router_send(&mut self, event: Event) -> Result<(), End> {
        self.ctx
            .router
            .send(event)
            .await
            .map_err(|_| End::Server(ReasonCode::SERVER_SHUTTING_DOWN))
    }
}
