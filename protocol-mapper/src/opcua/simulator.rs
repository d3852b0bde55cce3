//! An in-process OPC UA server on async-opcua, standing in for a CNC controller in tests,
//! benchmarks and the demo. Variables live in a `Machine` folder under Objects. async-opcua's
//! server notifies subscribers only through `set_value` (and clients' writes, which its node
//! manager stores itself), so every change here goes through `set_value`.
//!
//! Endpoints: security None, and Basic256Sha256 with Sign and SignAndEncrypt; anonymous and
//! username/password identities. The server's certificate is generated into `pki_dir` once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use opcua::crypto::SecurityPolicy;
use opcua::server::address_space::{AccessLevel, VariableBuilder};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerHandle, ServerUserToken};
use opcua::types::{DataValue, MessageSecurityMode, ObjectId, QualifiedName};
use tokio::net::TcpListener;

/// The types of the simulator's API, so its users need no OPC UA dependency of their own.
pub use opcua::types::{NodeId, Variant};

/// Distinct from the application URI, which the server's diagnostics node manager owns.
const NAMESPACE: &str = "urn:ironbridge:simulator:machine";
const USER_TOKEN: &str = "operator";

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Host name in the endpoint URLs and the certificate.
    pub host: String,
    /// A username and password accepted besides anonymous access.
    pub user: Option<(String, String)>,
    /// Where the server keeps its certificate and trusted client certificates.
    pub pki_dir: PathBuf,
}

pub struct OpcuaSimulator {
    pub addr: SocketAddr,
    /// Index of the simulator's namespace, `2` on a fresh server.
    pub namespace: u16,
    handle: ServerHandle,
    manager: Arc<SimpleNodeManager>,
    folder: NodeId,
    /// The server until [`OpcuaSimulator::serve`] starts it, then its task.
    server: Option<(opcua::server::Server, TcpListener)>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Changes the simulator's values; see [`OpcuaSimulator::value_setter`].
#[derive(Clone)]
pub struct ValueSetter {
    handle: ServerHandle,
    manager: Arc<SimpleNodeManager>,
}

impl ValueSetter {
    /// Sets many values at once: one lock and one notification pass.
    pub fn set_values(
        &self,
        values: impl Iterator<Item = (NodeId, Variant)>,
    ) -> Result<(), String> {
        let values: Vec<(NodeId, DataValue)> = values
            .map(|(node, value)| (node, DataValue::new_now(value)))
            .collect();
        self.manager
            .set_values(
                self.handle.subscriptions(),
                values
                    .iter()
                    .map(|(node, value)| (node, None, value.clone())),
            )
            .map_err(|status| format!("cannot set values: {status}"))
    }
}

impl OpcuaSimulator {
    /// Builds and serves at once.
    pub async fn start(config: SimulatorConfig) -> Result<OpcuaSimulator, String> {
        let mut simulator = OpcuaSimulator::build(config).await?;
        simulator.serve();
        Ok(simulator)
    }

