//! What every connection task shares: settings, the router's channel, the auth hook, counters.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
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
    /// One permit per allowed concurrent connection.
    pub connection_slots: Arc<Semaphore>,
}
