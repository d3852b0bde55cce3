//! `Cybus::Server::Opcua` and `Cybus::Node::Opcua`: the gateway's one OPC UA server and the
//! nodes services add to it, bridged to the broker. A variable that the server provides is set
//! from each message on its topic (`{"value"}` or the whole payload, the payload's `timestamp` as
//! source timestamp); what a client writes to a variable the server receives is published on its
//! topic as `{"timestamp","value"}` (and becomes the variable's value).
//!
//! The server belongs to the first service that declares one; another service's server does
//! not start and its error names the owner. Nodes of any service may hang below it; deleting a
//! service removes its nodes, deleting the server's service stops the server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use admin::Admin;
use admin::services::BoxFuture;
use broker::bus::{Connector, Link};
use broker::{Message, QoS};
use commissioning::model::{OpcuaNode, OpcuaServer, OpcuaServerNodeType};
use protocol_mapper::opcua::server::{
    ClientWrite, GatewayServer, ServerSettings, UserAccess, VariableSpec,
};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

type Key = (String, String);

/// Topic subscriptions the bridge is asked to change.
enum Bridge {
    Feed { topic: String, node: String },
    Unfeed { topic: String, node: String },
}

/// The server, when one runs, and its nodes.
/// Node id to the topic its clients' writes are published on.
type Receiving = Arc<Mutex<HashMap<String, String>>>;

#[derive(Default)]
pub struct OpcuaServers {
    data_dir: PathBuf,
    users: OnceLock<Arc<dyn UserAccess>>,
    /// Shared with the users' check: a write is allowed by the topic it goes to.
    receiving: Receiving,
    state: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    owner: Key,
    server: Arc<GatewayServer>,
    commands: mpsc::UnboundedSender<Bridge>,
    bridge: JoinHandle<()>,
    /// Node resource to its node id and, for a variable the server provides, its topic.
    nodes: HashMap<Key, (String, Option<String>)>,
}

impl OpcuaServers {
    pub fn new(data_dir: &std::path::Path) -> OpcuaServers {
        OpcuaServers {
            data_dir: data_dir.to_path_buf(),
            ..OpcuaServers::default()
        }
    }

    /// Who may open a session with a user name, and write which variable: the gateway's users
    /// and their permissions, checked by `admin`.
    pub fn check_users_with(&self, admin: Weak<Admin>) {
        let _ = self.users.set(Arc::new(AdminUsers {
            admin,
            receiving: self.receiving.clone(),
        }));
    }

    /// Where the server keeps its certificate and the clients' (`trusted/`, `rejected/`).
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("opcua-server").join("pki")
    }

    /// Starts the server of `(service, resource)`; an error when another one runs.
    pub async fn add_server(
        &self,
        broker: &Connector,
        service: &str,
        resource: &str,
        spec: &OpcuaServer,
    ) -> Result<String, String> {
        let mut state = self.state.lock().await;
        if let Some(running) = state.as_ref() {
            return Err(format!(
                "the gateway runs one OPC UA server, and {}::{} has it",
                running.owner.0, running.owner.1
            ));
        }
        let users = self
            .users
            .get()
            .cloned()
            .ok_or("the OPC UA server cannot check users yet")?;
        let settings = ServerSettings {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], spec.port)),
            resource_path: spec.resource_path.clone(),
            application_uri: spec.application_uri.clone(),
            hostname: spec.hostname.clone(),
            alternate_hostnames: spec.alternate_hostname.clone(),
            allow_anonymous: spec.allow_anonymous,
            endpoints: spec.endpoints(),
            pki_dir: self.pki_dir(),
        };
        let (server, writes) = GatewayServer::start(settings, users).await?;
        let server = Arc::new(server);
        let link = broker
            .connect(&format!("ironbridge/{service}/{resource}"))
            .await
            .map_err(|e| format!("cannot reach the broker: {e}"))?;
        let (commands, requests) = mpsc::unbounded_channel();
        let bridge = tokio::spawn(bridge(
            link,
            server.clone(),
            requests,
            writes,
            self.receiving.clone(),
        ));
        let url = format!(
            "opc.tcp://{}:{}{}",
            spec.hostname,
            server.addr.port(),
            spec.resource_path
        );
        *state = Some(Running {
            owner: (service.into(), resource.into()),
            server,
            commands,
            bridge,
            nodes: HashMap::new(),
        });
        Ok(format!("serves {url}"))
    }

    /// Adds a node below its parent (the server, or a node added before). Returns what the
    /// status says of it.
    pub async fn add_node(
        &self,
        service: &str,
        resource: &str,
        node: &OpcuaNode,
        topic: String,
    ) -> Result<String, String> {
        let mut state = self.state.lock().await;
        let running = state
            .as_mut()
            .ok_or_else(|| format!("its server {} is not running", node.parent))?;
        let parent_key = (node.parent.service.clone(), node.parent.resource.clone());
        let parent = match running.nodes.get(&parent_key) {
            Some((id, _)) => Some(id.clone()),
            None if parent_key == running.owner => None,
            None => return Err(format!("its parent {} is not running", node.parent)),
        };
        let id = node
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{service}.{resource}"));
        if running.server.contains(&id) {
            return Err(format!(
                "node id {} is taken by another node",
                running.server.client_node_id(&id)
            ));
        }
        let key: Key = (service.into(), resource.into());
        let client_id = running.server.client_node_id(&id);
        match node.node_type {
            OpcuaServerNodeType::Object => {
                running
                    .server
                    .add_folder(&id, &node.browse_name, parent.as_deref());
                running.nodes.insert(key, (id, None));
                Ok(format!("folder {client_id}"))
            }
            OpcuaServerNodeType::Variable => {
                let operation = node.operation.unwrap_or_default();
                let data_type = node.data_type.ok_or("a Variable needs its dataType")?;
                running.server.add_variable(VariableSpec {
                    node: id.clone(),
                    browse_name: node.browse_name.clone(),
                    parent,
                    data_type,
                    array: node.value_rank == 1,
                    writable: operation.receives(),
                    initial: node.initial_value.clone(),
                })?;
                if operation.receives() {
                    self.receiving
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone(), topic.clone());
                }
                let fed = operation.provides().then(|| topic.clone());
                if let Some(topic) = &fed {
                    let _ = running.commands.send(Bridge::Feed {
                        topic: topic.clone(),
                        node: id.clone(),
                    });
                }
                running.nodes.insert(key, (id, fed));
                Ok(format!("variable {client_id} on {topic}"))
            }
            OpcuaServerNodeType::Method => Err("Method nodes are not supported".into()),
        }
    }

    /// Removes a node, or stops the server when it is the server.
    pub async fn remove(&self, service: &str, resource: &str) {
        let key: Key = (service.into(), resource.into());
        let mut state = self.state.lock().await;
        let Some(running) = state.as_mut() else {
            return;
        };
        if running.owner == key {
            if let Some(running) = state.take() {
                running.bridge.abort();
                running.server.stop().await;
            }
            self.receiving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            return;
        }
        if let Some((id, fed)) = running.nodes.remove(&key) {
            if let Some(topic) = fed {
                let _ = running.commands.send(Bridge::Unfeed {
                    topic,
                    node: id.clone(),
                });
            }
            self.receiving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            running.server.remove(&id);
        }
    }
}

