//! One way to run a connection, whatever its protocol.
//!
//! A protocol implements [`Driver`]: how to open a session with its device or broker, what
//! wakes it while it runs (a poll coming due, a data change, a message to forward), how it runs
//! endpoints and answers their requests. The state machine in `machine.rs` does everything
//! else, the same way for every protocol: it reports `connecting`, `connected`,
//! `reconnecting` with the last error and `disconnected` (retained on MQTT), waits out the
//! `connectionStrategy` back-off between attempts, takes endpoints added and removed by the
//! supervisor, routes `/req` and `/set` messages and answers them on `/res` (with an error while
//! the device is unreachable), and stops when told. No driver has a reconnect loop of its own.
//!
//! The supervisor holds a [`ConnectionHandle`]; the task behind it owns the driver.

mod endpoint;
mod handle;
mod machine;
mod poll;
mod reporter;
#[cfg(test)]
mod tests;
mod traffic;

use std::future::Future;

use futures_util::future::BoxFuture;
use serde_json::Value as Json;

pub use endpoint::EndpointSpec;
pub use handle::{ConnectionHandle, spawn};
pub use poll::{Polled, PolledEndpoints};
pub use reporter::Reporter;
pub use traffic::{EndpointStats, TrafficStats};

use crate::backoff::Backoff;

/// Why a driver could not do what it was asked. The text is for people (status `lastError`,
/// service errors, logs); the variant is for the code that decides what happens next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// Settings the driver cannot use (a certificate that does not parse, a folder it cannot
    /// write). Retrying cannot help: the connection stays disconnected with the reason until
    /// it is reconfigured.
    #[error("{0}")]
    Configuration(String),
    /// The device or remote broker is unreachable or went away. The connection reconnects after
    /// the back-off.
    #[error("{0}")]
    Connection(String),
    /// An endpoint this connection cannot run: another protocol's address, an address the
    /// protocol cannot parse.
    #[error("{0}")]
    Endpoint(String),
    /// What was asked for has no driver in this build. The resource is recorded and reported
    /// unavailable with this reason, so its service shows deviated instead of failing.
    #[error("{0}")]
    Unsupported(String),
    /// The connection's task has ended (stopped, or its broker link is gone).
    #[error("the connection has stopped")]
    Stopped,
}

/// A request the device (or the driver) refused, answered on `/res` with `message` and, when
/// the protocol has one, its error code (a Modbus exception, an OPC UA status code).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub code: Option<Json>,
}

impl Refusal {
    pub fn new(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            code: None,
        }
    }

    pub fn with_code(message: impl Into<String>, code: impl Into<Json>) -> Refusal {
        Refusal {
            message: message.into(),
            code: Some(code.into()),
        }
    }
}

/// A protocol's part of a connection. Methods that take `session` get `None` while the
/// connection is not up; the state machine never calls two of them at once.
pub trait Driver: Send + 'static {
    /// The protocol's name in logs: "Modbus", "OPC UA", "MQTT".
    const PROTOCOL: &'static str;

    /// What exists only while connected (a socket, a session and its subscriptions). Dropping
    /// it after [`Driver::close`] releases everything of it.
    type Session: Send + 'static;

    /// What [`Driver::wake`] found to do.
    type Wake: Send;

    /// The back-off between attempts, from the connection's `connectionStrategy`.
    fn backoff(&self) -> Backoff;

    /// Gets ready once, before the first attempt and even when the target state is
    /// `disconnected`: opening files, checking certificates. An error here is final (see
    /// [`DriverError::Configuration`]).
    fn prepare(&mut self) -> impl Future<Output = Result<(), DriverError>> + Send {
        async { Ok(()) }
    }

    /// One attempt to open a session. The future owns what it needs, so endpoint changes,
    /// requests and the driver's own work go on while it runs (a slow TCP connect does not hold
    /// up the supervisor), and dropping it (on stop) abandons the attempt.
    fn connect(&mut self) -> BoxFuture<'static, Result<Self::Session, DriverError>>;

    /// Sets up a new session: creates subscriptions, resubscribes. Called before the state
    /// becomes `connected`; an error counts as a failed attempt.
    fn on_connected(
        &mut self,
        session: &mut Self::Session,
        report: &Reporter,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Waits for the driver's next piece of work. Must be cancel safe: the state machine drops
    /// it whenever a command, a request or the stop signal comes first.
    fn wake<'a>(
        &'a mut self,
        session: Option<&'a mut Self::Session>,
    ) -> impl Future<Output = Self::Wake> + Send + 'a;

    /// Does what [`Driver::wake`] found. An error while connected ends the session (it is
    /// lost and the connection reconnects).
    fn work(
        &mut self,
        wake: Self::Wake,
        session: Option<&mut Self::Session>,
        report: &Reporter,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Takes on an endpoint. The state machine has already checked nothing; the driver refuses
    /// addresses it cannot run with [`DriverError::Endpoint`] (or
    /// [`DriverError::Unsupported`]), and otherwise starts it at once when connected.
    fn add_endpoint(
        &mut self,
        endpoint: EndpointSpec,
        session: Option<&mut Self::Session>,
        report: &Reporter,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Drops an endpoint and, when connected, what the session holds for it.
    fn remove_endpoint(
        &mut self,
        id: &str,
        session: Option<&mut Self::Session>,
    ) -> impl Future<Output = ()> + Send;

    /// Answers a `/req` (read now) of a read endpoint or a `/set` (write `value`) of a write
    /// endpoint. `Ok(Err(_))` is the device refusing; `Err(_)` means the session is lost.
    fn request(
        &mut self,
        endpoint: &str,
        value: Json,
        session: &mut Self::Session,
        report: &Reporter,
    ) -> impl Future<Output = Result<Result<Json, Refusal>, DriverError>> + Send;

    /// Ends a session: politely when the other side is still there.
    fn close(&mut self, session: Self::Session) -> impl Future<Output = ()> + Send;

    /// Last words when the connection stops, after the session (if any) is closed.
    fn shutdown(&mut self, _report: &Reporter) -> impl Future<Output = ()> + Send {
        async {}
    }
}
