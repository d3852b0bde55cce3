//! The boundary between the service manager and whatever runs connections, endpoints and
//! mappings (the gateway's supervisor, which owns those tasks).

use commissioning::{Resource, Service};

use super::BoxFuture;

/// The current state of a running connection, endpoint or mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceStatus {
    /// `connected`, `reconnecting`, `running`, `unavailable`, ...
    pub state: String,
    /// False makes the service `deviated`.
    pub in_target_state: bool,
    pub message: Option<String>,
    /// Counters worth showing an operator: store-and-forward queues of MQTT connections,
    /// messages through mappings.
    pub metrics: Option<serde_json::Value>,
}

pub trait ResourceRuntime: Send + Sync + 'static {
    /// Starts a connection, endpoint or mapping. An error makes enabling fail and roll back.
    fn start<'a>(
        &'a self,
        service: &'a Service,
        resource: &'a Resource,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Stops a resource started before; stopping one that is not running does nothing.
    fn stop<'a>(&'a self, service_id: &'a str, resource_id: &'a str) -> BoxFuture<'a, ()>;

    fn status(&self, service_id: &str, resource_id: &str) -> ResourceStatus;

    /// A service changed state (published as retained status by the gateway).
    fn service_state(&self, service_id: &str, state: &str, last_error: Option<&str>);

    /// A service was deleted: forget anything kept about it.
    fn service_removed(&self, service_id: &str);
}
