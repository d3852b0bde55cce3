//! The supervisor: owns the tasks of every service resource and publishes service states as
//! retained messages on `$SYS/ironbridge/services/<id>/status`.
//!
//! Connections build themselves from their spec on the protocol mapper
//! ([`BuildConnection`]), so the supervisor does not know which protocols exist; endpoints are
//! handed to their connection; mappings and endpoint rule chains run on the rule engine. A
//! mapping reaches an MQTT connection (forwarding with store-and-forward, or remote
//! subscriptions) through the connection's [`RemoteBroker`]. An endpoint its connection's
//! driver cannot run in this build (MQTT endpoints) is validated and recorded, and reports
//! `unavailable` with the driver's reason, which makes its service `deviated`. Nothing
//! pretends to read a device.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use admin::services::{
    AgentWork, BoxFuture, ResourceRuntime, ResourceState, ResourceStatus, ServiceState,
};
use broker::bus::{Connector, ForwardingStats, Link, RemoteBroker};
use broker::codec::QoS;
use broker::message::Message;
use bytes::Bytes;
use commissioning::model::{
    ConnectionTargetState, Mapping, MappingTargetState, OpcuaServerNodeType, Operation,
    ResourceKind, ResourceRef,
};
use commissioning::{Resource, Service};
use protocol_mapper::connections::{BuildConnection, ConnectionContext};
use protocol_mapper::driver::{ConnectionHandle, DriverError, EndpointSpec, TrafficStats};
use protocol_mapper::mqtt::QueueLimits;
use protocol_mapper::status::ConnectionState;
use rule_engine::{EntrySpec, PublishSpec, RunningChains, SourceSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::agent_board::{AgentBoard, work_topic};
use crate::http_nodes::HttpNodes;
use crate::opcua_server::OpcuaServers;

/// Endpoint values waiting for the endpoint's rule chain; beyond this the chain is behind and
/// values are dropped (the endpoint reports it).
const ENDPOINT_RULES_QUEUE: usize = 4096;

/// Status messages waiting for the broker link; more than this and the oldest news is dropped
/// (a later state of the same service supersedes it anyway).
const STATUS_QUEUE: usize = 1024;

type Key = (String, String);

enum Running {
    Connection {
        handle: Arc<ConnectionHandle>,
        /// MQTT connections: what mappings forward to and subscribe through.
        remote: Option<RemoteBroker>,
    },
    Endpoint {
        connection: Arc<ConnectionHandle>,
        id: String,
        /// The full data topic, which mappings subscribe to (or request on).
        topic: String,
        operation: Operation,
        rules: Option<RunningChains>,
    },
    /// A mapping's entries; `None` while its `targetState` is `disabled`.
    Mapping(Option<RunningChains>),
    /// Recorded but without a driver in this build; the reason says which part is missing.
    Unavailable(String),
    /// An HTTP server, or an HTTP node with what it serves (`POST /data/press/counter`).
    Served(Option<String>),
    /// The OPC UA server, or one of its nodes, with what it serves; a variable's topic is what
    /// mappings publish to (and subscribe to for clients' writes).
    OpcuaServed { what: String, topic: Option<String> },
    /// Run by another process: the agent named (`None`: the gateway, seen from an agent).
    /// Endpoints keep their topic, so mappings here can name them.
    Elsewhere {
        agent: Option<String>,
        endpoint: Option<(String, Operation)>,
    },
}

/// Where a supervisor runs resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The gateway: every resource not placed on an agent (`agentName`).
    Gateway,
    /// Protocol-mapper agent NAME: the resources placed on it, and nothing else.
    Agent(String),
}