    /// Builds the server and binds its port without accepting clients yet, so variables can be
    /// added first (as a real controller has its address space before it listens).
    pub async fn build(config: SimulatorConfig) -> Result<OpcuaSimulator, String> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let mut tokens = vec![ANONYMOUS_USER_TOKEN_ID];
        let mut builder = ServerBuilder::new()
            .application_name("Ironbridge CNC simulator")
            .application_uri("urn:ironbridge:simulator")
            .product_uri("urn:ironbridge:simulator")
            .create_sample_keypair(true)
            .pki_dir(&config.pki_dir)
            .host(config.host.clone())
            .port(addr.port())
            .trust_client_certs(true)
            .discovery_urls(vec![format!("opc.tcp://{}:{}/", config.host, addr.port())])
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: NAMESPACE.to_string(),
                    ..Default::default()
                },
                "simulator",
            ));
        if let Some((user, password)) = &config.user {
            builder =
                builder.add_user_token(USER_TOKEN, ServerUserToken::user_pass(user, password));
            tokens.push(USER_TOKEN);
        }
        let endpoints = [
            ("none", SecurityPolicy::None, MessageSecurityMode::None),
            (
                "basic256sha256_sign",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::Sign,
            ),
            (
                "basic256sha256_sign_encrypt",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
            ),
        ];
        for (id, policy, mode) in endpoints {
            builder = builder.add_endpoint(id, ("/", policy, mode, &tokens as &[&str]));
        }
        let limits = builder.limits_mut();
        limits.max_array_length = 1_000_000;
        limits.max_message_size = super::connection::MAX_MESSAGE_BYTES;
        limits.max_chunk_count = super::connection::MAX_CHUNKS;
        limits.subscriptions.max_monitored_items_per_sub = 100_000;
        limits.operational.max_monitored_items_per_call = 10_000;
        let (server, handle) = builder.build()?;
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .ok_or("the simulator's node manager is missing")?;
        let namespace = handle
            .get_namespace_index(NAMESPACE)
            .ok_or("the simulator's namespace is missing")?;
        let folder = NodeId::new(namespace, "Machine");
        manager.address_space().write().add_folder(
            &folder,
            QualifiedName::new(namespace, "Machine"),
            "Machine",
            &ObjectId::ObjectsFolder.into(),
        );
        Ok(OpcuaSimulator {
            addr,
            namespace,
            handle,
            manager,
            folder,
            server: Some((server, listener)),
            task: None,
        })
    }

    /// Starts accepting clients.
    pub fn serve(&mut self) {
        if let Some((server, listener)) = self.server.take() {
            self.task = Some(tokio::spawn(async move {
                if let Err(e) = server.run_with(listener).await {
                    tracing::warn!(error = %e, "OPC UA simulator stopped");
                }
            }));
        }
    }

    /// Adds `Machine.<name>` (browse path `/0:Objects/<ns>:Machine/<ns>:<name>`). A writable
    /// variable takes clients' writes, and subscribers see them.
    pub fn add_variable(&self, name: &str, value: impl Into<Variant>, writable: bool) -> NodeId {
        let node = NodeId::new(self.namespace, format!("Machine.{name}"));
        let value: Variant = value.into();
        let access = if writable {
            AccessLevel::CURRENT_READ | AccessLevel::CURRENT_WRITE
        } else {
            AccessLevel::CURRENT_READ
        };
        let mut builder =
            VariableBuilder::new(&node, QualifiedName::new(self.namespace, name), name)
                .access_level(access)
                .user_access_level(access);
        if let Some(data_type) = value.data_type() {
            builder = builder.data_type(data_type.node_id);
        }
        let variable = builder.value(value).build();
        self.manager
            .address_space()
            .write()
            .add_variables(vec![variable], &self.folder);
        node
    }

    /// Sets a value now, notifying subscribers.
    pub fn set_value(&self, node: &NodeId, value: impl Into<Variant>) -> Result<(), String> {
        self.manager
            .set_value(
                self.handle.subscriptions(),
                node,
                None,
                DataValue::new_now(value.into()),
            )
            .map_err(|status| format!("cannot set {node}: {status}"))
    }

    /// Sets many values at once: one lock and one notification pass.
    pub fn set_values(
        &self,
        values: impl Iterator<Item = (NodeId, Variant)>,
    ) -> Result<(), String> {
        self.value_setter().set_values(values)
    }

    /// A handle that changes values from another task while the simulator itself stays with
    /// its owner (who alone can stop it).
    pub fn value_setter(&self) -> ValueSetter {
        ValueSetter {
            handle: self.handle.clone(),
            manager: self.manager.clone(),
        }
    }

    /// The current value of a variable.
    pub fn value(&self, node: &NodeId) -> Option<Variant> {
        let space = self.manager.address_space().read();
        match space.find(node)? {
            opcua::server::address_space::NodeType::Variable(variable) => {
                variable
                    .value(
                        opcua::types::TimestampsToReturn::Neither,
                        &opcua::types::NumericRange::None,
                        &opcua::types::DataEncoding::Binary,
                        0.0,
                    )
                    .value
            }
            _ => None,
        }
    }

    /// Stops the server and closes its sockets.
    pub async fn stop(self) {
        self.handle.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}
