//! Protocol-mapper agents as the administration sees them: which services each agent runs part
//! of, what its broker user may therefore reach, and the part of the topic tree that is each
//! agent's alone.
//!
//! An agent logs in as the user named like the agent. Besides what its own roles give, it may
//! reach what the broker users of its services may (each service's root and its `defaultRole`
//! grants) and write the connection statuses of those services, for as long as an enabled
//! service places resources on it. `$ironbridge/agents/<name>/` carries the agent's work,
//! device passwords included: only that agent may subscribe or publish there, whatever anyone
//! else's permissions say (the gateway's own components are not asked). It is a `$` topic of
//! its own, not below `$SYS`, so `#` and `$SYS/#` never reach it (MQTT-4.7.2-1) and a filter
//! that could is one that names `$ironbridge`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use commissioning::model::{AccessContext, AccessOperation};

use crate::access::{Directory, allows};

/// Where each agent's private part of the topic tree starts.
pub const AGENTS_ROOT: &str = "$ironbridge/agents";

/// The agent's part of the topic tree: its work, status and resource statuses.
pub fn agent_root(agent: &str) -> String {
    format!("{AGENTS_ROOT}/{agent}")
}

/// Which agents' private subtrees a topic or a subscription filter reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    None,
    One(&'a str),
    /// A wildcard where the agent's name goes, or above it.
    Every,
}

/// `$ironbridge/agents/<name>/...`, with `+` and `#` where the filter has them. A filter that
/// starts with a wildcard never reaches `$` topics (MQTT-4.7.2-1).
pub fn reach(filter: &str) -> Reach<'_> {
    let mut levels = filter.split('/');
    for (depth, want) in AGENTS_ROOT.split('/').enumerate() {
        match levels.next() {
            Some(level) if level == want => {}
            Some("#") if depth > 0 => return Reach::Every,
            Some("+") if depth > 0 => {}
            _ => return Reach::None,
        }
    }
    match levels.next() {
        None => Reach::None,
        Some("+" | "#") => Reach::Every,
        Some(name) => Reach::One(name),
    }
}

/// Which enabled services place resources on which agent.
#[derive(Debug, Default)]
pub struct Placements(RwLock<BTreeMap<String, BTreeSet<String>>>);

impl Placements {
    /// Records the agents `service` runs on now (none when it is disabled or deleted).
    pub fn place(&self, service: &str, agents: &BTreeSet<String>) {
        let mut placements = self.0.write().unwrap_or_else(|e| e.into_inner());
        for (agent, services) in placements.iter_mut() {
            if !agents.contains(agent) {
                services.remove(service);
            }
        }
        for agent in agents {
            placements
                .entry(agent.clone())
                .or_default()
                .insert(service.to_string());
        }
        placements.retain(|_, services| !services.is_empty());
    }

    /// The services `agent` runs part of.
    pub fn services_of(&self, agent: &str) -> BTreeSet<String> {
        let placements = self.0.read().unwrap_or_else(|e| e.into_inner());
        placements.get(agent).cloned().unwrap_or_default()
    }

    /// What user `agent` may do as an agent, beyond its own permissions: what its services'
    /// broker users may, and writing its services' connection statuses.
    pub fn allows(
        &self,
        directory: &Directory,
        agent: &str,
        operation: AccessOperation,
        topic: &str,
    ) -> bool {
        let placements = self.0.read().unwrap_or_else(|e| e.into_inner());
        let Some(services) = placements.get(agent) else {
            return false;
        };
        services.iter().any(|service| {
            let statuses = format!("$SYS/ironbridge/services/{service}/connections/#");
            let writes_status =
                operation == AccessOperation::Write && crate::access::covers(&statuses, topic);
            writes_status
                || directory.users.get(service).is_some_and(|user| {
                    user.service_id.as_deref() == Some(service)
                        && allows(&user.permissions, AccessContext::Mqtt, operation, topic)
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_agents_a_filter_reaches() {
        let cases = [
            (
                "$ironbridge/agents/press/services/line",
                Reach::One("press"),
            ),
            ("$ironbridge/agents/press/#", Reach::One("press")),
            ("$ironbridge/agents/press", Reach::One("press")),
            ("$ironbridge/+/press", Reach::One("press")),
            ("$ironbridge/agents/+/status", Reach::Every),
            ("$ironbridge/agents/#", Reach::Every),
            ("$ironbridge/#", Reach::Every),
            ("$ironbridge/agents", Reach::None),
            // Everything else, `$SYS` included.
            ("$SYS/#", Reach::None),
            ("$SYS/ironbridge/#", Reach::None),
            ("$SYS/ironbridge/services/line/status", Reach::None),
            // Wildcards at the first level never match `$` topics.
            ("#", Reach::None),
            ("+/agents/press", Reach::None),
            ("services/line/speed", Reach::None),
        ];
        for (filter, expected) in cases {
            assert_eq!(reach(filter), expected, "{filter}");
        }
    }

    #[test]
    fn placements_follow_the_services() {
        let placements = Placements::default();
        let agents = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        placements.place("line", &agents(&["press", "oven"]));
        placements.place("paint", &agents(&["oven"]));
        assert_eq!(placements.services_of("oven"), agents(&["line", "paint"]));
        placements.place("line", &agents(&["press"]));
        assert_eq!(placements.services_of("oven"), agents(&["paint"]));
        placements.place("paint", &BTreeSet::new());
        assert!(placements.services_of("oven").is_empty());
        assert_eq!(placements.services_of("press"), agents(&["line"]));
    }
}
