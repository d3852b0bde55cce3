//! The gateway's OPC UA server (`Cybus::Server::Opcua`) on async-opcua: endpoints for the
//! configured security policies and modes, anonymous access only when allowed, user names and
//! passwords checked by the gateway (against its own users) and offered only on secure
//! endpoints, the server's certificate generated once into its folder and clients' certificates
//! trusted once an administrator moves them from `rejected/` to `trusted/` there.
//!
//! The address space is one namespace below the Objects folder: folders and variables added and
//! removed while the server runs. A variable's value is set from JSON (converted to its data
//! type, with the message's timestamp as source timestamp); what a client writes to a writable
//! variable is handed out as JSON on a bounded channel. Node ids are strings here
//! (`ns=1;s=spindleSpeed` keeps its identifier, in this server's namespace), so the gateway needs
//! no OPC UA types.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commissioning::model::{
    MessageSecurityMode as Mode, OpcuaServerDataType, SecurityPolicy as Policy,
};
use futures_util::future::BoxFuture;
use opcua::server::address_space::{AccessLevel, VariableBuilder};
use opcua::server::authenticator::{
    AuthManager, Password, UserToken, user_pass_security_policy_id, user_pass_security_policy_uri,
};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{
    ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerEndpoint, ServerHandle, ServerUserToken,
};
use opcua::types::{
    ContextOwned, DataTypeId, DataValue, DateTime, Error, MessageSecurityMode, NodeId, ObjectId,
    QualifiedName, StatusCode, UAString, UserTokenPolicy, UserTokenType, Variant,
    VariantScalarTypeId,
};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::connection::{security_mode, security_policy};
use super::convert;

/// The namespace of everything the services add.
pub const NAMESPACE: &str = "urn:ironbridge:gateway:nodes";
/// Client writes waiting for the gateway; beyond this a write is refused (BadTooManyOperations)
/// rather than queued without bound.
const WRITE_QUEUE: usize = 1024;
/// How often subscriptions are looked at for changes to publish, ms.
const SUBSCRIPTION_TICK_MS: u64 = 20;
/// Endpoint and user-token ids: one for every user name the gateway checks.
const USER_TOKEN: &str = "ironbridge-users";

/// Who may do what on the server: the gateway's users and their permissions.
pub trait UserAccess: Send + Sync + 'static {
    /// Whether a user name and password may open a session.
    fn check<'a>(&'a self, username: &'a str, password: &'a str) -> BoxFuture<'a, bool>;

    /// Whether a session's user (`None`: anonymous) may write the variable `node` (its id as
    /// [`VariableSpec::node`] gave it). Asked on every write, and when a client reads the
    /// variable's `UserAccessLevel`; `false` answers the write with `BadUserAccessDenied`.
    fn may_write(&self, user: Option<&str>, node: &str) -> bool;
}

/// Writable variables by node id, to the id [`VariableSpec::node`] gave them: what
/// [`UserAccess::may_write`] is asked about.
type Writable = Arc<Mutex<HashMap<NodeId, String>>>;

pub struct ServerSettings {
    /// Where to listen, e.g. `0.0.0.0:4841`.
    pub listen: std::net::SocketAddr,
    pub resource_path: String,
    pub application_uri: String,
    pub hostname: String,
    pub alternate_hostnames: Vec<String>,
    pub allow_anonymous: bool,
    pub endpoints: Vec<(Policy, Mode)>,
    /// The server's certificate and the trusted and rejected client certificates.
    pub pki_dir: PathBuf,
}

/// A value an OPC UA client wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientWrite {
    /// The node id as the gateway named it.
    pub node: String,
    pub value: Json,
    /// Milliseconds since the epoch: the write's source timestamp, or when it arrived.
    pub timestamp: i64,
}

/// A variable to add.
pub struct VariableSpec {
    pub node: String,
    pub browse_name: String,
    /// The folder it goes in (a node id given before); the Objects folder when `None`.
    pub parent: Option<String>,
    pub data_type: OpcuaServerDataType,
    pub array: bool,
    pub writable: bool,
    pub initial: Option<Json>,
}

