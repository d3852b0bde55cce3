//! What a mapping holds of an MQTT connection to a remote broker (a cloud, another plant): a
//! way to forward messages to it and to subscribe to it. The connection (in the protocol
//! mapper) owns the other ends, [`RemoteBrokerEnd`], and keeps the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{Message, QoS};

/// Messages from mappings waiting for the connection to store or send them. A full outbox makes
/// mappings wait: the connection is writing to disk, nothing is dropped.
pub const OUTBOX: usize = 4096;

/// Messages from the remote broker waiting for one mapping entry; beyond this they are dropped
/// and counted (waiting would stall the link for every other mapping).
pub const DELIVERY_QUEUE: usize = 4096;

/// Subscription commands waiting for the connection.
const SUBSCRIPTION_COMMANDS: usize = 64;

/// A remote subscription's deliveries: the tag the subscriber gave, and the message.
pub type RemoteDelivery = (usize, Message);

/// A mapping's subscription change, for the connection.
pub enum SubscriptionCommand {
    Add {
        filter: String,
        qos: QoS,
        tag: usize,
        deliver: mpsc::Sender<RemoteDelivery>,
        done: oneshot::Sender<u64>,
    },
    Remove(u64),
}

/// What the connection status and `/metrics` show of a store-and-forward queue. Shared with
/// readers; only the queue writes.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Dropped because the queue was full (oldest first).
    pub dropped_full: AtomicU64,
    /// Dropped because they were older than `max_age`.
    pub dropped_expired: AtomicU64,
    /// Acknowledged by the remote broker.
    pub delivered: AtomicU64,
}

/// Counters of the connection apart from the queue's.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// QoS 0 messages sent while the link was up.
    pub sent_qos0: AtomicU64,
    /// QoS 0 messages dropped because the link was down (QoS 0 is never stored).
    pub dropped_qos0: AtomicU64,
    /// Messages from the remote broker handed to mappings.
    pub received: AtomicU64,
    /// Messages from the remote broker dropped because a mapping was behind.
    pub dropped_received: AtomicU64,
    /// Stored messages the remote broker acknowledged with an MQTT 5 error reason.
    pub refused: AtomicU64,
    /// Acknowledgements per second over the last status interval, times 1000.
    pub delivery_rate_milli: AtomicU64,
}

/// A snapshot for the connection status, the service status and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingStats {
    /// Stored QoS 1/2 messages not yet acknowledged by the remote broker.
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub dropped_queue_full: u64,
    pub dropped_expired: u64,
    pub delivered: u64,
    /// Acknowledged messages per second, measured over the last few seconds.
    pub delivered_per_second: u64,
    pub sent_qos0: u64,
    pub dropped_qos0_offline: u64,
    pub received: u64,
    pub dropped_received: u64,
    pub refused_by_broker: u64,
}

/// A mapping's handle on an MQTT connection.
#[derive(Clone)]
pub struct RemoteBroker {
    outbox: mpsc::Sender<Message>,
    subscriptions: mpsc::Sender<SubscriptionCommand>,
    queue: Arc<QueueCounters>,
    link: Arc<LinkCounters>,
}

/// The connection's ends of a [`RemoteBroker`].
pub struct RemoteBrokerEnd {
    /// What mappings forward.
    pub outbox: mpsc::Receiver<Message>,
    pub subscriptions: mpsc::Receiver<SubscriptionCommand>,
    pub queue: Arc<QueueCounters>,
    pub link: Arc<LinkCounters>,
}

impl std::fmt::Debug for RemoteBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBroker")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RemoteBroker {
    /// A handle and the ends the connection serves.
    pub fn new() -> (RemoteBroker, RemoteBrokerEnd) {
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let (subscriptions, subscriptions_rx) = mpsc::channel(SUBSCRIPTION_COMMANDS);
        let queue = Arc::new(QueueCounters::default());
        let link = Arc::new(LinkCounters::default());
        let end = RemoteBrokerEnd {
            outbox: outbox_rx,
            subscriptions: subscriptions_rx,
            queue: queue.clone(),
            link: link.clone(),
        };
        let handle = RemoteBroker {
            outbox,
            subscriptions,
            queue,
            link,
        };
        (handle, end)
    }

    /// Hands a message to the connection: QoS 1/2 are stored and delivered in order whenever
    /// the link allows; QoS 0 is sent if the link is up and dropped (counted) otherwise.
    pub async fn forward(&self, message: Message) -> Result<(), String> {
        self.outbox
            .send(message)
            .await
            .map_err(|_| "the MQTT connection has stopped".to_string())
    }

    /// Subscribes on the remote broker (now and after every reconnect); matching messages
    /// arrive on `deliver` tagged with `tag`. Returns the id to unsubscribe with.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        tag: usize,
        deliver: mpsc::Sender<RemoteDelivery>,
    ) -> Result<u64, String> {
        let (done, id) = oneshot::channel();
        let command = SubscriptionCommand::Add {
            filter: filter.to_string(),
            qos,
            tag,
            deliver,
            done,
        };
        let stopped = || "the MQTT connection has stopped".to_string();
        self.subscriptions
            .send(command)
            .await
            .map_err(|_| stopped())?;
        id.await.map_err(|_| stopped())
    }

    pub async fn unsubscribe(&self, id: u64) {
        let _ = self
            .subscriptions
            .send(SubscriptionCommand::Remove(id))
            .await;
    }

    pub fn stats(&self) -> ForwardingStats {
        let q = &self.queue;
        let l = &self.link;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ForwardingStats {
            queued_messages: get(&q.messages),
            queued_bytes: get(&q.bytes),
            dropped_queue_full: get(&q.dropped_full),
            dropped_expired: get(&q.dropped_expired),
            delivered: get(&q.delivered),
            delivered_per_second: get(&l.delivery_rate_milli) / 1000,
            sent_qos0: get(&l.sent_qos0),
            dropped_qos0_offline: get(&l.dropped_qos0),
            received: get(&l.received),
            dropped_received: get(&l.dropped_received),
            refused_by_broker: get(&l.refused),
        }
    }
}
