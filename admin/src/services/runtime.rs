//! The boundary between the service manager and whatever runs connections, endpoints and
//! mappings (the gateway's supervisor, which owns those tasks).

use commissioning::{Resource, Service};

use super::{BoxFuture, ServiceState};

/// Where a resource is, as a service's status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceState {
    /// Not running: its service is not enabled, or it has not been started.
    Stopped,
    /// A user or role of an enabled service: it is in the directory.
    Created,
    /// Recorded, but nothing in this build runs it; the message says what is missing.
    Unavailable,
    /// A connection, as its driver reports it.
    Connecting,
    Connected,
    Reconnecting,
    Disconnected,
    /// An endpoint whose connection is not connected.
    WaitingForConnection,
    /// An endpoint whose last read, subscription or request failed.
    Error,
    /// A mapping, or an endpoint, doing its work.
    Running,
    /// A mapping whose `targetState` is `disabled`.
    Disabled,
}

impl ResourceState {
    /// As the API and the status topics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Stopped => "stopped",
            ResourceState::Created => "created",
            ResourceState::Unavailable => "unavailable",
            ResourceState::Connecting => "connecting",
            ResourceState::Connected => "connected",
            ResourceState::Reconnecting => "reconnecting",
            ResourceState::Disconnected => "disconnected",
            ResourceState::WaitingForConnection => "waiting for its connection",
            ResourceState::Error => "error",
            ResourceState::Running => "running",
            ResourceState::Disabled => "disabled",
        }
    }
}

/// The current state of a running connection, endpoint or mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceStatus {
    pub state: ResourceState,
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
    fn service_state(&self, service_id: &str, state: ServiceState, last_error: Option<&str>);

    /// A service was deleted: forget anything kept about it.
    fn service_removed(&self, service_id: &str);
}
