//! The OPC UA client driver: opens a session with the configured security and identity, groups
//! subscribe endpoints into one subscription per `publishInterval`, answers `/req` (read) and
//! `/set` (write, converted to the node's data type).
//!
//! Reconnecting is the shared state machine's, not async-opcua's: the library is told never to
//! retry, and when the session is lost the machine waits out the `connectionStrategy` back-off
//! and this driver opens a fresh session and creates every subscription and monitored item
//! again. One code path serves the first connect and every reconnect, and each failed attempt
//! surfaces as the connection's `lastError` instead of disappearing into a library retry loop.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broker::bus::Link;
use commissioning::model::{
    Address, ConnectionTargetState, MessageSecurityMode as Mode, OpcuaAddress, OpcuaConnection,
    Operation, SecurityPolicy as Policy,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use opcua::client::{
    Client, ClientBuilder, DataChangeCallback, IdentityToken, Session, SessionPollResult,
};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    AttributeId, BrowsePath, DataValue, MessageSecurityMode, MonitoredItemCreateRequest,
    MonitoringMode, MonitoringParameters, NodeId, NumericRange, QualifiedName, ReadValueId,
    ReferenceTypeId, RelativePath, RelativePathElement, StatusCode, TimestampsToReturn,
    UserTokenPolicy, VariantScalarTypeId, WriteValue,
};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::convert;
use super::pki::{self, Pki};
use crate::backoff::Backoff;
use crate::driver::{self, ConnectionHandle, Driver, DriverError, EndpointSpec, Refusal, Reporter};
use crate::envelope;

/// How long connecting and each request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Data changes waiting for the driver. A server flooding faster than the broker takes them
/// loses the excess (counted in the log) instead of growing memory without bound.
const SAMPLE_QUEUE: usize = 65_536;
/// Monitored items per CreateMonitoredItems request, well inside common server limits.
const ITEMS_PER_REQUEST: usize = 1000;
/// Largest message accepted from a server, and in how many chunks (of 64 KiB by default).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_CHUNKS: usize = 1024;
/// `publishInterval` when the endpoint does not say.
const DEFAULT_PUBLISH_INTERVAL: u64 = 1000;

/// Starts an OPC UA client connection. `pki_dir` is the connection's own certificate folder;
/// `link` the broker connection it publishes and subscribes through.
pub fn start(
    service: &str,
    resource: &str,
    spec: OpcuaConnection,
    target: ConnectionTargetState,
    pki_dir: PathBuf,
    link: impl Into<Link>,
) -> ConnectionHandle {
    let label = format!("{service}::{resource}");
    let driver = OpcuaDriver::new(spec, pki_dir, label);
    driver::spawn(driver, service, resource, target, link)
}

fn endpoint_url(spec: &OpcuaConnection) -> String {
    let path = spec.resource_path.as_deref().unwrap_or("");
    let path = if path.is_empty() || path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("opc.tcp://{}:{}{}", spec.host, spec.port, path)
}

struct Endpoint {
    spec: EndpointSpec,
    address: OpcuaAddress,
    /// Our client handle for its monitored item; data changes arrive tagged with it.
    handle: u32,
}

/// A data change from a subscription, tagged with the monitored item's client handle.
pub(crate) struct Sample {
    handle: u32,
    value: DataValue,
}

/// What the session's event loop tells the driver.
pub(crate) enum SessionEvent {
    Connected,
    Lost(String),
}

/// A live session and the state that dies with it.
pub(crate) struct Live {
    session: Arc<Session>,
    events: mpsc::Receiver<SessionEvent>,
    samples: mpsc::Receiver<Sample>,
    samples_tx: mpsc::Sender<Sample>,
    event_loop: tokio::task::JoinHandle<()>,
    /// Subscription id per publishing interval (ms).
    subscriptions: HashMap<u64, u32>,
    /// Per endpoint: its resolved node, its monitored item (subscription, item id), and the
    /// built-in type writes convert to, learned on the first write.
    nodes: HashMap<String, NodeId>,
    monitored: HashMap<String, (u32, u32)>,
    write_types: HashMap<String, VariantScalarTypeId>,
    /// Data changes lost because the queue was full, over the session's life.
    dropped_samples: Arc<std::sync::atomic::AtomicU64>,
}