/// Moves values between the broker and the server: messages on fed topics set variables, client
/// writes are published on their node's topic.
async fn bridge(
    mut link: Link,
    server: Arc<GatewayServer>,
    mut commands: mpsc::UnboundedReceiver<Bridge>,
    mut writes: mpsc::Receiver<ClientWrite>,
    receiving: Arc<Mutex<HashMap<String, String>>>,
) {
    let mut fed: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Bridge::Feed { topic, node }) => {
                    let nodes = fed.entry(topic.clone()).or_default();
                    if nodes.is_empty()
                        && let Err(e) = link.subscribe(&topic, QoS::AtLeastOnce).await
                    {
                        warn!(topic = %topic, error = %e, "The OPC UA server cannot subscribe");
                    }
                    nodes.push(node);
                }
                Some(Bridge::Unfeed { topic, node }) => {
                    if let Some(nodes) = fed.get_mut(&topic) {
                        nodes.retain(|n| *n != node);
                        if nodes.is_empty() {
                            fed.remove(&topic);
                            let _ = link.unsubscribe(&topic).await;
                        }
                    }
                }
            },
            delivery = link.recv() => {
                let Some(delivery) = delivery else { return };
                let Some(nodes) = fed.get(&delivery.message.topic[..]) else { continue };
                let (value, timestamp) = value_of(&delivery.message.payload);
                for node in nodes {
                    if let Err(e) = server.set_value(node, &value, timestamp) {
                        warn!(node = %node, error = %e, "A value for the OPC UA server does not fit");
                    }
                }
            }
            write = writes.recv() => {
                let Some(write) = write else { return };
                let topic = receiving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&write.node)
                    .cloned();
                let Some(topic) = topic else { continue };
                // The write becomes the variable's value for reads and subscribers.
                let _ = server.set_value(&write.node, &write.value, Some(write.timestamp));
                let payload = json!({"timestamp": write.timestamp, "value": write.value});
                let message = Message::new(topic, payload.to_string(), QoS::AtLeastOnce, false);
                if let Err(e) = link.publish(message).await {
                    warn!(error = %e, "A client's write could not be published");
                }
            }
        }
    }
}

/// A message's value (`{"value"}` or the whole payload) and its `timestamp`, if any.
fn value_of(payload: &[u8]) -> (Json, Option<i64>) {
    match serde_json::from_slice::<Json>(payload) {
        Ok(Json::Object(mut object)) if object.contains_key("value") => {
            let timestamp = object.get("timestamp").and_then(Json::as_i64);
            (object.remove("value").unwrap_or(Json::Null), timestamp)
        }
        Ok(value) => (value, None),
        Err(_) => (
            Json::String(String::from_utf8_lossy(payload).into_owned()),
            None,
        ),
    }
}

/// User names and passwords checked as the REST API and the broker check them; a client's
/// write is published in its user's name, so it needs that user's mqtt write permission on the
/// variable's topic.
struct AdminUsers {
    admin: Weak<Admin>,
    receiving: Receiving,
}

impl UserAccess for AdminUsers {
    fn may_write(&self, user: Option<&str>, node: &str) -> bool {
        // Anonymous sessions exist only where the server's `allowAnonymous` lets them in, as
        // anonymous MQTT clients publish wherever the broker's `allow_anonymous` lets them.
        let Some(user) = user else {
            return true;
        };
        let topic = self
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned();
        match (topic, self.admin.upgrade()) {
            (Some(topic), Some(admin)) => admin.may_publish(user, &topic),
            _ => false,
        }
    }

    fn check<'a>(&'a self, username: &'a str, password: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(admin) = self.admin.upgrade() else {
                return false;
            };
            admin
                .check_basic_credentials(username, password, None)
                .await
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_from_the_payload() {
        assert_eq!(
            value_of(br#"{"timestamp": 5, "value": 21.5}"#),
            (json!(21.5), Some(5))
        );
        assert_eq!(value_of(b"42"), (json!(42), None));
        assert_eq!(value_of(br#"{"a": 1}"#), (json!({"a": 1}), None));
        assert_eq!(value_of(b"on"), (json!("on"), None));
    }
}
