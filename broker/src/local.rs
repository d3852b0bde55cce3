//! The in-process link: gateway components publish and subscribe through the router directly,
//! with no socket and no encoding. Messages arrive as the same shared [`Message`] values that
//! network clients' publishes become.

use std::collections::VecDeque;
use std::sync::Arc;

use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{QoS, ReasonCode, SubscriptionOptions};
use crate::context::Context;
use crate::message::{Delivery, Message, SessionKey};
use crate::metrics::Metrics;
use crate::queue::{Next, QueueRx, Signals};
use crate::router::{
    ConnectRequest, Event, Handback, SessionState, SubscribeRequest, UnsubscribeRequest,
};
use crate::topic;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the broker is shutting down")]
    BrokerGone,
    #[error("another client took over the client id")]
    TakenOver,
    #[error("the broker refused the session (reason {0})")]
    Refused(ReasonCode),
    #[error("invalid topic filter {0:?}")]
    InvalidFilter(String),
    #[error("invalid topic name {0:?}: it must be non-empty and contain no wildcards")]
    InvalidTopic(String),
}

/// A client of the broker living in the same process. Its session is clean: it ends when the
/// client is dropped or disconnected.
pub struct LocalClient {
    ctx: Arc<Context>,
    session: SessionKey,
    rx: QueueRx,
    /// Retained messages handed over on subscribe, delivered before the queue.
    pending: VecDeque<Delivery>,
    connected: bool,
}

impl LocalClient {
    pub(crate) async fn connect(
        ctx: Arc<Context>,
        client_id: &str,
    ) -> Result<LocalClient, LinkError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = ConnectRequest {
            client_id: ByteString::from(client_id),
            owner: crate::auth::SessionOwner::Internal,
            clean_start: true,
            session_expiry: 0,
            reply: reply_tx,
        };
        ctx.router
            .send(Event::Connect(request))
            .await
            .map_err(|_| LinkError::BrokerGone)?;
        let reply = reply_rx
            .await
            .map_err(|_| LinkError::TakenOver)?
            .map_err(LinkError::Refused)?;
        Ok(LocalClient {
            ctx,
            session: reply.session,
            rx: reply.rx,
            pending: VecDeque::new(),
            connected: true,
        })
    }

    /// Publishes a message as this client (for the no-local option it counts as ours).
    pub async fn publish(&self, mut message: Message) -> Result<(), LinkError> {
        if !topic::is_valid_topic_name(&message.topic) {
            return Err(LinkError::InvalidTopic(message.topic.to_string()));
        }
        message.origin = Some(self.session);
        self.ctx
            .router
            .send(Event::Publish(vec![Arc::new(message)]))
            .await
            .map_err(|_| LinkError::BrokerGone)?;
        // One relaxed add per message: the channel send above costs far more.
        Metrics::add(&self.ctx.metrics.messages_internal, 1);
        Ok(())
    }

    /// Subscribes; returns the granted QoS as a reason code.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<ReasonCode, LinkError> {
        self.subscribe_with(filter, SubscriptionOptions::at(qos))
            .await
    }

    /// Subscribes with MQTT 5 options, such as `no_local` for a component that must not hear
    /// its own publications.
    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<ReasonCode, LinkError> {
        let valid = match topic::parse_shared(filter) {
            Ok(Some(_)) => true,
            Ok(None) => topic::is_valid_topic_filter(filter),
            Err(_) => false,
        };
        if !valid {
            return Err(LinkError::InvalidFilter(filter.to_string()));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = SubscribeRequest {
            session: self.session,
            subscription_id: None,
            filters: vec![(ByteString::from(filter), options)],
            reply: reply_tx,
        };
        self.ctx
            .router
            .send(Event::Subscribe(request))
            .await
            .map_err(|_| LinkError::BrokerGone)?;
        let reply = reply_rx.await.map_err(|_| LinkError::BrokerGone)?;
        self.pending.extend(reply.retained);
        Ok(reply
            .codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UNSPECIFIED_ERROR))
    }

    pub async fn unsubscribe(&mut self, filter: &str) -> Result<ReasonCode, LinkError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = UnsubscribeRequest {
            session: self.session,
            filters: vec![ByteString::from(filter)],
            reply: reply_tx,
        };
        self.ctx
            .router
            .send(Event::Unsubscribe(request))
            .await
            .map_err(|_| LinkError::BrokerGone)?;
        let codes = reply_rx.await.map_err(|_| LinkError::BrokerGone)?;
        Ok(codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UNSPECIFIED_ERROR))
    }

    /// The next message for one of this client's subscriptions; `None` once the broker stopped
    /// or another client took the client id over.
    pub async fn recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.pending.pop_front() {
            return Some(delivery);
        }
        loop {
            match self.rx.next(true).await {
                Next::Delivery(delivery) => return Some(delivery),
                Next::Signal(signals) if signals.contains(Signals::TAKEN_OVER) => return None,
                // Not sent to in-process clients; nothing to do if they were.
                Next::Signal(_) => {}
                Next::Closed => return None,
            }
        }
    }

    /// Ends the session now (dropping the client does the same without waiting).
    pub async fn disconnect(mut self) {
        if let Some(event) = self.handback() {
            let _ = self.ctx.router.send(event).await;
        }
    }

    fn handback(&mut self) -> Option<Event> {
        if !std::mem::take(&mut self.connected) {
            return None;
        }
        Some(Event::Disconnected(Box::new(Handback {
            session: self.session,
            rx: std::mem::replace(&mut self.rx, QueueRx::detached()),
            state: SessionState::default(),
            will: None,
            session_expiry: 0,
        })))
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        if let Some(event) = self.handback() {
            // Best effort without awaiting: with a full router queue, hand back from a task.
            if let Err(mpsc::error::TrySendError::Full(event)) = self.ctx.router.try_send(event) {
                let router = self.ctx.router.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = router.send(event).await;
                    });
                }
            }
        }
    }
}
