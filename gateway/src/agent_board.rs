//! How the gateway and its protocol-mapper agents talk, and what the gateway knows of them.
//!
//! Everything goes over MQTT on the gateway's broker, below `$ironbridge/agents/<name>/`,
//! which only that agent may read or write (and the gateway's own components):
//! - `services/<service>`: the agent's work for one service (retained, an
//!   [`admin::services::AgentWork`]; an empty message takes it back). Published by the gateway.
//! - `status`: `{"state": "online" | "offline", "since"}` (retained). The agent publishes
//!   `online` on every connect; the broker publishes `offline` as its will when the agent
//!   vanishes, so the gateway knows within seconds.
//! - `resources/<service>/<resource>`: the state of each resource the agent runs, as its service
//!   status shows it (retained, a [`Report`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use admin::services::{ResourceState, ResourceStatus};
use broker::QoS;
use broker::bus::Connector;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Resource reports kept at most, over all agents.
const MAX_REPORTS: usize = 100_000;

pub fn work_topic(agent: &str, service: &str) -> String {
    format!("{}/services/{service}", admin::agents::agent_root(agent))
}

pub fn status_topic(agent: &str) -> String {
    format!("{}/status", admin::agents::agent_root(agent))
}

pub fn resource_topic(agent: &str, service: &str, resource: &str) -> String {
    format!(
        "{}/resources/{service}/{resource}",
        admin::agents::agent_root(agent)
    )
}

/// An agent's `status` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub state: PresenceState,
    /// Unix milliseconds.
    pub since: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceState {
    Online,
    Offline,
}

