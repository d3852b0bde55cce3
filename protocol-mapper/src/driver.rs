//! What every connection driver shares: the supervisor's handle on a running connection, the
//! endpoint it is given, and the reporter that keeps the connection status (published retained
//! on MQTT) and the per-endpoint errors. Each driver (Modbus, OPC UA) is an actor that owns the
//! receiving side.

use std::collections::BTreeMap;

use crate::link::Link;
use broker::{Message, QoS};
use bytes::Bytes;
use commissioning::model::{Address, ConnectionTargetState, Operation};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::envelope;
use crate::status::{ConnectionState, ConnectionStatus, connection_status_topic};

/// Commands waiting for an actor; the supervisor is the only sender.
const COMMAND_QUEUE: usize = 64;

/// An endpoint as a connection runs it.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// `<service>::<resource>`, unique across services.
    pub id: String,
    /// The full data topic (`services/<id>/<topic>`); requests arrive on `.../req` or `.../set`.
    pub topic: String,
    pub operation: Operation,
    /// The protocol's address; a driver refuses addresses of another protocol.
    pub address: Address,
    pub qos: QoS,
    pub retain: bool,
    /// Set when the endpoint has a rule chain: data goes to the chain's task, which publishes
    /// what comes out, instead of straight to `topic`.
    pub rules: Option<mpsc::Sender<Bytes>>,
}

impl EndpointSpec {
    /// The topic requests arrive on: `.../set` for write endpoints, `.../req` for the others.
    pub fn request_topic(&self) -> String {
        match self.operation {
            Operation::Write => format!("{}/set", self.topic),
            _ => format!("{}/req", self.topic),
        }
    }

    pub fn response_topic(&self) -> String {
        format!("{}/res", self.topic)
    }

    /// Whether a message on `topic` is a request for this endpoint.
    pub fn is_request_topic(&self, topic: &str) -> bool {
        topic.rsplit_once('/').is_some_and(|(base, suffix)| {
            base == self.topic
                && matches!(
                    (self.operation, suffix),
                    (Operation::Read, "req") | (Operation::Write, "set")
                )
        })
    }
}

/// Why a driver's connected loop ended.
pub enum End {
    /// The connection was stopped (service disabled, deleted or reconfigured).
    Stopped,
    /// The device went away; the reason becomes the status's `lastError`.
    Lost(String),
}

#[derive(Debug)]
pub enum Command {
    Add(Box<EndpointSpec>, oneshot::Sender<Result<(), String>>),
    Remove(String, oneshot::Sender<()>),
}

/// The supervisor's handle on a running connection, whatever its protocol.
pub struct ConnectionHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<ConnectionStatus>,
    endpoint_errors: watch::Receiver<BTreeMap<String, String>>,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub target: ConnectionTargetState,
}

impl ConnectionHandle {
    pub async fn add_endpoint(&self, endpoint: EndpointSpec) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Add(Box::new(endpoint), tx))
            .await
            .map_err(|_| "the connection has stopped".to_string())?;
        rx.await
            .map_err(|_| "the connection has stopped".to_string())?
    }

    pub async fn remove_endpoint(&self, id: &str) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Remove(id.to_string(), tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    pub fn status(&self) -> ConnectionStatus {
        self.status.borrow().clone()
    }

    /// The last error of an endpoint, if its last read, subscription or request failed.
    pub fn endpoint_error(&self, id: &str) -> Option<String> {
        self.endpoint_errors.borrow().get(id).cloned()
    }

    /// Stops the actor, which closes its session or socket, and waits for it.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The actor's side of a connection: its commands, its stop signal and its reporter.
pub struct ActorSide {
    pub commands: mpsc::Receiver<Command>,
    pub stop: CancellationToken,
    pub reporter: Reporter,
}

/// Creates the handle and the actor's side, then spawns the actor built from the latter.
pub fn spawn<F, Fut>(
    service: &str,
    resource: &str,
    target: ConnectionTargetState,
    link: impl Into<Link>,
    actor: F,
) -> ConnectionHandle
where
    F: FnOnce(ActorSide) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (status_tx, status) = watch::channel(ConnectionStatus::new(ConnectionState::Connecting));
    let (errors_tx, endpoint_errors) = watch::channel(BTreeMap::new());
    let stop = CancellationToken::new();
    let side = ActorSide {
        commands: commands_rx,
        stop: stop.clone(),
        reporter: Reporter {
            label: format!("{service}::{resource}"),
            status_topic: connection_status_topic(service, resource),
            link: link.into(),
            status: status_tx,
            errors: errors_tx,
        },
    };
    let task = std::sync::Mutex::new(Some(tokio::spawn(actor(side))));
    ConnectionHandle {
        commands,
        status,
        endpoint_errors,
        stop,
        task,
        target,
    }
}

