//! Chains at work on the broker. Each mapping entry is one task with its own in-process broker
//! link: it subscribes (with no-local, so an entry never hears its own output and cannot feed
//! itself), runs each message through its chain and publishes the result. An endpoint's chain
//! is the same task fed by its connection instead of a subscription.
//!
//! A message a rule cannot handle is dropped and counted; the log says so at most once per
//! [`LOG_INTERVAL`] per mapping, with how many were dropped since. The task keeps running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::bus::Link;
use broker::bus::{RemoteBroker, RemoteDelivery};
use broker::{Message, QoS};
use bytes::Bytes;
use commissioning::topic_pattern::{NamedFilter, Template};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::chain::{Chain, Input, Output, RuleError};
use crate::context::Context;

/// How often at most a mapping logs dropped messages.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counters of one mapping (all its entries) or one endpoint chain.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
    log: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    last: Option<Instant>,
    unlogged: u64,
}

/// What the service status shows of a mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub received: u64,
    pub published: u64,
    /// Messages dropped because a rule failed on them.
    pub dropped: u64,
    pub last_error: Option<String>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn dropped(&self, name: &str, error: &str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.unlogged += 1;
        let now = Instant::now();
        if log
            .last
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL)
        {
            warn!(
                mapping = %name,
                error = %error,
                dropped_since_last_report = log.unlogged,
                dropped_total = total,
                "Message dropped by a rule"
            );
            log.last = Some(now);
            log.unlogged = 0;
        }
    }
}

/// A subscription of a mapping entry: its filter with named wildcards and its label.
pub struct Source {
    pub filter: NamedFilter,
    pub qos: QoS,
    pub label: Option<Template>,
    /// Subscribed on a remote broker: its messages arrive tagged, never on the broker link.
    pub remote: bool,
}

impl Source {
    /// The chain's input for a message on `topic`, or `None` when this source does not match.
    fn input(&self, topic: &str, payload: &Bytes) -> Option<Result<Input, String>> {
        let bound = self.filter.bind(topic)?;
        let mut context = Context::new(topic);
        for (name, value) in bound {
            context.set_var(name, serde_json::Value::String(value.to_string()));
        }
        let label = match &self.label {
            Some(template) => match context.render(template) {
                Ok(label) => label,
                Err(e) => return Some(Err(e)),
            },
            None => topic.to_string(),
        };
        Some(Ok(Input {
            context,
            label,
            payload: payload.clone(),
        }))
    }
}

/// Where a chain's output goes: a topic (with variables) on the internal broker, or on a remote
/// broker through its MQTT connection.
pub struct Sink {
    pub topic: Template,
    pub qos: QoS,
    pub retain: bool,
    pub remote: Option<RemoteBroker>,
}

impl Sink {
    async fn publish(&self, link: &Link, output: Output) -> Result<(), String> {
        let topic = match self.topic.as_literal() {
            Some(topic) => topic.to_string(),
            None => output.context.render(&self.topic)?,
        };
        let message = Message::new(topic, output.payload, self.qos, self.retain);
        match &self.remote {
            Some(remote) => remote.forward(message).await,
            None => link
                .publish(message)
                .await
                .map_err(|e| format!("cannot publish: {e}")),
        }
    }
}

/// Where a chain's messages come from.
pub enum Inbox {
    /// The task's own subscriptions; the first local source whose filter matches a topic takes
    /// it. Messages of remote sources arrive on `remote`, tagged with their source's index.
    Subscriptions {
        sources: Vec<Source>,
        remote: Option<mpsc::Receiver<RemoteDelivery>>,
    },
    /// Data of an endpoint, handed over by its connection; `topic` is its `$context.topic`.
    Endpoint {
        topic: String,
        data: mpsc::Receiver<Bytes>,
    },
}

impl Inbox {
    /// The next input; `None` when the broker or the connection went away.
    async fn next(&mut self, link: &mut Link) -> Option<Result<Input, String>> {
        match self {
            Inbox::Subscriptions { sources, remote } => loop {
                tokio::select! {
                    delivery = link.recv() => {
                        let delivery = delivery?;
                        let topic = &delivery.message.topic;
                        let payload = &delivery.message.payload;
                        let input = sources
                            .iter()
                            .filter(|s| !s.remote)
                            .find_map(|s| s.input(topic, payload));
                        if input.is_some() {
                            return input;
                        }
                    }
                    Some((index, message)) = recv_remote(remote) => {
                        let input = sources
                            .get(index)
                            .and_then(|s| s.input(&message.topic, &message.payload));
                        if input.is_some() {
                            return input;
                        }
                    }
                }
            },
            Inbox::Endpoint { topic, data } => {
                let payload = data.recv().await?;
                Some(Ok(Input {
                    context: Context::new(topic.as_str()),
                    label: topic.clone(),
                    payload,
                }))
            }
        }
    }
}

/// The next remote delivery; pending forever when there are no remote sources (or their
/// connection is gone, which the connection's status reports).
async fn recv_remote(
    remote: &mut Option<mpsc::Receiver<RemoteDelivery>>,
) -> Option<RemoteDelivery> {
    match remote {
        Some(rx) => match rx.recv().await {
            Some(delivery) => Some(delivery),
            None => {
                *remote = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// One chain between its inbox and its sink.
pub struct ChainTask {
    pub name: String,
    pub link: Link,
    pub inbox: Inbox,
    pub chain: Chain,
    pub sink: Sink,
    pub stats: Arc<Stats>,
    /// Subscriptions on remote brokers, removed when the task ends.
    pub remote_subscriptions: Vec<(RemoteBroker, u64)>,
}

impl ChainTask {
    pub fn set_sources(&mut self, new: Vec<Source>) {
        if let Inbox::Subscriptions { sources, .. } = &mut self.inbox {
            *sources = new;
        }
    }

    pub fn set_remote_inbox(&mut self, rx: mpsc::Receiver<RemoteDelivery>) {
        if let Inbox::Subscriptions { remote, .. } = &mut self.inbox {
            *remote = Some(rx);
        }
    }

    pub async fn unsubscribe_remote(&self) {
        for (remote, id) in &self.remote_subscriptions {
            remote.unsubscribe(*id).await;
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let deadline = self.chain.next_deadline();
            let input = tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep_until(deadline) => {
                    for result in self.chain.flush_due(Instant::now()) {
                        self.finish(result).await;
                    }
                    continue;
                }
                input = self.inbox.next(&mut self.link) => match input {
                    Some(input) => input,
                    None => break,
                },
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let result = match input {
                Ok(input) => self.chain.process(input, Instant::now()),
                Err(message) => Err(RuleError {
                    rule: None,
                    kind: "label",
                    message,
                }),
            };
            self.finish(result).await;
        }
        self.unsubscribe_remote().await;
        self.link.disconnect().await;
    }

    async fn finish(&self, result: Result<Option<Output>, RuleError>) {
        let outcome = match result {
            Ok(None) => return,
            Ok(Some(output)) => self.sink.publish(&self.link, output).await,
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.stats.dropped(&self.name, &error),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
