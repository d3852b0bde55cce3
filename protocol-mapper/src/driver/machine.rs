//! The connection state machine every driver runs on.
//!
//! ```text
//!               prepare fails / targetState disconnected
//!   start ----------------------------------------------------> Down (disconnected)
//!     |
//!     v            attempt fails: lastError, back-off
//!   Connecting -----------------------------------> BackingOff
//!     | attempt succeeds             ^                  | delay over
//!     v                              | lost: lastError  v
//!   Connected ------------------------'             Connecting (reconnecting)
//! ```
//!
//! Whatever the phase, the machine keeps taking endpoint changes, answers requests (with an
//! error while not connected) and lets the driver do its own work (an MQTT connection keeps
//! queueing what mappings forward while its broker is away). One task, one `select!`, no
//! locks: the driver is only ever called by this loop.

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Driver, DriverError, EndpointSpec, Reporter};
use crate::backoff::Backoff;
use crate::envelope;
use crate::status::ConnectionState;
use commissioning::model::ConnectionTargetState;

/// What the supervisor asks of a running connection.
#[derive(Debug)]
pub(super) enum Command {
    Add(Box<EndpointSpec>, oneshot::Sender<Result<(), DriverError>>),
    Remove(String, oneshot::Sender<()>),
}

enum Phase<S> {
    /// Not trying: the target state is `disconnected`, or the driver cannot work as
    /// configured.
    Down,
    Connecting(BoxFuture<'static, Result<S, DriverError>>),
    Connected(S),
    /// Waiting out the back-off; the next attempt starts at this instant.
    BackingOff(Instant),
}

impl<S> Phase<S> {
    fn session(&mut self) -> Option<&mut S> {
        match self {
            Phase::Connected(session) => Some(session),
            _ => None,
        }
    }
}

enum Event<S, W> {
    Stop,
    Command(Command),
    Request(std::sync::Arc<broker::Message>),
    Attempted(Result<S, DriverError>),
    RetryDue,
    Wake(W),
}

/// Where a request topic leads.
struct Route {
    endpoint: String,
    response_topic: String,
}

struct Machine<D: Driver> {
    driver: D,
    commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    report: Reporter,
    backoff: Backoff,
    phase: Phase<D::Session>,
    /// Request topic (`.../req`, `.../set`) to endpoint.
    routes: HashMap<String, Route>,
    /// Endpoint id to its request topic.
    request_topics: HashMap<String, String>,
}

/// Runs a connection until it is stopped, its supervisor's handle is dropped or its broker
/// link ends.
pub(super) async fn run<D: Driver>(
    driver: D,
    target: ConnectionTargetState,
    commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    report: Reporter,
) {
    let mut machine = Machine {
        backoff: driver.backoff(),
        driver,
        commands,
        stop,
        report,
        phase: Phase::Down,
        routes: HashMap::new(),
        request_topics: HashMap::new(),
    };
    machine.start(target).await;
    machine.serve().await;
    machine.finish().await;
}

impl<D: Driver> Machine<D> {
    async fn start(&mut self, target: ConnectionTargetState) {
        match (self.driver.prepare().await, target) {
            (Err(error), _) => {
                warn!(connection = %self.report.label, error = %error, "{} connection cannot start", D::PROTOCOL);
                self.report
                    .set_state(ConnectionState::Disconnected, Some(error.to_string()))
                    .await;
            }
            (Ok(()), ConnectionTargetState::Disconnected) => {
                self.report
                    .set_state(ConnectionState::Disconnected, None)
                    .await;
            }
            (Ok(()), ConnectionTargetState::Connected) => {
                self.report
                    .set_state(ConnectionState::Connecting, None)
                    .await;
                self.phase = Phase::Connecting(self.driver.connect());
            }
        }
    }

    async fn serve(&mut self) {
        loop {
            match self.next_event().await {
                Event::Stop => return,
                Event::Command(Command::Add(endpoint, reply)) => {
                    let added = self.add(*endpoint).await;
                    let _ = reply.send(added);
                }
                Event::Command(Command::Remove(id, reply)) => {
                    self.remove(&id).await;
                    let _ = reply.send(());
                }
                Event::Request(message) => self.answer(&message.topic, &message.payload).await,
                Event::Attempted(Ok(session)) => self.connected(session).await,
                Event::Attempted(Err(error)) => self.attempt_failed(error).await,
                Event::RetryDue => {
                    self.report
                        .set_state(ConnectionState::Reconnecting, None)
                        .await;
                    self.phase = Phase::Connecting(self.driver.connect());
                }
                Event::Wake(wake) => {
                    let worked = self
                        .driver
                        .work(wake, self.phase.session(), &self.report)
                        .await;
                    if let Err(error) = worked {
                        self.lost(error).await;
                    }
                }
            }
        }
    }

    async fn next_event(&mut self) -> Event<D::Session, D::Wake> {
        let (session, attempt, retry_at) = match &mut self.phase {
            Phase::Connected(session) => (Some(session), None, None),
            Phase::Connecting(attempt) => (None, Some(attempt), None),
            Phase::BackingOff(at) => (None, None, Some(*at)),
            Phase::Down => (None, None, None),
        };
        let attempted = async {
            match attempt {
                Some(attempt) => attempt.await,
                None => std::future::pending().await,
            }
        };
        let retry_due = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.stop.cancelled() => Event::Stop,
            command = self.commands.recv() => command.map_or(Event::Stop, Event::Command),
            delivery = self.report.link.recv() => {
                delivery.map_or(Event::Stop, |delivery| Event::Request(delivery.message))
            }
            result = attempted => Event::Attempted(result),
            () = retry_due => Event::RetryDue,
            wake = self.driver.wake(session) => Event::Wake(wake),
        }
    }