impl Presence {
    pub fn new(online: bool) -> Presence {
        Presence {
            state: match online {
                true => PresenceState::Online,
                false => PresenceState::Offline,
            },
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What an agent reports of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub state: String,
    pub in_target_state: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
}

impl Report {
    /// Whether an agent sends this report, `last` being what it sent before: a new state,
    /// target state or message at once; changed counters only when `counters_due`.
    pub fn is_due(&self, last: Option<&Report>, counters_due: bool) -> bool {
        let Some(last) = last else {
            return true;
        };
        let same_state = self.state == last.state
            && self.in_target_state == last.in_target_state
            && self.message == last.message;
        !same_state || (counters_due && self.metrics != last.metrics)
    }
}

impl From<&ResourceStatus> for Report {
    fn from(status: &ResourceStatus) -> Report {
        Report {
            state: status.state.as_str().into(),
            in_target_state: status.in_target_state,
            message: status.message.clone(),
            metrics: status.metrics.clone(),
        }
    }
}

/// What the gateway has heard from its agents.
#[derive(Debug, Default)]
pub struct AgentBoard {
    /// Agent name to its last `status`.
    presence: Mutex<HashMap<String, Presence>>,
    /// (agent, service, resource) to the agent's last report.
    reports: Mutex<HashMap<(String, String, String), Report>>,
}

impl AgentBoard {
    /// A resource on `agent` as the service status shows it: the agent's report while the
    /// agent is online, otherwise waiting for the agent (which makes the service deviated).
    pub fn status(&self, agent: &str, service: &str, resource: &str) -> ResourceStatus {
        let waiting = |message: String| ResourceStatus {
            state: ResourceState::WaitingForAgent,
            in_target_state: false,
            message: Some(message),
            metrics: None,
        };
        let online = lock(&self.presence)
            .get(agent)
            .is_some_and(|p| p.state == PresenceState::Online);
        if !online {
            return waiting(format!("agent {agent} is not connected"));
        }
        let key = (agent.to_string(), service.to_string(), resource.to_string());
        let report = lock(&self.reports).get(&key).cloned();
        match report {
            None => waiting(format!("agent {agent} has not reported it yet")),
            Some(report) => ResourceStatus {
                state: ResourceState::from_name(&report.state).unwrap_or(ResourceState::Error),
                in_target_state: report.in_target_state,
                message: report.message,
                metrics: report.metrics,
            },
        }
    }

    /// Takes in a message from below `$ironbridge/agents/`.
    fn record(&self, topic: &str, payload: &[u8]) {
        let Some(rest) = topic
            .strip_prefix(admin::agents::AGENTS_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return;
        };
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            [agent, "status"] => match serde_json::from_slice::<Presence>(payload) {
                Ok(presence) => {
                    let mut known = lock(&self.presence);
                    if known.len() < MAX_REPORTS || known.contains_key(*agent) {
                        known.insert(agent.to_string(), presence);
                    }
                }
                Err(_) => {
                    lock(&self.presence).remove(*agent);
                }
            },
            [agent, "resources", service, resource] => {
                let key = (agent.to_string(), service.to_string(), resource.to_string());
                match serde_json::from_slice::<Report>(payload) {
                    Ok(report) => {
                        let mut reports = lock(&self.reports);
                        // An agent may publish below its own subtree at will; what it can
                        // make the gateway keep is bounded.
                        if reports.len() < MAX_REPORTS || reports.contains_key(&key) {
                            reports.insert(key, report);
                        }
                    }
                    // Empty: the agent no longer runs it.
                    Err(_) => {
                        lock(&self.reports).remove(&key);
                    }
                }
            }
            _ => {}
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `board` up to date with what agents publish, until `stop`.
pub async fn watch(board: Arc<AgentBoard>, broker: Connector, stop: CancellationToken) {
    let mut link = match broker.connect("ironbridge/agents").await {
        Ok(link) => link,
        Err(e) => {
            warn!(error = %e, "Cannot watch the agents; resources placed on agents show as waiting");
            return;
        }
    };
    let root = admin::agents::AGENTS_ROOT;
    for filter in [format!("{root}/+/status"), format!("{root}/+/resources/#")] {
        if let Err(e) = link.subscribe(&filter, QoS::AtLeastOnce).await {
            warn!(error = %e, filter = %filter, "Cannot watch the agents");
        }
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            delivery = link.recv() => match delivery {
                Some(delivery) => board.record(&delivery.message.topic, &delivery.message.payload),
                None => break,
            },
        }
    }
    link.disconnect().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_reports_a_state_at_once_and_counters_when_they_are_due() {
        let report = |state: &str, values: u64| Report {
            state: state.into(),
            in_target_state: true,
            message: None,
            metrics: Some(serde_json::json!({ "values": values })),
        };
        let sent = report("connected", 10);
        assert!(report("connected", 10).is_due(None, false), "never sent");
        assert!(report("reconnecting", 10).is_due(Some(&sent), false));
        assert!(!report("connected", 11).is_due(Some(&sent), false));
        assert!(report("connected", 11).is_due(Some(&sent), true));
        assert!(
            !report("connected", 10).is_due(Some(&sent), true),
            "nothing new"
        );
    }

    #[test]
    fn a_resource_on_an_agent_waits_for_it_until_it_is_online_and_has_reported() {
        let board = AgentBoard::default();
        let status = board.status("press", "line", "plc");
        assert_eq!(status.state, ResourceState::WaitingForAgent);
        assert!(!status.in_target_state);
        assert_eq!(
            status.message.as_deref(),
            Some("agent press is not connected")
        );

        board.record(&status_topic("press"), &Presence::new(true).to_json());
        let status = board.status("press", "line", "plc");
        assert_eq!(
            status.message.as_deref(),
            Some("agent press has not reported it yet")
        );

        let report = Report {
            state: "connected".into(),
            in_target_state: true,
            message: None,
            metrics: None,
        };
        let payload = serde_json::to_vec(&report).unwrap_or_default();
        board.record(&resource_topic("press", "line", "plc"), &payload);
        let status = board.status("press", "line", "plc");
        assert_eq!(status.state, ResourceState::Connected);
        assert!(status.in_target_state);

        // The will: the agent vanished, and what it reported no longer counts.
        board.record(&status_topic("press"), &Presence::new(false).to_json());
        assert_eq!(
            board.status("press", "line", "plc").state,
            ResourceState::WaitingForAgent
        );
    }
}
