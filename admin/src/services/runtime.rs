//! The boundary between the service manager and whatever runs connections, endpoints and
//! mappings (the gateway's supervisor, which owns those tasks).

use std::collections::BTreeSet;

use commissioning::{Resource, Service};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{BoxFuture, ServiceState};

/// What an agent needs to run its part of a service: the file and the parameter values the
/// service was installed with, secrets included (the agent's work topic is readable by that
/// agent alone), and what the gateway tells every service about itself. The agent resolves the
/// file itself, with the same code, so it runs exactly what the gateway validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentWork {
    pub service: String,
    pub commissioning_file: String,
    pub parameters: Map<String, Json>,
    pub mqtt_host: String,
    pub mqtt_port: u16,
    pub mqtt_password: String,
}

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
    /// Placed on a protocol-mapper agent that is not connected or has not reported it yet.
    WaitingForAgent,
}

impl ResourceState {
    pub const ALL: [ResourceState; 12] = [
        ResourceState::Stopped,
        ResourceState::Created,
        ResourceState::Unavailable,
        ResourceState::Connecting,
        ResourceState::Connected,
        ResourceState::Reconnecting,
        ResourceState::Disconnected,
        ResourceState::WaitingForConnection,
        ResourceState::Error,
        ResourceState::Running,
        ResourceState::Disabled,
        ResourceState::WaitingForAgent,
    ];

    /// The state [`ResourceState::as_str`] names (an agent's report).
    pub fn from_name(name: &str) -> Option<ResourceState> {
        ResourceState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

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
            ResourceState::WaitingForAgent => "waiting for its agent",
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
    /// Counters worth showing an operator: what a connection did (and the store-and-forward
    /// queue of an MQTT connection), messages through mappings.
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

    /// The agents that run part of a service now, each to be handed `work`; called after every
    /// change of the service, with no agents when it is not enabled, so an agent no longer
    /// named stops its part.
    fn assign_agents(&self, service_id: &str, agents: &BTreeSet<String>, work: &AgentWork);

    /// A service was deleted: forget anything kept about it.
    fn service_removed(&self, service_id: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_state_is_read_back_from_its_name() {
        // Adding a variant breaks this match until it is in `ALL`.
        let _listed = |state: ResourceState| match state {
            ResourceState::Stopped
            | ResourceState::Created
            | ResourceState::Unavailable
            | ResourceState::Connecting
            | ResourceState::Connected
            | ResourceState::Reconnecting
            | ResourceState::Disconnected
            | ResourceState::WaitingForConnection
            | ResourceState::Error
            | ResourceState::Running
            | ResourceState::Disabled
            | ResourceState::WaitingForAgent => ResourceState::ALL.contains(&state),
        };
        for state in ResourceState::ALL {
            assert_eq!(ResourceState::from_name(state.as_str()), Some(state));
        }
        assert_eq!(ResourceState::from_name("sleeping"), None);
    }
}
