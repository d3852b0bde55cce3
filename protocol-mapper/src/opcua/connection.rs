//! One OPC UA client connection as an actor: opens a session with the configured security and
//! identity, groups subscribe endpoints into one subscription per `publishInterval`, answers
//! `/req` (read) and `/set` (write, converted to the node's data type), and publishes data and
//! its status through an in-process broker link.
//!
//! Reconnecting is ours, not async-opcua's: the library is told never to retry, and when the
//! session is lost the actor waits out the `connectionStrategy` back-off, opens a fresh session
//! and creates every subscription and monitored item again. One code path serves the first
//! connect and every reconnect, and each failed attempt surfaces as the connection's
//! `lastError` instead of disappearing into a library retry loop.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::link::Link;
use commissioning::model::{
    Address, ConnectionTargetState, MessageSecurityMode as Mode, OpcuaAddress, OpcuaConnection,
    Operation, SecurityPolicy as Policy,
};
use futures_util::StreamExt;
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
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::convert;
use super::pki::{self, Pki};
use crate::backoff::Backoff;
use crate::driver::{self, Command, ConnectionHandle, End, EndpointSpec, Reporter};
use crate::envelope;
use crate::status::ConnectionState;

/// How long connecting and each request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Data changes waiting for the actor. A server flooding faster than the broker takes them
/// loses the excess (counted in the log) instead of growing memory without bound.
const SAMPLE_QUEUE: usize = 65_536;
/// Monitored items per CreateMonitoredItems request, well inside common server limits.
const ITEMS_PER_REQUEST: usize = 1000;
/// Largest message accepted from a server, and in how many chunks (of 64 KiB by default).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_CHUNKS: usize = 1024;
/// `publishInterval` when the endpoint does not say.
const DEFAULT_PUBLISH_INTERVAL: u64 = 1000;