pub struct GatewayServer {
    pub addr: std::net::SocketAddr,
    namespace: u16,
    handle: ServerHandle,
    manager: Arc<SimpleNodeManager>,
    /// The scalar type of each variable, for converting values set from JSON.
    types: Mutex<HashMap<NodeId, VariantScalarTypeId>>,
    writable: Writable,
    writes: mpsc::Sender<ClientWrite>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl GatewayServer {
    /// Binds the port and starts serving; client writes arrive on the receiver.
    pub async fn start(
        settings: ServerSettings,
        users: Arc<dyn UserAccess>,
    ) -> Result<(GatewayServer, mpsc::Receiver<ClientWrite>), String> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let writable = Writable::default();
        let mut tokens = vec![USER_TOKEN];
        if settings.allow_anonymous {
            tokens.push(ANONYMOUS_USER_TOKEN_ID);
        }
        let mut builder = ServerBuilder::new()
            .application_name("Ironbridge")
            .application_uri(settings.application_uri.clone())
            .product_uri("urn:ironbridge")
            .create_sample_keypair(true)
            .pki_dir(&settings.pki_dir)
            .host(settings.hostname.clone())
            .port(addr.port())
            // Client certificates are trusted when an administrator moves them from the
            // folder's `rejected/` to `trusted/`, as OPC UA servers do.
            .trust_client_certs(false)
            // The certificate names `hostname`; the other names the machine has are announced
            // as discovery URLs.
            .discovery_urls(
                std::iter::once(&settings.hostname)
                    .chain(&settings.alternate_hostnames)
                    .map(|host| {
                        format!("opc.tcp://{host}:{}{}", addr.port(), settings.resource_path)
                    })
                    .collect(),
            )
            // The configuration must name the user token its endpoints offer; who may use it
            // is decided by `Users`, never by this entry.
            .add_user_token(
                USER_TOKEN,
                ServerUserToken::user_pass("checked by the gateway", ""),
            )
            .with_authenticator(Arc::new(Users {
                check: users,
                allow_anonymous: settings.allow_anonymous,
                writable: writable.clone(),
            }))
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: NAMESPACE.to_string(),
                    ..Default::default()
                },
                "ironbridge",
            ));
        let path = if settings.resource_path.is_empty() {
            "/".to_string()
        } else {
            settings.resource_path.clone()
        };
        for (policy, mode) in &settings.endpoints {
            let id = format!("{policy:?}_{mode:?}");
            builder = builder.add_endpoint(
                id,
                (
                    path.as_str(),
                    security_policy(*policy),
                    security_mode(*mode),
                    &tokens as &[&str],
                ),
            );
        }
        // Subscriptions are served on a 20 ms tick instead of async-opcua's 100 ms: a value fed
        // from MQTT waits less for its publishing interval to come round (measured in
        // BENCHMARKS.md), for a few percent of a core with 10,000 monitored items.
        builder = builder.subscription_poll_interval_ms(SUBSCRIPTION_TICK_MS);
        let limits = builder.limits_mut();
        limits.max_array_length = 1_000_000;
        limits.subscriptions.max_monitored_items_per_sub = 100_000;
        limits.operational.max_monitored_items_per_call = 10_000;
        let (server, handle) = builder.build()?;
        let manager = handle
            .node_managers()
            .get_of_type::<SimpleNodeManager>()
            .ok_or("the server's node manager is missing")?;
        let namespace = handle
            .get_namespace_index(NAMESPACE)
            .ok_or("the server's namespace is missing")?;
        let (writes, received) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(async move {
            if let Err(e) = server.run_with(listener).await {
                tracing::warn!(error = %e, "The OPC UA server stopped");
            }
        });
        Ok((
            GatewayServer {
                addr,
                namespace,
                handle,
                manager,
                types: Mutex::default(),
                writable,
                writes,
                task: Mutex::new(Some(task)),
            },
            received,
        ))
    }

    /// The node id a service's node gets: its identifier in this server's namespace.
    fn node_id(&self, text: &str) -> NodeId {
        match text.parse::<NodeId>() {
            Ok(id) => NodeId {
                namespace: self.namespace,
                identifier: id.identifier,
            },
            Err(_) => NodeId::new(self.namespace, text),
        }
    }

    fn parent_id(&self, parent: Option<&str>) -> NodeId {
        parent.map_or_else(|| ObjectId::ObjectsFolder.into(), |p| self.node_id(p))
    }

    /// The node id as clients see it (`ns=2;s=spindleSpeed`).
    pub fn client_node_id(&self, text: &str) -> String {
        self.node_id(text).to_string()
    }

    /// Whether a node with this id exists.
    pub fn contains(&self, node: &str) -> bool {
        let id = self.node_id(node);
        self.manager.address_space().read().find(&id).is_some()
    }

    /// Adds a folder.
    pub fn add_folder(&self, node: &str, browse_name: &str, parent: Option<&str>) {
        let id = self.node_id(node);
        self.manager.address_space().write().add_folder(
            &id,
            QualifiedName::new(self.namespace, browse_name),
            browse_name,
            &self.parent_id(parent),
        );
    }

    /// Adds a variable; a writable one hands what clients write to the write channel.
    pub fn add_variable(&self, spec: VariableSpec) -> Result<(), String> {
        let id = self.node_id(&spec.node);
        let scalar = scalar_type(spec.data_type);
        let initial = match &spec.initial {
            Some(value) => convert::from_json(value, scalar)?,
            None => Variant::Empty,
        };
        let access = if spec.writable {
            AccessLevel::CURRENT_READ | AccessLevel::CURRENT_WRITE
        } else {
            AccessLevel::CURRENT_READ
        };
        let mut builder = VariableBuilder::new(
            &id,
            QualifiedName::new(self.namespace, &spec.browse_name),
            spec.browse_name.as_str(),
        )
        .data_type(data_type_id(spec.data_type))
        .access_level(access)
        .user_access_level(access)
        .value(initial);
        if spec.array {
            builder = builder.value_rank(1);
        }
        let variable = builder.build();
        self.manager
            .address_space()
            .write()
            .add_variables(vec![variable], &self.parent_id(spec.parent.as_deref()));
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), scalar);
        if spec.writable {
            self.writable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), spec.node.clone());
            let writes = self.writes.clone();
            let name = spec.node.clone();
            self.manager
                .inner()
                .add_write_callback(id, move |value, _range| {
                    let Some(variant) = value.value.as_ref() else {
                        return StatusCode::BadNothingToDo;
                    };
                    let json = convert::to_json(variant, &ContextOwned::default().context());
                    let timestamp = value
                        .source_timestamp
                        .map(|t| t.as_chrono().timestamp_millis())
                        .unwrap_or_else(crate::envelope::now_millis);
                    match writes.try_send(ClientWrite {
                        node: name.clone(),
                        value: json,
                        timestamp,
                    }) {
                        Ok(()) => StatusCode::Good,
                        Err(_) => StatusCode::BadTooManyOperations,
                    }
                });
        }
        Ok(())
    }

    /// Sets a variable's value from JSON (converted to its data type); subscribers are told.
    pub fn set_value(
        &self,
        node: &str,
        value: &Json,
        timestamp: Option<i64>,
    ) -> Result<(), String> {
        let id = self.node_id(node);
        let scalar = *self
            .types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .ok_or_else(|| format!("{node} is not a variable of this server"))?;
        let variant = convert::from_json(value, scalar)?;
        let mut data = DataValue::new_now(variant);
        if let Some(source) = timestamp.and_then(chrono::DateTime::from_timestamp_millis) {
            data.source_timestamp = Some(DateTime::from(source));
        }
        self.manager
            .set_value(self.handle.subscriptions(), &id, None, data)
            .map_err(|status| format!("cannot set {node}: {status}"))
    }

    /// Removes a node and what is below it.
    pub fn remove(&self, node: &str) {
        let id = self.node_id(node);
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.writable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.manager.address_space().write().delete(&id, true);
    }

    /// Stops the server and closes its port.
    pub async fn stop(&self) {
        self.handle.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Anonymous access where allowed; user names and passwords through the gateway's check, and
/// only on endpoints with message security (a password never crosses the network in clear).
struct Users {
    check: Arc<dyn UserAccess>,
    allow_anonymous: bool,
    writable: Writable,
}

#[async_trait]
impl AuthManager for Users {
    async fn authenticate_anonymous_token(&self, endpoint: &ServerEndpoint) -> Result<(), Error> {
        match self.allow_anonymous && endpoint.user_token_ids.contains(ANONYMOUS_USER_TOKEN_ID) {
            true => Ok(()),
            false => Err(Error::new(
                StatusCode::BadIdentityTokenRejected,
                "anonymous access is not allowed",
            )),
        }
    }

    async fn authenticate_username_identity_token(
        &self,
        endpoint: &ServerEndpoint,
        username: &str,
        password: &Password,
    ) -> Result<UserToken, Error> {
        if endpoint.security_mode == MessageSecurityMode::None.to_string()
            || !self.check.check(username, password.get()).await
        {
            return Err(Error::new(
                StatusCode::BadUserAccessDenied,
                format!("cannot authenticate user {username:?}"),
            ));
        }
        Ok(UserToken(username.to_string()))
    }

    /// A writable variable is writable for this session's user only if the gateway says so;
    /// async-opcua refuses a write without `CURRENT_WRITE` before it reaches the callback.
    fn effective_user_access_level(
        &self,
        token: &UserToken,
        user_access_level: AccessLevel,
        node_id: &NodeId,
    ) -> AccessLevel {
        if !user_access_level.contains(AccessLevel::CURRENT_WRITE) {
            return user_access_level;
        }
        let node = self
            .writable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node_id)
            .cloned();
        let Some(node) = node else {
            return user_access_level;
        };
        let user = (!token.is_anonymous()).then_some(token.0.as_str());
        match self.check.may_write(user, &node) {
            true => user_access_level,
            false => user_access_level - AccessLevel::CURRENT_WRITE,
        }
    }

    fn user_token_policies(&self, endpoint: &ServerEndpoint) -> Vec<UserTokenPolicy> {
        let mut policies = Vec::with_capacity(2);
        if self.allow_anonymous {
            policies.push(UserTokenPolicy {
                policy_id: UAString::from("anonymous"),
                token_type: UserTokenType::Anonymous,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: UAString::null(),
            });
        }
        if endpoint.security_mode != MessageSecurityMode::None.to_string() {
            policies.push(UserTokenPolicy {
                policy_id: user_pass_security_policy_id(endpoint),
                token_type: UserTokenType::UserName,
                issued_token_type: UAString::null(),
                issuer_endpoint_url: UAString::null(),
                security_policy_uri: user_pass_security_policy_uri(endpoint),
            });
        }
        policies
    }
}