    async fn connected(&mut self, mut session: D::Session) {
        if let Err(error) = self.driver.on_connected(&mut session, &self.report).await {
            self.driver.close(session).await;
            self.attempt_failed(error).await;
            return;
        }
        self.backoff.reset();
        info!(connection = %self.report.label, "{} connection established", D::PROTOCOL);
        self.report
            .set_state(ConnectionState::Connected, None)
            .await;
        self.phase = Phase::Connected(session);
    }

    async fn attempt_failed(&mut self, error: DriverError) {
        if let DriverError::Configuration(_) = error {
            warn!(connection = %self.report.label, error = %error, "{} connection cannot work as configured", D::PROTOCOL);
            self.report
                .set_state(ConnectionState::Disconnected, Some(error.to_string()))
                .await;
            self.phase = Phase::Down;
            return;
        }
        debug!(connection = %self.report.label, error = %error, "{} connect failed", D::PROTOCOL);
        self.report.traffic.attempt_failed();
        // The first attempts stay `connecting`, later ones `reconnecting`; only the error is
        // news.
        let state = self.report.state();
        self.report.set_state(state, Some(error.to_string())).await;
        self.back_off();
    }

    /// The session failed while connected: close it and try again after the back-off.
    async fn lost(&mut self, error: DriverError) {
        match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::Connected(session) => {
                warn!(connection = %self.report.label, error = %error, "{} connection lost", D::PROTOCOL);
                self.report.traffic.session_lost();
                self.driver.close(session).await;
                self.report
                    .set_state(ConnectionState::Reconnecting, Some(error.to_string()))
                    .await;
                self.back_off();
            }
            other => {
                self.phase = other;
                debug!(connection = %self.report.label, error = %error, "{} work failed while not connected", D::PROTOCOL);
            }
        }
    }

    fn back_off(&mut self) {
        let delay = self.backoff.next_delay(rand::random());
        self.phase = Phase::BackingOff(Instant::now() + delay);
    }

    async fn add(&mut self, endpoint: EndpointSpec) -> Result<(), DriverError> {
        let id = endpoint.id.clone();
        let request_topic = endpoint.request_topic();
        let response_topic = endpoint.response_topic();
        self.driver
            .add_endpoint(endpoint, self.phase.session(), &self.report)
            .await?;
        if let Some(topic) = request_topic {
            if let Err(error) = self.report.listen(&topic).await {
                self.driver.remove_endpoint(&id, self.phase.session()).await;
                return Err(DriverError::Endpoint(error));
            }
            self.routes.insert(
                topic.clone(),
                Route {
                    endpoint: id.clone(),
                    response_topic,
                },
            );
            self.request_topics.insert(id, topic);
        }
        Ok(())
    }

    async fn remove(&mut self, id: &str) {
        self.driver.remove_endpoint(id, self.phase.session()).await;
        if let Some(topic) = self.request_topics.remove(id) {
            self.routes.remove(&topic);
            self.report.stop_listening(&topic).await;
        }
        self.report.clear_error(id);
        self.report.traffic.endpoint_removed(id);
    }

    /// Answers a `/req` or `/set` on the endpoint's `/res`: with the driver's result when
    /// connected, with an error otherwise.
    async fn answer(&mut self, topic: &str, payload: &[u8]) {
        let Some(route) = self.routes.get(topic) else {
            return;
        };
        let (endpoint, response_topic) = (route.endpoint.clone(), route.response_topic.clone());
        let request = match envelope::parse_request(payload) {
            Ok(request) => request,
            Err(error) => {
                let answer = envelope::error(None, &error, None, envelope::now_millis());
                self.report.traffic.request_answered(false);
                self.report.answer(&response_topic, answer).await;
                return;
            }
        };
        let Phase::Connected(session) = &mut self.phase else {
            let answer = envelope::error(
                request.id,
                "not connected to the device",
                None,
                envelope::now_millis(),
            );
            self.report.traffic.request_answered(false);
            self.report.answer(&response_topic, answer).await;
            return;
        };
        let outcome = self
            .driver
            .request(&endpoint, request.value, session, &self.report)
            .await;
        let now = envelope::now_millis();
        self.report
            .traffic
            .request_answered(matches!(outcome, Ok(Ok(_))));
        let (answer, lost) = match outcome {
            Ok(Ok(value)) => (envelope::result(request.id, value, now), None),
            Ok(Err(refusal)) => (
                envelope::error(request.id, &refusal.message, refusal.code, now),
                None,
            ),
            Err(error) => (
                envelope::error(request.id, &error.to_string(), None, now),
                Some(error),
            ),
        };
        self.report.answer(&response_topic, answer).await;
        if let Some(error) = lost {
            self.lost(error).await;
        }
    }

    async fn finish(mut self) {
        if let Phase::Connected(session) = std::mem::replace(&mut self.phase, Phase::Down) {
            self.driver.close(session).await;
        }
        self.driver.shutdown(&self.report).await;
        self.report
            .set_state(ConnectionState::Disconnected, None)
            .await;
        self.report.disconnect().await;
    }
}