pub struct Supervisor {
    place: Place,
    broker: OnceLock<Connector>,
    /// Drivers keep what must outlive a restart (certificates, queues) below this.
    data_dir: PathBuf,
    queue_limits: QueueLimits,
    running: Mutex<HashMap<Key, Running>>,
    /// Connections that have published a retained status, cleared when their service is deleted.
    with_status: Mutex<std::collections::HashSet<Key>>,
    status: mpsc::Sender<(String, Bytes)>,
    /// What the agents report (gateway only).
    pub agents: Arc<AgentBoard>,
    /// The routes of HTTP servers and nodes, served below `/data`.
    pub http_nodes: Arc<HttpNodes>,
    /// The gateway's OPC UA server and its nodes.
    pub opcua_server: OpcuaServers,
    /// Service to the agents that have its work now.
    assigned: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Supervisor {
    /// `data_dir` holds what drivers keep on disk (OPC UA certificates, store-and-forward
    /// queues).
    pub fn new(
        data_dir: &std::path::Path,
        queue_limits: QueueLimits,
        place: Place,
    ) -> (Supervisor, mpsc::Receiver<(String, Bytes)>) {
        let (status, rx) = mpsc::channel(STATUS_QUEUE);
        let supervisor = Supervisor {
            place,
            agents: Arc::default(),
            http_nodes: Arc::default(),
            opcua_server: OpcuaServers::new(data_dir),
            assigned: Mutex::new(HashMap::new()),
            broker: OnceLock::new(),
            data_dir: data_dir.to_path_buf(),
            queue_limits,
            running: Mutex::new(HashMap::new()),
            with_status: Mutex::new(std::collections::HashSet::new()),
            status,
        };
        (supervisor, rx)
    }

    /// Gives the supervisor its broker; resources start only after this.
    pub fn attach(&self, broker: impl Into<Connector>) {
        let _ = self.broker.set(broker.into());
    }

    fn publish(&self, topic: String, payload: Bytes) {
        if self.status.try_send((topic, payload)).is_err() {
            warn!("Status queue full; a service status update was dropped");
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection's broker link; the connection will publish a retained status through it.
    async fn connection_link(
        &self,
        broker: &Connector,
        service: &Service,
        resource: &Resource,
    ) -> Result<Link, String> {
        let link = broker
            .connect(&format!("ironbridge/{}/{}", service.id, resource.id))
            .await
            .map_err(|e| format!("cannot reach the broker: {e}"))?;
        self.with_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((service.id.clone(), resource.id.clone()));
        Ok(link)
    }

    async fn start_resource(
        &self,
        service: &Service,
        resource: &Resource,
    ) -> Result<Running, String> {
        let agent = service.agent_of(resource);
        let here = match &self.place {
            Place::Gateway => agent.is_none(),
            Place::Agent(me) => agent == Some(me.as_str()),
        };
        if !here {
            // The agent publishes its connections' statuses here; they are cleared with the
            // service like the gateway's own.
            if self.place == Place::Gateway && matches!(resource.kind, ResourceKind::Connection(_))
            {
                self.with_status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((service.id.clone(), resource.id.clone()));
            }
            let endpoint = match &resource.kind {
                ResourceKind::Endpoint(endpoint) => Some((
                    format!("{}/{}", service.mqtt_root, endpoint.topic),
                    endpoint.operation,
                )),
                _ => None,
            };
            return Ok(Running::Elsewhere {
                agent: agent.map(str::to_string),
                endpoint,
            });
        }
        let broker = self.broker.get().ok_or("the broker is not running yet")?;
        match &resource.kind {
            ResourceKind::Connection(connection) => {
                let started = connection.params.build(ConnectionContext {
                    service: &service.id,
                    resource: &resource.id,
                    target: connection.target_state,
                    link: self.connection_link(broker, service, resource).await?,
                    data_dir: &self.data_dir,
                    queue_limits: self.queue_limits,
                });
                let started = started.map_err(|e| e.to_string())?;
                Ok(Running::Connection {
                    handle: Arc::new(started.handle),
                    remote: started.remote,
                })
            }
            ResourceKind::Endpoint(endpoint) => {
                let key = (
                    endpoint.connection.service.clone(),
                    endpoint.connection.resource.clone(),
                );
                let connection = match self.running().get(&key) {
                    Some(Running::Connection { handle, .. }) => handle.clone(),
                    _ => {
                        return Err(format!(
                            "its connection {} is not running",
                            endpoint.connection
                        ));
                    }
                };
                let topic = format!("{}/{}", service.mqtt_root, endpoint.topic);
                let id = format!("{}::{}", service.id, resource.id);
                let publish = PublishSpec {
                    topic: topic.clone(),
                    qos: qos(endpoint.qos.0),
                    retain: endpoint.retain,
                    remote: None,
                };
                let (rules, rules_input) = match endpoint.rules.is_empty() {
                    true => (None, None),
                    false => {
                        let (tx, rx) = mpsc::channel(ENDPOINT_RULES_QUEUE);
                        let chains = rule_engine::start_endpoint_chain(
                            &id,
                            &endpoint.rules,
                            publish.clone(),
                            rx,
                            broker,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                        (Some(chains), Some(tx))
                    }
                };
                let spec = EndpointSpec {
                    id: id.clone(),
                    topic: topic.clone(),
                    operation: endpoint.operation,
                    address: endpoint.address.clone(),
                    qos: publish.qos,
                    retain: publish.retain,
                    rules: rules_input,
                };
                if let Err(e) = connection.add_endpoint(spec).await {
                    if let Some(rules) = &rules {
                        rules.stop().await;
                    }
                    return match e {
                        DriverError::Unsupported(reason) => Ok(Running::Unavailable(reason)),
                        other => Err(other.to_string()),
                    };
                }
                Ok(Running::Endpoint {
                    connection,
                    id,
                    topic,
                    operation: endpoint.operation,
                    rules,
                })
            }
            ResourceKind::Mapping(mapping) => self.start_mapping(service, resource, mapping).await,
            ResourceKind::User(_) | ResourceKind::Role(_) => {
                Ok(Running::Unavailable(String::new()))
            }
            ResourceKind::HttpServer(server) => {
                self.http_nodes
                    .add_server(&service.id, &resource.id, server);
                Ok(Running::Served(None))
            }
            ResourceKind::HttpNode(node) => {
                let topic = format!(
                    "{}/{}",
                    service.mqtt_root,
                    node.topic.as_deref().unwrap_or(&resource.id)
                );
                let path = self
                    .http_nodes
                    .add_node(broker, &service.id, &resource.id, node, topic)
                    .await?;
                Ok(Running::Served(Some(format!(
                    "serves {} {path}",
                    node.method.as_str()
                ))))
            }
            ResourceKind::OpcuaServer(server) => {
                let what = self
                    .opcua_server
                    .add_server(broker, &service.id, &resource.id, server)
                    .await?;
                Ok(Running::OpcuaServed { what, topic: None })
            }
            ResourceKind::OpcuaNode(node) => {
                let topic = format!(
                    "{}/{}",
                    service.mqtt_root,
                    node.topic.as_deref().unwrap_or(&resource.id)
                );
                let what = self
                    .opcua_server
                    .add_node(&service.id, &resource.id, node, topic.clone())
                    .await?;
                let variable = node.node_type == OpcuaServerNodeType::Variable;
                Ok(Running::OpcuaServed {
                    what,
                    topic: variable.then_some(topic),
                })
            }
        }
    }

    async fn start_mapping(
        &self,
        service: &Service,
        resource: &Resource,
        mapping: &Mapping,
    ) -> Result<Running, String> {
        let broker = self.broker.get().ok_or("the broker is not running yet")?;
        if mapping.target_state == MappingTargetState::Disabled {
            return Ok(Running::Mapping(None));
        }
        let mut entries = Vec::with_capacity(mapping.mappings.len());
        for (i, entry) in mapping.mappings.iter().enumerate() {
            let mut sources = Vec::new();
            for source in entry.subscribe.iter() {
                let topic = match (&source.endpoint, &source.topic) {
                    (Some(endpoint), _) => self.endpoint_output_topic(endpoint)?,
                    (None, Some(topic)) => topic.clone(),
                    (None, None) => return Err(format!("mappings[{i}]: a source without a topic")),
                };
                let remote = source
                    .connection
                    .as_ref()
                    .map(|c| self.remote_broker(c))
                    .transpose()
                    .map_err(|e| format!("mappings[{i}].subscribe: {e}"))?;
                sources.push(SourceSpec {
                    topic,
                    qos: qos(source.qos.map_or(0, |q| q.0)),
                    label: source.label.clone(),
                    remote,
                });
            }
            let topic = match (&entry.publish.endpoint, &entry.publish.topic) {
                (Some(endpoint), _) => self
                    .endpoint_input_topic(endpoint)
                    .map_err(|e| format!("mappings[{i}].publish: {e}"))?,
                (None, Some(topic)) => topic.clone(),
                (None, None) => return Err(format!("mappings[{i}]: a publish without a topic")),
            };
            let remote = entry
                .publish
                .connection
                .as_ref()
                .map(|c| self.remote_broker(c))
                .transpose()
                .map_err(|e| format!("mappings[{i}].publish: {e}"))?;
            entries.push(EntrySpec {
                sources,
                publish: PublishSpec {
                    topic,
                    qos: qos(entry.publish.qos.map_or(0, |q| q.0)),
                    retain: entry.publish.retain,
                    remote,
                },
                rules: entry.rules.clone(),
            });
        }
        let name = format!("{}::{}", service.id, resource.id);
        let chains = rule_engine::start_mapping(&name, entries, broker)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Running::Mapping(Some(chains)))
    }
}

/// A connection's counters for the status route: what it did, and for an MQTT connection its
/// sessions and the store-and-forward queue instead (it has no endpoints, so no values or
/// requests of its own: its data is what it forwards and receives).
fn connection_metrics(
    handle: &ConnectionHandle,
    remote: Option<&RemoteBroker>,
) -> Option<serde_json::Value> {
    let traffic = handle.traffic();
    let Some(remote) = remote else {
        return serde_json::to_value(traffic).ok();
    };
    let mut metrics = serde_json::json!({
        "failedAttempts": traffic.failed_attempts,
        "sessionsLost": traffic.sessions_lost,
    });
    if let (Some(all), Ok(serde_json::Value::Object(forwarding))) = (
        metrics.as_object_mut(),
        serde_json::to_value(remote.stats()),
    ) {
        all.extend(forwarding);
    }
    Some(metrics)
}

/// An endpoint's counters for the status route: its values, their last time and its errors,
/// and with rules the messages through them.
fn endpoint_metrics(
    connection: &ConnectionHandle,
    id: &str,
    rules: Option<&RunningChains>,
) -> Option<serde_json::Value> {
    let mut metrics =
        serde_json::to_value(connection.endpoint_traffic(id).unwrap_or_default()).ok()?;
    if let (Some(all), Some(serde_json::Value::Object(chain))) = (
        metrics.as_object_mut(),
        rules.and_then(|r| serde_json::to_value(r.stats()).ok()),
    ) {
        all.extend(chain);
    }
    Some(metrics)
}

/// What `/metrics` shows of one resource.
#[derive(Debug, Clone)]
pub struct ResourceMetrics {
    pub service: String,
    pub resource: String,
    /// Connections only.
    pub connected: Option<bool>,
    /// Connections only.
    pub traffic: Option<TrafficStats>,
    /// MQTT connections only.
    pub forwarding: Option<ForwardingStats>,
    /// Mappings and endpoints with rules.
    pub mapping: Option<rule_engine::StatsSnapshot>,
}

impl Supervisor {
    /// Counters of every running connection, mapping and endpoint chain, sorted by id.
    pub fn metrics(&self) -> Vec<ResourceMetrics> {
        let running = self.running();
        let mut all: Vec<ResourceMetrics> = running
            .iter()
            .filter_map(|((service, resource), running)| {
                let mut metrics = ResourceMetrics {
                    service: service.clone(),
                    resource: resource.clone(),
                    connected: None,
                    traffic: None,
                    forwarding: None,
                    mapping: None,
                };
                match running {
                    Running::Connection { handle, remote } => {
                        metrics.connected =
                            Some(handle.status().state == ConnectionState::Connected);
                        metrics.traffic = Some(handle.traffic());
                        metrics.forwarding = remote.as_ref().map(RemoteBroker::stats);
                    }
                    Running::Mapping(Some(chains))
                    | Running::Endpoint {
                        rules: Some(chains),
                        ..
                    } => metrics.mapping = Some(chains.stats()),
                    _ => return None,
                }
                Some(metrics)
            })
            .collect();
        all.sort_by(|a, b| (&a.service, &a.resource).cmp(&(&b.service, &b.resource)));
        all
    }
}

impl Supervisor {
    /// The running MQTT connection a mapping names with `connection: !ref`.
    fn remote_broker(&self, connection: &ResourceRef) -> Result<RemoteBroker, String> {
        let key = (connection.service.clone(), connection.resource.clone());
        match self.running().get(&key) {
            Some(Running::Connection {
                remote: Some(remote),
                ..
            }) => Ok(remote.clone()),
            Some(Running::Connection { remote: None, .. }) => {
                Err(format!("connection {connection} is not an MQTT connection"))
            }
            Some(Running::Elsewhere { agent, .. }) => Err(format!(
                "connection {connection} runs {}; a mapping that uses it must run there too (agentName)",
                match agent {
                    Some(agent) => format!("on agent {agent}"),
                    None => "on the gateway".to_string(),
                }
            )),
            _ => Err(format!("its connection {connection} is not running")),
        }
    }

    /// Where a mapping hears an endpoint: its data topic, or `/res` for read and write
    /// endpoints, whose results are answers.
    fn endpoint_output_topic(&self, endpoint: &ResourceRef) -> Result<String, String> {
        if let Some(topic) = self.opcua_node_topic(endpoint) {
            return Ok(topic);
        }
        let (topic, operation) = self.endpoint_topic(endpoint)?;
        Ok(match operation {
            Operation::Subscribe => topic,
            Operation::Read | Operation::Write => format!("{topic}/res"),
        })
    }

    /// Where a mapping sends to an endpoint: `/set` of a write endpoint (a device write) or
    /// `/req` of a read endpoint (a read request).
    fn endpoint_input_topic(&self, endpoint: &ResourceRef) -> Result<String, String> {
        if let Some(topic) = self.opcua_node_topic(endpoint) {
            return Ok(topic);
        }
        let (topic, operation) = self.endpoint_topic(endpoint)?;
        match operation {
            Operation::Write => Ok(format!("{topic}/set")),
            Operation::Read => Ok(format!("{topic}/req")),
            Operation::Subscribe => Err(format!(
                "endpoint {endpoint} subscribes to the device; publish to a write endpoint (or a read endpoint to trigger a read)"
            )),
        }
    }

    /// A variable of the OPC UA server named as a mapping's endpoint: its one topic, which
    /// feeds it and carries clients' writes.
    fn opcua_node_topic(&self, endpoint: &ResourceRef) -> Option<String> {
        let key = (endpoint.service.clone(), endpoint.resource.clone());
        match self.running().get(&key) {
            Some(Running::OpcuaServed { topic, .. }) => topic.clone(),
            _ => None,
        }
    }

    fn endpoint_topic(&self, endpoint: &ResourceRef) -> Result<(String, Operation), String> {
        let key = (endpoint.service.clone(), endpoint.resource.clone());
        match self.running().get(&key) {
            Some(
                Running::Endpoint {
                    topic, operation, ..
                }
                | Running::Elsewhere {
                    endpoint: Some((topic, operation)),
                    ..
                },
            ) => Ok((topic.clone(), *operation)),
            _ => Err(format!("its endpoint {endpoint} is not running")),
        }
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl ResourceRuntime for Supervisor {
    fn start<'a>(
        &'a self,
        service: &'a Service,
        resource: &'a Resource,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let running = self.start_resource(service, resource).await?;
            if let Running::Unavailable(reason) = &running {
                warn!(service = %service.id, resource = %resource.id, reason = %reason, "Resource recorded but not running");
            }
            self.running()
                .insert((service.id.clone(), resource.id.clone()), running);
            Ok(())
        })
    }

    fn stop<'a>(&'a self, service_id: &'a str, resource_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let removed = self
                .running()
                .remove(&(service_id.to_string(), resource_id.to_string()));
            match removed {
                Some(Running::Connection { handle, .. }) => handle.stop().await,
                Some(Running::Endpoint {
                    connection,
                    id,
                    rules,
                    ..
                }) => {
                    connection.remove_endpoint(&id).await;
                    if let Some(rules) = rules {
                        rules.stop().await;
                    }
                }
                Some(Running::Mapping(Some(chains))) => chains.stop().await,
                Some(Running::Served(_)) => self.http_nodes.remove(service_id, resource_id),
                Some(Running::OpcuaServed { .. }) => {
                    self.opcua_server.remove(service_id, resource_id).await;
                }
                Some(
                    Running::Mapping(None) | Running::Unavailable(_) | Running::Elsewhere { .. },
                )
                | None => {}
            }
        })
    }

    fn status(&self, service_id: &str, resource_id: &str) -> ResourceStatus {
        let running = self.running();
        let status = |state, in_target_state, message| ResourceStatus {
            state,
            in_target_state,
            message,
            metrics: None,
        };
        match running.get(&(service_id.to_string(), resource_id.to_string())) {
            None => status(ResourceState::Stopped, false, None),
            Some(Running::Unavailable(reason)) => {
                status(ResourceState::Unavailable, false, Some(reason.clone()))
            }
            Some(Running::Elsewhere {
                agent: Some(agent), ..
            }) => self.agents.status(agent, service_id, resource_id),
            Some(Running::Elsewhere { agent: None, .. }) => status(
                ResourceState::Stopped,
                true,
                Some("runs on the gateway".into()),
            ),
            Some(Running::Connection { handle, remote }) => {
                let current = handle.status();
                let wanted = match handle.target {
                    ConnectionTargetState::Connected => ConnectionState::Connected,
                    ConnectionTargetState::Disconnected => ConnectionState::Disconnected,
                };
                ResourceStatus {
                    metrics: connection_metrics(handle, remote.as_ref()),
                    ..status(
                        resource_state(current.state),
                        current.state == wanted,
                        current.last_error,
                    )
                }
            }
            Some(Running::Mapping(None)) => status(ResourceState::Disabled, true, None),
            Some(Running::Served(what)) => status(ResourceState::Running, true, what.clone()),
            Some(Running::OpcuaServed { what, .. }) => {
                status(ResourceState::Running, true, Some(what.clone()))
            }
            Some(Running::Mapping(Some(chains))) => {
                let stats = chains.stats();
                let metrics = serde_json::to_value(&stats).ok();
                let message = stats.last_error.map(|error| {
                    format!(
                        "{} messages dropped by its rules; the last because {error}",
                        stats.dropped
                    )
                });
                let current = match chains.is_running() {
                    true => status(ResourceState::Running, true, message),
                    false => status(
                        ResourceState::Stopped,
                        false,
                        Some("the broker link ended".into()),
                    ),
                };
                ResourceStatus { metrics, ..current }
            }
            Some(Running::Endpoint {
                connection,
                id,
                rules,
                ..
            }) => {
                let current = connection.status();
                let rules_error = rules.as_ref().and_then(|r| {
                    let stats = r.stats();
                    stats.last_error.map(|error| {
                        format!(
                            "{} values dropped by its rules; the last because {error}",
                            stats.dropped
                        )
                    })
                });
                let current = if current.state != ConnectionState::Connected {
                    let wanted = connection.target == ConnectionTargetState::Disconnected;
                    status(
                        ResourceState::WaitingForConnection,
                        wanted,
                        current.last_error,
                    )
                } else if let Some(error) = connection.endpoint_error(id) {
                    status(ResourceState::Error, false, Some(error))
                } else {
                    status(ResourceState::Running, true, rules_error)
                };
                ResourceStatus {
                    metrics: endpoint_metrics(connection, id, rules.as_ref()),
                    ..current
                }
            }
        }
    }

    fn service_state(&self, service_id: &str, state: ServiceState, last_error: Option<&str>) {
        let payload = serde_json::json!({
            "state": state.as_str(),
            "since": now_millis(),
            "lastError": last_error,
        });
        self.publish(status_topic(service_id), Bytes::from(payload.to_string()));
    }

    fn assign_agents(&self, service_id: &str, agents: &BTreeSet<String>, work: &AgentWork) {
        let previous = {
            let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            let previous = assigned.remove(service_id).unwrap_or_default();
            if !agents.is_empty() {
                assigned.insert(service_id.to_string(), agents.clone());
            }
            previous
        };
        let payload = Bytes::from(serde_json::to_vec(work).unwrap_or_default());
        for agent in agents {
            self.publish(work_topic(agent, service_id), payload.clone());
        }
        // An empty retained message takes the work back.
        for agent in previous.difference(agents) {
            self.publish(work_topic(agent, service_id), Bytes::new());
        }
    }

    fn service_removed(&self, service_id: &str) {
        // Generated OPC UA client keys and trusted certificates go with the service, and so
        // do messages still queued for its MQTT connections (disabling keeps them).
        for (folder, what) in
            protocol_mapper::connections::service_folders(&self.data_dir, service_id)
        {
            if folder.exists()
                && let Err(e) = std::fs::remove_dir_all(&folder)
            {
                warn!(service = %service_id, error = %e, "Cannot remove the {what}");
            }
        }
        // An empty retained message deletes the retained status, the service's and its
        // connections'.
        self.publish(status_topic(service_id), Bytes::new());
        let connections: Vec<Key> = {
            let mut with_status = self.with_status.lock().unwrap_or_else(|e| e.into_inner());
            let keys = with_status
                .iter()
                .filter(|(s, _)| s == service_id)
                .cloned()
                .collect();
            with_status.retain(|(s, _)| s != service_id);
            keys
        };
        for (service, resource) in connections {
            self.publish(
                protocol_mapper::status::connection_status_topic(&service, &resource),
                Bytes::new(),
            );
        }
    }
}

/// A connection's state as its service's status shows it.
fn resource_state(state: ConnectionState) -> ResourceState {
    match state {
        ConnectionState::Connecting => ResourceState::Connecting,
        ConnectionState::Connected => ResourceState::Connected,
        ConnectionState::Reconnecting => ResourceState::Reconnecting,
        ConnectionState::Disconnected => ResourceState::Disconnected,
    }
}

fn status_topic(service_id: &str) -> String {
    format!("$SYS/ironbridge/services/{service_id}/status")
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Publishes queued status messages, retained, through the supervisor's broker link.
pub async fn publish_statuses(
    broker: Connector,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    stop: CancellationToken,
) {
    let client = match broker.connect("ironbridge/supervisor").await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "Cannot connect the supervisor to the broker; service states are not published");
            return;
        }
    };
    loop {
        let (topic, payload) = tokio::select! {
            _ = stop.cancelled() => break,
            next = rx.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        if let Err(e) = client
            .publish(Message::new(topic, payload, QoS::AtLeastOnce, true))
            .await
        {
            warn!(error = %e, "Cannot publish a service status");
        }
    }
    client.disconnect().await;
}
