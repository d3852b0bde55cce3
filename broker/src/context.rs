//! What every connection task shares: settings, the router's channel, the auth hook, counters.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthHook;
use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use crate::router::Event;

pub(crate) struct Context {
    pub config: Arc<BrokerConfig>,
    pub router: mpsc::Sender<Event>,
    pub auth: Arc<dyn AuthHook>,
    pub metrics: Arc<Metrics>,
    /// Every connection task, so shutdown can wait for their sessions to be handed back.
    pub connections: TaskTracker,
    /// Cancelled at shutdown: connections say goodbye and hand their session back.
    pub shutdown: CancellationToken,
    /// When the broker started: the zero of the clock that keep-alive deadlines are told in.
    pub started: tokio::time::Instant,
    /// One permit per allowed concurrent connection.
    pub connection_slots: Arc<Semaphore>,
}

impl Context {
    /// A place for one more connection, or `None` at `max_connections`.
    pub fn take_connection_slot(&self) -> Option<ConnectionSlot> {
        let permit = self.connection_slots.clone().try_acquire_owned().ok()?;
        Metrics::add(&self.metrics.connections_current, 1);
        Metrics::add(&self.metrics.connections_total, 1);
        Some(ConnectionSlot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

/// A connection's place under `max_connections`, from the accept (before any TLS or WebSocket
/// handshake) until the connection is gone; counted in `connections_current` while held.
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.metrics
            .connections_current
            .fetch_sub(1, Ordering::Relaxed);
    }
}