/// What woke an OPC UA connection.
pub(crate) enum Wake {
    /// News from the session's event loop; `None` when the loop has ended.
    Session(Option<SessionEvent>),
    Sample(Sample),
}

pub(crate) struct OpcuaDriver {
    spec: OpcuaConnection,
    url: String,
    policy: Policy,
    mode: Mode,
    pki_dir: PathBuf,
    /// `<service>::<resource>`, for logs.
    label: String,
    /// Built by `prepare`; one attempt at a time holds it.
    client: Option<Arc<tokio::sync::Mutex<Client>>>,
    endpoints: BTreeMap<String, Endpoint>,
    /// Endpoint id per client handle, for routing data changes.
    handles: HashMap<u32, String>,
    next_handle: u32,
}

impl OpcuaDriver {
    pub fn new(spec: OpcuaConnection, pki_dir: PathBuf, label: String) -> OpcuaDriver {
        let options = spec.options.as_ref();
        OpcuaDriver {
            policy: options
                .and_then(|o| o.security_policy)
                .unwrap_or(Policy::None),
            mode: options
                .and_then(|o| o.message_security_mode)
                .unwrap_or(Mode::None),
            url: endpoint_url(&spec),
            spec,
            pki_dir,
            label,
            client: None,
            endpoints: BTreeMap::new(),
            handles: HashMap::new(),
            next_handle: 1,
        }
    }
}

impl Driver for OpcuaDriver {
    const PROTOCOL: &'static str = "OPC UA";
    type Session = Live;
    type Wake = Wake;

    fn backoff(&self) -> Backoff {
        Backoff::new(self.spec.strategy())
    }

