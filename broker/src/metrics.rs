//! Broker counters, named once here. Connections add to them in batches to keep atomics off the
//! per-message path; `$SYS` topics and the gateway's `/metrics` read them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    /// Messages the gateway's own components (device connections, mappings, forwarding)
    /// published on the in-process link; `messages_received` counts network clients only.
    pub messages_internal: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Messages not delivered because a session's queue was full (slow or offline consumer) or the
    /// message exceeded the client's maximum packet size.
    pub messages_dropped: AtomicU64,
    /// Of those, dropped because the session's queue held `max_queued_bytes` already.
    pub messages_dropped_queue_bytes: AtomicU64,
    /// Retained messages not kept because the store held `max_retained_messages` or
    /// `max_retained_bytes` already.
    pub retained_dropped: AtomicU64,
    /// PUBLISH packets and subscriptions refused by the authorisation hook.
    pub publishes_denied: AtomicU64,
    pub subscriptions_denied: AtomicU64,
    /// Deliveries dropped because the receiver may no longer read the topic (a permission taken
    /// away after it subscribed).
    pub deliveries_denied: AtomicU64,
    /// Malformed packets and protocol errors that closed a connection.
    pub protocol_errors: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Per-connection tallies, flushed into [`Metrics`] once per read or write batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LocalTally {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub messages_dropped: u64,
    pub publishes_denied: u64,
    pub deliveries_denied: u64,
}

impl LocalTally {
    pub fn flush(&mut self, m: &Metrics) {
        Metrics::add(&m.messages_received, self.messages_received);
        Metrics::add(&m.messages_sent, self.messages_sent);
        Metrics::add(&m.bytes_received, self.bytes_received);
        Metrics::add(&m.bytes_sent, self.bytes_sent);
        Metrics::add(&m.messages_dropped, self.messages_dropped);
        Metrics::add(&m.publishes_denied, self.publishes_denied);
        Metrics::add(&m.deliveries_denied, self.deliveries_denied);
        *self = LocalTally::default();
    }

    /// Nothing counted since the last flush.
    pub fn is_zero(&self) -> bool {
        *self == LocalTally::default()
    }
}
