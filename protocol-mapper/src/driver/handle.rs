//! The supervisor's handle on a running connection, and starting one.

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::bus::Link;
use commissioning::model::ConnectionTargetState;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::machine::{self, Command};
use super::traffic::{EndpointStats, Traffic, TrafficStats};
use super::{Driver, DriverError, EndpointSpec, Reporter};
use crate::status::{ConnectionState, ConnectionStatus, connection_status_topic};

/// Commands waiting for a connection; the supervisor is the only sender.
const COMMAND_QUEUE: usize = 64;

/// The supervisor's handle on a running connection, whatever its protocol.
pub struct ConnectionHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<ConnectionStatus>,
    endpoint_errors: watch::Receiver<BTreeMap<String, String>>,
    traffic: Arc<Traffic>,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub target: ConnectionTargetState,
}

impl ConnectionHandle {
    pub async fn add_endpoint(&self, endpoint: EndpointSpec) -> Result<(), DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Add(Box::new(endpoint), tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
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

    /// What the connection has done since it started.
    pub fn traffic(&self) -> TrafficStats {
        self.traffic.stats()
    }

    /// What one endpoint did since it was added (`None` before its first value or error).
    pub fn endpoint_traffic(&self, id: &str) -> Option<EndpointStats> {
        self.traffic.endpoint(id)
    }

    /// The last error of an endpoint, if its last read, subscription or request failed.
    pub fn endpoint_error(&self, id: &str) -> Option<String> {
        self.endpoint_errors.borrow().get(id).cloned()
    }

    /// Stops the connection, which closes its session or socket, and waits for it.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Starts a connection: the shared state machine runs `driver` in a task of its own.
/// `link` is the broker connection it publishes and subscribes through.
pub fn spawn<D: Driver>(
    driver: D,
    service: &str,
    resource: &str,
    target: ConnectionTargetState,
    link: impl Into<Link>,
) -> ConnectionHandle {
    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (status_tx, status) = watch::channel(ConnectionStatus::new(ConnectionState::Connecting));
    let (errors_tx, endpoint_errors) = watch::channel(BTreeMap::new());
    let stop = CancellationToken::new();
    let traffic = Arc::new(Traffic::default());
    let reporter = Reporter::new(
        format!("{service}::{resource}"),
        connection_status_topic(service, resource),
        link.into(),
        status_tx,
        errors_tx,
        traffic.clone(),
    );
    let run = machine::run(driver, target, commands_rx, stop.clone(), reporter);
    ConnectionHandle {
        commands,
        status,
        endpoint_errors,
        traffic,
        stop,
        task: std::sync::Mutex::new(Some(tokio::spawn(run))),
        target,
    }
}