/// Starts the actor. `pki_dir` is the connection's own certificate folder.
pub fn start(
    service: &str,
    resource: &str,
    spec: OpcuaConnection,
    target: ConnectionTargetState,
    pki_dir: PathBuf,
    link: impl Into<Link>,
) -> ConnectionHandle {
    driver::spawn(service, resource, target, link, move |side| {
        let options = spec
            .options
            .clone()
            .unwrap_or(commissioning::model::OpcuaOptions {
                security_policy: None,
                message_security_mode: None,
                connection_strategy: None,
            });
        let actor = Actor {
            backoff: Backoff::new(options.connection_strategy.as_ref()),
            policy: options.security_policy.unwrap_or(Policy::None),
            mode: options.message_security_mode.unwrap_or(Mode::None),
            url: endpoint_url(&spec),
            spec,
            pki_dir,
            target,
            commands: side.commands,
            stop: side.stop,
            report: side.reporter,
            endpoints: BTreeMap::new(),
            handles: HashMap::new(),
            next_handle: 1,
        };
        actor.run()
    })
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
struct Sample {
    handle: u32,
    value: DataValue,
}

/// What the session's event loop tells the actor.
enum SessionEvent {
    Connected,
    Lost(String),
}

/// A live session and the state that dies with it.
struct Live {
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

struct Actor {
    spec: OpcuaConnection,
    url: String,
    policy: Policy,
    mode: Mode,
    pki_dir: PathBuf,
    target: ConnectionTargetState,
    backoff: Backoff,
    commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    report: Reporter,
    endpoints: BTreeMap<String, Endpoint>,
    /// Endpoint id per client handle, for routing data changes.
    handles: HashMap<u32, String>,
    next_handle: u32,
}

impl Actor {
    async fn run(mut self) {
        if self.target == ConnectionTargetState::Disconnected {
            self.report
                .set_state(ConnectionState::Disconnected, None)
                .await;
            self.idle_until_stopped().await;
            self.report.link.disconnect().await;
            return;
        }
        let mut client = match self.client().await {
            Ok(client) => Some(client),
            Err(error) => {
                // A configuration problem (bad certificate, unwritable folder): retrying cannot
                // help, so the connection stays down with the reason until it is reconfigured.
                self.report
                    .set_state(ConnectionState::Disconnected, Some(error))
                    .await;
                None
            }
        };
        let mut state = ConnectionState::Connecting;
        while let Some(client) = client.as_mut() {
            self.report.set_state(state, None).await;
            let stop = self.stop.clone();
            let attempt = tokio::select! {
                _ = stop.cancelled() => break,
                attempt = self.connect(client) => attempt,
            };
            match attempt {
                Ok(mut live) => {
                    self.backoff.reset();
                    info!(connection = %self.report.label, url = %self.url, "OPC UA session established");
                    self.report
                        .set_state(ConnectionState::Connected, None)
                        .await;
                    let end = self.connected(&mut live).await;
                    close(live).await;
                    match end {
                        End::Stopped => break,
                        End::Lost(error) => {
                            warn!(connection = %self.report.label, error = %error, "OPC UA session lost");
                            self.report
                                .set_state(ConnectionState::Reconnecting, Some(error))
                                .await;
                        }
                    }
                }
                Err(error) => {
                    debug!(connection = %self.report.label, error = %error, "OPC UA connect failed");
                    self.report.set_state(state, Some(error)).await;
                }
            }
            state = ConnectionState::Reconnecting;
            let delay = self.backoff.next_delay(rand::random());
            if !self.wait_disconnected(Some(delay)).await {
                break;
            }
        }
        if client.is_none() {
            self.wait_disconnected(None).await;
        }
        self.report
            .set_state(ConnectionState::Disconnected, None)
            .await;
        self.report.link.disconnect().await;
    }

    /// The async-opcua client: certificates prepared, retries off (the actor owns them).
    async fn client(&self) -> Result<Client, String> {
        let dir = self.pki_dir.clone();
        let spec = self.spec.clone();
        let secure = self.policy != Policy::None;
        let label = self.report.label.clone();
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

    /// Opens a session and creates every subscription.
    async fn connect(&mut self, client: &mut Client) -> Result<Live, String> {
        let policy = security_policy(self.policy);
        let endpoint = (
            self.url.as_str(),
            policy.to_uri(),
            security_mode(self.mode),
            UserTokenPolicy::anonymous(),
        );
        let identity = self.identity();
        let (session, event_loop) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.connect_to_matching_endpoint(endpoint, identity),
        )
        .await
        .map_err(|_| format!("{} did not answer within {REQUEST_TIMEOUT:?}", self.url))?
        .map_err(|e| {
            describe_connect_error(&e, &self.url, &self.spec.host, self.policy, self.mode)
        })?;

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
        let mut live = Live {
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
            Ok(Some(SessionEvent::Connected)) => {}
            Ok(Some(SessionEvent::Lost(code))) => {
                close(live).await;
                return Err(describe_status(&code, &self.url, &self.spec.host));
            }
            Ok(None) | Err(_) => {
                close(live).await;
                return Err(format!(
                    "no session with {} within {REQUEST_TIMEOUT:?}",
                    self.url
                ));
            }
        }
        let ids: Vec<String> = self.endpoints.keys().cloned().collect();
        self.activate(&mut live, &ids).await;
        Ok(live)
    }

    /// Resolves the nodes of `ids` and creates monitored items for the subscribe endpoints
    /// among them, in as few requests as the server allows. Failures are per endpoint.
    async fn activate(&mut self, live: &mut Live, ids: &[String]) {
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
                    if let Some(path) = endpoint.address.browse_path.as_deref() {
                        match browse_path(path) {
                            Ok(path) => browse.push((id.clone(), path)),
                            Err(e) => self.report.endpoint_failed(id, e),
                        }
                    }
                }
                Err(e) => self.report.endpoint_failed(id, e),
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
                            _ => self.report.endpoint_failed(
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
                        self.report
                            .endpoint_failed(id, format!("cannot resolve browsePath: {e}"));
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
                        self.report.endpoint_failed(id, error.clone());
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
                                self.report.endpoint_failed(
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
                            self.report
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
        let label = self.report.label.clone();
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

    async fn connected(&mut self, live: &mut Live) -> End {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return End::Stopped,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command, Some(live)).await,
                    None => return End::Stopped,
                },
                event = live.events.recv() => match event {
                    Some(SessionEvent::Lost(error)) => return End::Lost(error),
                    Some(SessionEvent::Connected) => {}
                    None => return End::Lost("the session ended".into()),
                },
                Some(sample) = live.samples.recv() => self.publish_sample(live, sample).await,
                delivery = self.report.link.recv() => {
                    let Some(delivery) = delivery else { return End::Stopped };
                    self.handle_request(live, &delivery.message.topic, &delivery.message.payload).await;
                }
            }
        }
    }

    async fn publish_sample(&self, live: &Live, sample: Sample) {
        let Some(endpoint) = self
            .handles
            .get(&sample.handle)
            .and_then(|id| self.endpoints.get(id))
        else {
            return;
        };
        let status = sample.value.status();
        if !status.is_good() {
            self.report
                .endpoint_failed(&endpoint.spec.id, format!("the server reports {status}"));
            return;
        }
        let at = timestamp_millis(&sample.value);
        let value = value_json(&live.session, &sample.value);
        self.report.publish_data(&endpoint.spec, value, at).await;
    }

    /// While not connected: keep accepting endpoint changes and answer requests with an error,
    /// until the delay is over (true) or the connection is stopped (false). `None` waits for
    /// the stop.
    async fn wait_disconnected(&mut self, delay: Option<Duration>) -> bool {
        let deadline = delay.map(|d| tokio::time::Instant::now() + d);
        loop {
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = sleep => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command, None).await,
                    None => return false,
                },
                delivery = self.report.link.recv() => {
                    let Some(delivery) = delivery else { return false };
                    if let Some(endpoint) = self.request_target(&delivery.message.topic) {
                        self.report.refuse_request(&endpoint.spec, &delivery.message.payload).await;
                    }
                }
            }
        }
    }

    async fn idle_until_stopped(&mut self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command, None).await,
                    None => return,
                },
            }
        }
    }

    async fn apply(&mut self, command: Command, live: Option<&mut Live>) {
        match command {
            Command::Add(spec, reply) => {
                let result = self.add(*spec, live).await;
                let _ = reply.send(result);
            }
            Command::Remove(id, reply) => {
                if let Some(endpoint) = self.endpoints.remove(&id) {
                    self.handles.remove(&endpoint.handle);
                    self.report.forget(&endpoint.spec).await;
                    if let Some(live) = live {
                        live.nodes.remove(&id);
                        live.write_types.remove(&id);
                        if let Some((subscription, item)) = live.monitored.remove(&id) {
                            let _ = live
                                .session
                                .delete_monitored_items(subscription, &[item])
                                .await;
                        }
                    }
                }
                let _ = reply.send(());
            }
        }
    }

    async fn add(&mut self, spec: EndpointSpec, live: Option<&mut Live>) -> Result<(), String> {
        let Address::Opcua(address) = spec.address.clone() else {
            return Err("an OPC UA connection only runs OPC UA endpoints".into());
        };
        if let Some(path) = &address.browse_path {
            browse_path(path)?;
        }
        resolve_locally(&address)?;
        self.report.listen_for_requests(&spec).await?;
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
        if let Some(live) = live {
            self.activate(live, std::slice::from_ref(&id)).await;
        }
        Ok(())
    }

    fn request_target(&self, topic: &str) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.spec.is_request_topic(topic))
    }

    /// Answers a `/req` (read now) or `/set` (write) on `/res`.
    async fn handle_request(&mut self, live: &mut Live, topic: &str, payload: &[u8]) {
        let Some(endpoint) = self.request_target(topic) else {
            return;
        };
        let spec = endpoint.spec.clone();
        let request = match envelope::parse_request(payload) {
            Ok(request) => request,
            Err(error) => {
                let answer = envelope::error(None, &error, None, envelope::now_millis());
                self.report.answer(&spec, answer).await;
                return;
            }
        };
        let outcome = match live.nodes.get(&spec.id).cloned() {
            None => Err((
                self.report
                    .error_of(&spec.id)
                    .unwrap_or_else(|| "the node could not be resolved".into()),
                None,
            )),
            Some(node) if spec.operation == Operation::Write => {
                self.write(live, &spec.id, node, &request.value).await
            }
            Some(node) => read_value(&live.session, node)
                .await
                .map(|value| value_json(&live.session, &value)),
        };
        let answer = match outcome {
            Ok(value) => envelope::result(request.id, value, envelope::now_millis()),
            Err((message, code)) => {
                envelope::error(request.id, &message, code, envelope::now_millis())
            }
        };
        self.report.answer(&spec, answer).await;
    }

    /// Writes `value` converted to the node's built-in type (learned from its `DataType`, or
    /// from its current value when the type is not a built-in one).
    async fn write(
        &self,
        live: &mut Live,
        id: &str,
        node: NodeId,
        value: &Json,
    ) -> Result<Json, (String, Option<Json>)> {
        let target = match live.write_types.get(id) {
            Some(target) => *target,
            None => {
                let target = write_type(&live.session, &node).await?;
                live.write_types.insert(id.to_string(), target);
                target
            }
        };
        let variant = convert::from_json(value, target).map_err(|e| (e, None))?;
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
            .map_err(|e| (format!("the write failed: {e}"), None))?;
        match results.first() {
            Some(status) if status.is_good() => Ok(value.clone()),
            Some(status) => Err((
                format!("the server refused the write ({status})"),
                Some(Json::from(status.bits())),
            )),
            None => Err(("the server answered no status".into(), None)),
        }
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

async fn read_value(session: &Session, node: NodeId) -> Result<DataValue, (String, Option<Json>)> {
    let read = ReadValueId {
        node_id: node,
        attribute_id: AttributeId::Value as u32,
        ..Default::default()
    };
    let mut values = session
        .read(&[read], TimestampsToReturn::Both, 0.0)
        .await
        .map_err(|e| (format!("the read failed: {e}"), None))?;
    let value = values
        .pop()
        .ok_or(("the server answered no value".to_string(), None))?;
    let status = value.status();
    if status.is_good() {
        Ok(value)
    } else {
        Err((
            format!("the server refused the read ({status})"),
            Some(Json::from(status.bits())),
        ))
    }
}

/// The built-in type a write to `node` must carry.
async fn write_type(
    session: &Session,
    node: &NodeId,
) -> Result<VariantScalarTypeId, (String, Option<Json>)> {
    let reads = [AttributeId::DataType, AttributeId::Value].map(|attribute| ReadValueId {
        node_id: node.clone(),
        attribute_id: attribute as u32,
        ..Default::default()
    });
    let values = session
        .read(&reads, TimestampsToReturn::Neither, 0.0)
        .await
        .map_err(|e| (format!("cannot read the node's data type: {e}"), None))?;
    let declared = values.first().and_then(|v| match &v.value {
        Some(opcua::types::Variant::NodeId(id)) => convert::scalar_type_of(id),
        _ => None,
    });
    let current = values
        .get(1)
        .and_then(|v| v.value.as_ref())
        .and_then(|v| v.scalar_type_id());
    declared.or(current).ok_or_else(|| {
        (
            format!("the data type of {node} is not one values can be converted to"),
            None,
        )
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

fn security_policy(policy: Policy) -> SecurityPolicy {
    match policy {
        Policy::None => SecurityPolicy::None,
        Policy::Basic256Sha256 => SecurityPolicy::Basic256Sha256,
        Policy::Aes128Sha256RsaOaep => SecurityPolicy::Aes128Sha256RsaOaep,
        Policy::Aes256Sha256RsaPss => SecurityPolicy::Aes256Sha256RsaPss,
    }
}

fn security_mode(mode: Mode) -> MessageSecurityMode {
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
