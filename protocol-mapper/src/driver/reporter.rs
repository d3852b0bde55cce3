//! What a connection says: data, answers, its status (retained on MQTT) and the errors of its
//! endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::bus::Link;
use broker::{Message, QoS};
use bytes::Bytes;
use tokio::sync::watch;
use tracing::warn;

use super::EndpointSpec;
use super::traffic::Traffic;
use crate::envelope;
use crate::status::{ConnectionState, ConnectionStatus};

/// Publishes what a connection has to say: data, answers, its status and endpoint errors.
pub struct Reporter {
    /// `<service>::<resource>`, for logs.
    pub label: String,
    status_topic: String,
    /// The connection's link to the broker.
    pub(super) link: Link,
    status: watch::Sender<ConnectionStatus>,
    errors: watch::Sender<BTreeMap<String, String>>,
    /// What the connection has done, shared with its handle.
    pub(super) traffic: Arc<Traffic>,
}

impl Reporter {
    pub(super) fn new(
        label: String,
        status_topic: String,
        link: Link,
        status: watch::Sender<ConnectionStatus>,
        errors: watch::Sender<BTreeMap<String, String>>,
        traffic: Arc<Traffic>,
    ) -> Reporter {
        Reporter {
            label,
            status_topic,
            link,
            status,
            errors,
            traffic,
        }
    }

    pub fn state(&self) -> ConnectionState {
        self.status.borrow().state
    }

    /// Records and publishes (retained) a new state. `since` moves only when the state changes;
    /// the last error is kept until the connection is up again.
    pub(super) async fn set_state(&self, state: ConnectionState, error: Option<String>) {
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
    pub async fn set_forwarding(&self, stats: broker::bus::ForwardingStats) {
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
        self.traffic.value_published(&endpoint.id);
        self.clear_error(&endpoint.id);
    }

    /// Publishes an answer (built with [`envelope::result`] or [`envelope::error`]) on an
    /// endpoint's `/res`.
    pub(super) async fn answer(&self, response_topic: &str, payload: Vec<u8>) {
        let _ = self
            .link
            .publish(Message::new(
                response_topic.to_string(),
                payload,
                QoS::AtLeastOnce,
                false,
            ))
            .await;
    }

    /// Records an endpoint's error, logging it once when it first appears or changes.
    pub fn endpoint_failed(&self, id: &str, error: String) {
        self.traffic.endpoint_failed(id);
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

    /// Subscribes to an endpoint's request topic.
    pub(super) async fn listen(&mut self, request_topic: &str) -> Result<(), String> {
        self.link
            .subscribe(request_topic, QoS::AtLeastOnce)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot subscribe to the request topic: {e}"))
    }

    /// Closes the connection's broker link.
    pub(super) async fn disconnect(self) {
        self.link.disconnect().await;
    }

    /// Stops listening on an endpoint's request topic.
    pub(super) async fn stop_listening(&mut self, request_topic: &str) {
        let _ = self.link.unsubscribe(request_topic).await;
    }
}