fn scalar_type(data_type: OpcuaServerDataType) -> VariantScalarTypeId {
    use OpcuaServerDataType as T;
    match data_type {
        T::Boolean => VariantScalarTypeId::Boolean,
        T::SByte => VariantScalarTypeId::SByte,
        T::Byte => VariantScalarTypeId::Byte,
        T::Int16 => VariantScalarTypeId::Int16,
        T::UInt16 => VariantScalarTypeId::UInt16,
        T::Int32 => VariantScalarTypeId::Int32,
        T::UInt32 => VariantScalarTypeId::UInt32,
        T::Int64 => VariantScalarTypeId::Int64,
        T::UInt64 => VariantScalarTypeId::UInt64,
        T::Float => VariantScalarTypeId::Float,
        T::Double => VariantScalarTypeId::Double,
        T::String => VariantScalarTypeId::String,
        T::DateTime => VariantScalarTypeId::DateTime,
        T::ByteString => VariantScalarTypeId::ByteString,
    }
}

fn data_type_id(data_type: OpcuaServerDataType) -> DataTypeId {
    use OpcuaServerDataType as T;
    match data_type {
        T::Boolean => DataTypeId::Boolean,
        T::SByte => DataTypeId::SByte,
        T::Byte => DataTypeId::Byte,
        T::Int16 => DataTypeId::Int16,
        T::UInt16 => DataTypeId::UInt16,
        T::Int32 => DataTypeId::Int32,
        T::UInt32 => DataTypeId::UInt32,
        T::Int64 => DataTypeId::Int64,
        T::UInt64 => DataTypeId::UInt64,
        T::Float => DataTypeId::Float,
        T::Double => DataTypeId::Double,
        T::String => DataTypeId::String,
        T::DateTime => DataTypeId::DateTime,
        T::ByteString => DataTypeId::ByteString,
    }
}