/// Publishes what a connection has to say: data, answers, its status and endpoint errors.
pub struct Reporter {
    /// `<service>::<resource>`, for logs.
    pub label: String,
    status_topic: String,
    /// The connection's link to the broker.
    pub link: Link,
    status: watch::Sender<ConnectionStatus>,
    errors: watch::Sender<BTreeMap<String, String>>,
}

impl Reporter {
    pub fn state(&self) -> ConnectionState {
        self.status.borrow().state
    }

    /// Records and publishes (retained) a new state. `since` moves only when the state changes;
    /// the last error is kept until the connection is up again.
    pub async fn set_state(&self, state: ConnectionState, error: Option<String>) {
        let previous = self.status.borrow().clone();
        let mut status = ConnectionStatus::new(state);
        if previous.state == state {
            status.since = previous.since;
        }
        status.forwarding = previous.forwarding.clone();
        status.last_error = error.or(if state == ConnectionState::Connected {
            None
        } else {
            previous.last_error.clone()
        });
        if status == previous && state != ConnectionState::Connecting {
            return;
        }
        self.status.send_replace(status.clone());
        self.publish_status(&status).await;
    }

    /// Records (and publishes, retained, when they changed) an MQTT connection's forwarding
    /// counters.
    pub async fn set_forwarding(&self, stats: crate::mqtt::ForwardingStats) {
        let mut status = self.status.borrow().clone();
        if status.forwarding.as_ref() == Some(&stats) {
            return;
        }
        status.forwarding = Some(stats);
        self.status.send_replace(status.clone());
        self.publish_status(&status).await;
    }

    async fn publish_status(&self, status: &ConnectionStatus) {
        let payload = serde_json::to_vec(status).unwrap_or_default();
        let _ = self
            .link
            .publish(Message::new(
                self.status_topic.clone(),
                payload,
                QoS::AtLeastOnce,
                true,
            ))
            .await;
    }

    /// Publishes `{"timestamp", "value"}` on an endpoint's topic (or hands it to the endpoint's
    /// rule chain) and clears its error.
    pub async fn publish_data(&self, endpoint: &EndpointSpec, value: serde_json::Value, at: i64) {
        let payload = envelope::data(value, at);
        if let Some(rules) = &endpoint.rules {
            // A full queue means the chain is behind the device; the value is dropped and the
            // endpoint says so until the chain catches up.
            if rules.try_send(Bytes::from(payload)).is_err() {
                self.endpoint_failed(
                    &endpoint.id,
                    "its rule chain is behind or stopped; values are being dropped".into(),
                );
                return;
            }
        } else {
            let message = Message::new(
                endpoint.topic.clone(),
                payload,
                endpoint.qos,
                endpoint.retain,
            );
            let _ = self.link.publish(message).await;
        }
        self.clear_error(&endpoint.id);
    }

    /// Publishes an answer (built with [`envelope::result`] or [`envelope::error`]) on `/res`.
    pub async fn answer(&self, endpoint: &EndpointSpec, payload: Vec<u8>) {
        let _ = self
            .link
            .publish(Message::new(
                endpoint.response_topic(),
                payload,
                QoS::AtLeastOnce,
                false,
            ))
            .await;
    }

    /// Records an endpoint's error, logging it once when it first appears or changes.
    pub fn endpoint_failed(&self, id: &str, error: String) {
        if self.errors.borrow().get(id) != Some(&error) {
            warn!(connection = %self.label, endpoint = %id, error = %error, "Endpoint failed");
            self.errors.send_modify(|errors| {
                errors.insert(id.to_string(), error);
            });
        }
    }

    pub fn error_of(&self, id: &str) -> Option<String> {
        self.errors.borrow().get(id).cloned()
    }

    pub fn clear_error(&self, id: &str) {
        if self.errors.borrow().contains_key(id) {
            self.errors.send_modify(|errors| {
                errors.remove(id);
            });
        }
    }

    /// Subscribes to an endpoint's request topic (read and write endpoints only).
    pub async fn listen_for_requests(&mut self, endpoint: &EndpointSpec) -> Result<(), String> {
        if endpoint.operation == Operation::Subscribe {
            return Ok(());
        }
        self.link
            .subscribe(&endpoint.request_topic(), QoS::AtLeastOnce)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot subscribe to the request topic: {e}"))
    }

    /// Forgets an endpoint: its request subscription and its error.
    pub async fn forget(&mut self, endpoint: &EndpointSpec) {
        if endpoint.operation != Operation::Subscribe {
            let _ = self.link.unsubscribe(&endpoint.request_topic()).await;
        }
        self.clear_error(&endpoint.id);
    }

    /// Answers a request that arrived while the device is unreachable.
    pub async fn refuse_request(&self, endpoint: &EndpointSpec, payload: &[u8]) {
        let request = envelope::parse_request(payload).ok();
        let answer = envelope::error(
            request.and_then(|r| r.id),
            "not connected to the device",
            None,
            envelope::now_millis(),
        );
        self.answer(endpoint, answer).await;
    }
}