    /// Prepares the certificate folder and the async-opcua client. A problem here (a bad
    /// certificate, an unwritable folder) cannot be fixed by retrying.
    async fn prepare(&mut self) -> Result<(), DriverError> {
        let client = self.client().await.map_err(DriverError::Configuration)?;
        self.client = Some(Arc::new(tokio::sync::Mutex::new(client)));
        Ok(())
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<Live, DriverError>> {
        let Some(client) = self.client.clone() else {
            return Box::pin(async {
                Err(DriverError::Configuration(
                    "the OPC UA client is not prepared".into(),
                ))
            });
        };
        let url = self.url.clone();
        let host = self.spec.host.clone();
        let (policy, mode) = (self.policy, self.mode);
        let identity = self.identity();
        Box::pin(async move {
            let mut client = client.lock().await;
            open_session(&mut client, &url, &host, policy, mode, identity)
                .await
                .map_err(DriverError::Connection)
        })
    }

    async fn on_connected(
        &mut self,
        live: &mut Live,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        info!(connection = %self.label, url = %self.url, "OPC UA session established");
        let ids: Vec<String> = self.endpoints.keys().cloned().collect();
        self.activate(live, &ids, report).await;
        Ok(())
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut Live>) -> Wake {
        let Some(live) = session else {
            return std::future::pending().await;
        };
        tokio::select! {
            event = live.events.recv() => Wake::Session(event),
            Some(sample) = live.samples.recv() => Wake::Sample(sample),
        }
    }

    async fn work(
        &mut self,
        wake: Wake,
        session: Option<&mut Live>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        match wake {
            Wake::Session(Some(SessionEvent::Connected)) => Ok(()),
            Wake::Session(Some(SessionEvent::Lost(error))) => Err(DriverError::Connection(error)),
            Wake::Session(None) => Err(DriverError::Connection("the session ended".into())),
            Wake::Sample(sample) => {
                if let Some(live) = session {
                    self.publish_sample(live, sample, report).await;
                }
                Ok(())
            }
        }
    }

    async fn add_endpoint(
        &mut self,
        spec: EndpointSpec,
        session: Option<&mut Live>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        let Address::Opcua(address) = spec.address.clone() else {
            return Err(DriverError::Endpoint(
                "an OPC UA connection only runs OPC UA endpoints".into(),
            ));
        };
        if let Some(path) = address.full_browse_path() {
            browse_path(&path).map_err(DriverError::Endpoint)?;
        }
        resolve_locally(&address).map_err(DriverError::Endpoint)?;
        let id = spec.id.clone();
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.handles.insert(handle, id.clone());
        self.endpoints.insert(
            id.clone(),
            Endpoint {
                spec,
                address,
                handle,
            },
        );
        if let Some(live) = session {
            self.activate(live, std::slice::from_ref(&id), report).await;
        }
        Ok(())
    }

    async fn remove_endpoint(&mut self, id: &str, session: Option<&mut Live>) {
        let Some(endpoint) = self.endpoints.remove(id) else {
            return;
        };
        self.handles.remove(&endpoint.handle);
        if let Some(live) = session {
            live.nodes.remove(id);
            live.write_types.remove(id);
            if let Some((subscription, item)) = live.monitored.remove(id) {
                let _ = live
                    .session
                    .delete_monitored_items(subscription, &[item])
                    .await;
            }
        }
    }

    /// Reads the node now (`/req`) or writes `value` converted to the node's data type
    /// (`/set`). A failed read or write is an answer, never a lost session.
    async fn request(
        &mut self,
        id: &str,
        value: Json,
        live: &mut Live,
        report: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        let Some(endpoint) = self.endpoints.get(id) else {
            return Ok(Err(Refusal::new("the endpoint has been removed")));
        };
        let operation = endpoint.spec.operation;
        let Some(node) = live.nodes.get(id).cloned() else {
            let reason = report
                .error_of(id)
                .unwrap_or_else(|| "the node could not be resolved".into());
            return Ok(Err(Refusal::new(reason)));
        };
        Ok(match operation {
            Operation::Write => write(live, id, node, &value).await,
            _ => read_value(&live.session, node)
                .await
                .map(|value| value_json(&live.session, &value)),
        })
    }

    async fn close(&mut self, live: Live) {
        close(live).await;
    }
}

impl OpcuaDriver {
    /// The async-opcua client: certificates prepared, retries off (the state machine owns
    /// them).
    async fn client(&self) -> Result<Client, String> {
        let dir = self.pki_dir.clone();
        let spec = self.spec.clone();
        let secure = self.policy != Policy::None;
        let label = self.label.clone();
        tokio::task::spawn_blocking(move || {
            let pki: Pki = pki::prepare(&dir, &spec)?;
            if pki.trust_any_server && secure {
                warn!(connection = %label, "No trustedServerCertificates given: any server certificate is accepted");
            }
            ClientBuilder::new()
                .application_name("Ironbridge")
                .application_uri("urn:ironbridge:gateway")
                .product_uri("urn:ironbridge")
                .session_name(format!("Ironbridge {label}"))
                .pki_dir(&pki.dir)
                // A certificate is generated (once, kept in the folder) only when message
                // security needs one and the commissioning file brings none.
                .create_sample_keypair(secure && !pki.own_certificate)
                .trust_server_certs(pki.trust_any_server)
                .verify_server_certs(!pki.trust_any_server)
                .session_retry_limit(0)
                .request_timeout(REQUEST_TIMEOUT)
                // A publish response carries every change of a subscription since the last
                // one: 10,000 monitored items need far more than the library's default message.
                .max_array_length(1_000_000)
                .max_message_size(MAX_MESSAGE_BYTES)
                .max_chunk_count(MAX_CHUNKS)
                .client()
                .map_err(|errors| format!("invalid OPC UA client settings: {}", errors.join("; ")))
        })
        .await
        .map_err(|e| format!("preparing the OPC UA client failed: {e}"))?
    }

    fn identity(&self) -> IdentityToken {
        match (&self.spec.username, &self.spec.password) {
            (Some(user), password) => {
                IdentityToken::new_user_name(user.clone(), password.clone().unwrap_or_default())
            }
            (None, _) => IdentityToken::Anonymous,
        }
    }

    /// Resolves the nodes of `ids` and creates monitored items for the subscribe endpoints
    /// among them, in as few requests as the server allows. Failures are per endpoint.
    async fn activate(&mut self, live: &mut Live, ids: &[String], report: &Reporter) {
        let mut browse: Vec<(String, BrowsePath)> = Vec::new();
        for id in ids {
            let Some(endpoint) = self.endpoints.get(id) else {
                continue;
            };
            match resolve_locally(&endpoint.address) {
                Ok(Some(node)) => {
                    live.nodes.insert(id.clone(), node);
                }
                Ok(None) => {
                    if let Some(path) = endpoint.address.full_browse_path() {
                        match browse_path(&path) {
                            Ok(path) => browse.push((id.clone(), path)),
                            Err(e) => report.endpoint_failed(id, e),
                        }
                    }
                }
                Err(e) => report.endpoint_failed(id, e),
            }
        }
        if !browse.is_empty() {
            let paths: Vec<BrowsePath> = browse.iter().map(|(_, p)| p.clone()).collect();
            match live
                .session
                .translate_browse_paths_to_node_ids(&paths)
                .await
            {
                Ok(results) => {
                    for ((id, _), result) in browse.iter().zip(results) {
                        let target = result
                            .targets
                            .as_ref()
                            .and_then(|t| t.first())
                            .map(|t| t.target_id.node_id.clone());
                        match target {
                            Some(node) if result.status_code.is_good() => {
                                live.nodes.insert(id.clone(), node);
                            }
                            _ => report.endpoint_failed(
                                id,
                                format!(
                                    "browsePath not found on the server ({})",
                                    result.status_code
                                ),
                            ),
                        }
                    }
                }
                Err(e) => {
                    for (id, _) in &browse {
                        report.endpoint_failed(id, format!("cannot resolve browsePath: {e}"));
                    }
                }
            }
        }
        let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for id in ids {
            if let Some(endpoint) = self.endpoints.get(id)
                && endpoint.spec.operation == Operation::Subscribe
                && live.nodes.contains_key(id)
            {
                groups
                    .entry(publish_interval(&endpoint.address))
                    .or_default()
                    .push(id.clone());
            }
        }
        for (interval, members) in groups {
            let subscription = match self.subscription(live, interval).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    for id in &members {
                        report.endpoint_failed(id, error.clone());
                    }
                    continue;
                }
            };
            for chunk in members.chunks(ITEMS_PER_REQUEST) {
                let requests: Vec<MonitoredItemCreateRequest> = chunk
                    .iter()
                    .map(|id| {
                        let endpoint = &self.endpoints[id];
                        monitored_item(live.nodes[id].clone(), endpoint.handle, &endpoint.address)
                    })
                    .collect();
                match live
                    .session
                    .create_monitored_items(subscription, TimestampsToReturn::Both, requests)
                    .await
                {
                    Ok(created) => {
                        for (id, item) in chunk.iter().zip(created) {
                            if item.result.status_code.is_good() {
                                live.monitored.insert(
                                    id.clone(),
                                    (subscription, item.result.monitored_item_id),
                                );
                            } else {
                                report.endpoint_failed(
                                    id,
                                    format!(
                                        "the server refused to monitor {} ({})",
                                        live.nodes[id], item.result.status_code
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        for id in chunk {
                            report
                                .endpoint_failed(id, format!("cannot create monitored item: {e}"));
                        }
                    }
                }
            }
        }
    }

    /// The subscription for a publishing interval, created on first use.
    async fn subscription(&self, live: &mut Live, interval: u64) -> Result<u32, String> {
        if let Some(id) = live.subscriptions.get(&interval) {
            return Ok(*id);
        }
        // Keep-alives about every 10 s whatever the interval; the server may drop the
        // subscription after three missed ones.
        let keep_alive = u32::try_from((10_000 / interval.max(1)).max(1)).unwrap_or(u32::MAX);
        let samples = live.samples_tx.clone();
        let dropped = live.dropped_samples.clone();
        let label = self.label.clone();
        let callback = DataChangeCallback::new(move |value, item| {
            let sample = Sample {
                handle: item.client_handle(),
                value,
            };
            if samples.try_send(sample).is_err() {
                let count = dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if count == 1 || count % 10_000 == 0 {
                    warn!(connection = %label, dropped = count, "OPC UA data changes dropped: the broker link is not keeping up");
                }
            }
        });
        let id = live
            .session
            .create_subscription(
                Duration::from_millis(interval),
                keep_alive.saturating_mul(3),
                keep_alive,
                0,
                0,
                true,
                callback,
            )
            .await
            .map_err(|e| format!("cannot create a subscription ({interval} ms): {e}"))?;
        live.subscriptions.insert(interval, id);
        Ok(id)
    }

    async fn publish_sample(&self, live: &Live, sample: Sample, report: &Reporter) {
        let Some(endpoint) = self
            .handles
            .get(&sample.handle)
            .and_then(|id| self.endpoints.get(id))
        else {
            return;
        };
        let status = sample.value.status();
        if !status.is_good() {
            report.endpoint_failed(&endpoint.spec.id, format!("the server reports {status}"));
            return;
        }
        let at = timestamp_millis(&sample.value);
        let value = value_json(&live.session, &sample.value);
        report.publish_data(&endpoint.spec, value, at).await;
    }
}

/// A session for a tool rather than a running connection (discovery): the client settings,
/// certificate folder, security and identity a connection with `spec` would use. Close it with
/// [`ToolSession::close`].
pub(crate) struct ToolSession {
    // The session's configuration lives in the client; keep it for the session's life.
    _client: Client,
    live: Live,
}

impl ToolSession {
    pub(crate) async fn open(spec: &OpcuaConnection, pki_dir: PathBuf) -> Result<Self, String> {
        let driver = OpcuaDriver::new(spec.clone(), pki_dir, format!("discovery of {}", spec.host));
        let mut client = driver.client().await?;
        let live = open_session(
            &mut client,
            &driver.url,
            &spec.host,
            driver.policy,
            driver.mode,
            driver.identity(),
        )
        .await?;
        Ok(ToolSession {
            _client: client,
            live,
        })
    }

    pub(crate) fn session(&self) -> &Session {
        &self.live.session
    }

    pub(crate) async fn close(self) {
        close(self.live).await;
    }
}

/// Opens a session and waits until the server has activated it.
async fn open_session(
    client: &mut Client,
    url: &str,
    host: &str,
    policy: Policy,
    mode: Mode,
    identity: IdentityToken,
) -> Result<Live, String> {
    let endpoint = (
        url,
        security_policy(policy).to_uri(),
        security_mode(mode),
        UserTokenPolicy::anonymous(),
    );
    let (session, event_loop) = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.connect_to_matching_endpoint(endpoint, identity),
    )
    .await
    .map_err(|_| format!("{url} did not answer within {REQUEST_TIMEOUT:?}"))?
    .map_err(|e| describe_connect_error(&e, url, host, policy, mode))?;

    let (events_tx, mut events) = mpsc::channel(4);
    let event_loop = tokio::spawn(async move {
        let stream = event_loop.enter();
        tokio::pin!(stream);
        while let Some(event) = stream.next().await {
            let news = match event {
                Ok(SessionPollResult::Reconnected(_)) => SessionEvent::Connected,
                Ok(SessionPollResult::ConnectionLost(code)) => {
                    SessionEvent::Lost(format!("connection lost ({code})"))
                }
                Ok(_) => continue,
                Err(code) => SessionEvent::Lost(code.to_string()),
            };
            let lost = matches!(news, SessionEvent::Lost(_));
            if events_tx.send(news).await.is_err() || lost {
                break;
            }
        }
    });
    let first = tokio::time::timeout(REQUEST_TIMEOUT, events.recv()).await;
    let (samples_tx, samples) = mpsc::channel(SAMPLE_QUEUE);
    let live = Live {
        session,
        events,
        samples,
        samples_tx,
        event_loop,
        subscriptions: HashMap::new(),
        nodes: HashMap::new(),
        monitored: HashMap::new(),
        write_types: HashMap::new(),
        dropped_samples: Arc::default(),
    };
    match first {
        Ok(Some(SessionEvent::Connected)) => Ok(live),
        Ok(Some(SessionEvent::Lost(code))) => {
            close(live).await;
            Err(describe_status(&code, url, host))
        }
        Ok(None) | Err(_) => {
            close(live).await;
            Err(format!("no session with {url} within {REQUEST_TIMEOUT:?}"))
        }
    }
}

/// Writes `value` converted to the node's built-in type (learned from its `DataType`, or from
/// its current value when the type is not a built-in one).
async fn write(live: &mut Live, id: &str, node: NodeId, value: &Json) -> Result<Json, Refusal> {
    let target = match live.write_types.get(id) {
        Some(target) => *target,
        None => {
            let target = write_type(&live.session, &node).await?;
            live.write_types.insert(id.to_string(), target);
            target
        }
    };
    let variant = convert::from_json(value, target).map_err(Refusal::new)?;
    let write = WriteValue {
        node_id: node,
        attribute_id: AttributeId::Value as u32,
        index_range: NumericRange::None,
        value: DataValue::value_only(variant),
    };
    let results = live
        .session
        .write(&[write])
        .await
        .map_err(|e| Refusal::new(format!("the write failed: {e}")))?;
    match results.first() {
        Some(status) if status.is_good() => Ok(value.clone()),
        Some(status) => Err(Refusal::with_code(
            format!("the server refused the write ({status})"),
            status.bits(),
        )),
        None => Err(Refusal::new("the server answered no status")),
    }
}

/// Closes a session: politely when the server is still there, and always ends its event loop.
async fn close(live: Live) {
    let _ = tokio::time::timeout(Duration::from_secs(2), live.session.disconnect()).await;
    live.event_loop.abort();
    let _ = live.event_loop.await;
}

/// A data value's JSON form, decoded with the session's namespaces and types.
fn value_json(session: &Session, value: &DataValue) -> Json {
    let context = session.context();
    let context = context.read();
    value
        .value
        .as_ref()
        .map_or(Json::Null, |v| convert::to_json(v, &context.context()))
}

async fn read_value(session: &Session, node: NodeId) -> Result<DataValue, Refusal> {
    let read = ReadValueId {
        node_id: node,
        attribute_id: AttributeId::Value as u32,
        ..Default::default()
    };
    let mut values = session
        .read(&[read], TimestampsToReturn::Both, 0.0)
        .await
        .map_err(|e| Refusal::new(format!("the read failed: {e}")))?;
    let value = values
        .pop()
        .ok_or_else(|| Refusal::new("the server answered no value"))?;
    let status = value.status();
    if status.is_good() {
        Ok(value)
    } else {
        Err(Refusal::with_code(
            format!("the server refused the read ({status})"),
            status.bits(),
        ))
    }
}

/// The built-in type a write to `node` must carry.
async fn write_type(session: &Session, node: &NodeId) -> Result<VariantScalarTypeId, Refusal> {
    let reads = [AttributeId::DataType, AttributeId::Value].map(|attribute| ReadValueId {
        node_id: node.clone(),
        attribute_id: attribute as u32,
        ..Default::default()
    });
    let values = session
        .read(&reads, TimestampsToReturn::Neither, 0.0)
        .await
        .map_err(|e| Refusal::new(format!("cannot read the node's data type: {e}")))?;
    let declared = values.first().and_then(|v| match &v.value {
        Some(opcua::types::Variant::NodeId(id)) => convert::scalar_type_of(id),
        _ => None,
    });
    let current = values
        .get(1)
        .and_then(|v| v.value.as_ref())
        .and_then(|v| v.scalar_type_id());
    declared.or(current).ok_or_else(|| {
        Refusal::new(format!(
            "the data type of {node} is not one values can be converted to"
        ))
    })
}

/// A node id given directly; `Ok(None)` for a browse path, resolved on the server.
fn resolve_locally(address: &OpcuaAddress) -> Result<Option<NodeId>, String> {
    match &address.node_id {
        Some(text) => text
            .parse::<NodeId>()
            .map(Some)
            .map_err(|_| format!("`{text}` is not a node id")),
        None => Ok(None),
    }
}

/// `/0:Objects/2:Machine/2:Speed` as a path from the Root folder along hierarchical references.
fn browse_path(text: &str) -> Result<BrowsePath, String> {
    let elements = commissioning::opcua_address::parse_browse_path(text)?
        .into_iter()
        .map(|(namespace, name)| RelativePathElement {
            reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
            is_inverse: false,
            include_subtypes: true,
            target_name: QualifiedName::new(namespace, name),
        })
        .collect();
    Ok(BrowsePath {
        starting_node: opcua::types::ObjectId::RootFolder.into(),
        relative_path: RelativePath {
            elements: Some(elements),
        },
    })
}

fn publish_interval(address: &OpcuaAddress) -> u64 {
    address
        .publish_interval
        .unwrap_or(DEFAULT_PUBLISH_INTERVAL)
        .max(1)
}

fn monitored_item(node: NodeId, handle: u32, address: &OpcuaAddress) -> MonitoredItemCreateRequest {
    MonitoredItemCreateRequest {
        item_to_monitor: ReadValueId {
            node_id: node,
            attribute_id: AttributeId::Value as u32,
            ..Default::default()
        },
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            client_handle: handle,
            // -1 asks the server to sample at the publishing interval.
            sampling_interval: address.sampling_interval.map_or(-1.0, |ms| ms as f64),
            // Every change sampled between two publishes is delivered, not only the last.
            queue_size: 10,
            discard_oldest: true,
            ..Default::default()
        },
    }
}

/// The source timestamp when the server gives one, else the server's, else now.
fn timestamp_millis(value: &DataValue) -> i64 {
    value
        .source_timestamp
        .or(value.server_timestamp)
        .map_or_else(envelope::now_millis, |t| t.as_chrono().timestamp_millis())
}

/// The library's name for a security policy (the client's and the gateway's server's).
pub(super) fn security_policy(policy: Policy) -> SecurityPolicy {
    match policy {
        Policy::None => SecurityPolicy::None,
        Policy::Basic256Sha256 => SecurityPolicy::Basic256Sha256,
        Policy::Aes128Sha256RsaOaep => SecurityPolicy::Aes128Sha256RsaOaep,
        Policy::Aes256Sha256RsaPss => SecurityPolicy::Aes256Sha256RsaPss,
    }
}

pub(super) fn security_mode(mode: Mode) -> MessageSecurityMode {
    match mode {
        Mode::None => MessageSecurityMode::None,
        Mode::Sign => MessageSecurityMode::Sign,
        Mode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

fn describe_connect_error(
    error: &opcua::types::Error,
    url: &str,
    host: &str,
    policy: Policy,
    mode: Mode,
) -> String {
    if error.status() == StatusCode::BadSecurityModeRejected
        || error.status() == StatusCode::BadSecurityPolicyRejected
        || error.to_string().contains("matching")
    {
        return format!(
            "{url} offers no endpoint with securityPolicy {policy:?} and messageSecurityMode \
             {mode:?} ({error})"
        );
    }
    describe_status(&error.to_string(), url, host)
}

/// A failed connect in words that say what to change.
fn describe_status(error: &str, url: &str, host: &str) -> String {
    let hint = if error.contains("BadCertificateHostNameInvalid") {
        format!(
            "the server certificate does not name the host `{host}`; connect with a host name \
             the certificate lists, or give the server a certificate for `{host}`"
        )
    } else if error.contains("BadCertificateUntrusted") || error.contains("BadSecurityChecksFailed")
    {
        "the server certificate is not among trustedServerCertificates".to_string()
    } else if error.contains("BadUserAccessDenied")
        || error.contains("BadIdentityTokenRejected")
        || error.contains("BadIdentityTokenInvalid")
    {
        "the server refused the username or password".to_string()
    } else if error.contains("BadCertificate") {
        "the server refused the client certificate".to_string()
    } else {
        format!("cannot connect to {url}")
    };
    format!("{hint} ({error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let mut spec = OpcuaConnection {
            host: "cnc".into(),
            port: 4840,
            resource_path: None,
            username: None,
            password: None,
            options: None,
            client_certificate: None,
            client_private_key: None,
            trusted_server_certificates: Vec::new(),
            connection_strategy: None,
        };
        assert_eq!(endpoint_url(&spec), "opc.tcp://cnc:4840");
        spec.resource_path = Some("UA/Server".into());
        assert_eq!(endpoint_url(&spec), "opc.tcp://cnc:4840/UA/Server");
        spec.resource_path = Some("/cnc".into());
        assert_eq!(endpoint_url(&spec), "opc.tcp://cnc:4840/cnc");
    }

    #[test]
    fn browse_paths_start_at_the_root() {
        let path = browse_path("/0:Objects/2:Machine").expect("valid");
        assert_eq!(
            path.starting_node,
            NodeId::from(opcua::types::ObjectId::RootFolder)
        );
        let names: Vec<String> = path
            .relative_path
            .elements
            .unwrap_or_default()
            .iter()
            .map(|e| e.target_name.to_string())
            .collect();
        assert_eq!(names, ["Objects", "2:Machine"]);
    }

    #[test]
    fn hostname_errors_say_what_to_change() {
        let message = describe_status(
            "BadCertificateHostNameInvalid",
            "opc.tcp://10.0.0.5:4840",
            "10.0.0.5",
        );
        assert!(
            message.starts_with("the server certificate does not name the host `10.0.0.5`"),
            "{message}"
        );
    }
}
