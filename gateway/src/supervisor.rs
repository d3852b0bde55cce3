//! The supervisor: owns the tasks of every service resource and publishes service states as
//! retained messages on `$SYS/ironbridge/services/<id>/status`.
//!
//! Connections, endpoints and mappings have no driver in this build yet (the protocol mapper and
//! rule engine come next): they are validated and recorded, and report `unavailable` with that
//! reason, which makes their service `deviated`. Nothing pretends to read a device.

use std::collections::HashMap;
use std::sync::Mutex;

use admin_api::services::{BoxFuture, ResourceRuntime, ResourceStatus};
use broker::BrokerHandle;
use broker::codec::QoS;
use broker::message::Message;
use bytes::Bytes;
use commissioning::model::ResourceKind;
use commissioning::{Resource, Service};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Status messages waiting for the broker link; more than this and the oldest news is dropped
/// (a later state of the same service supersedes it anyway).
const STATUS_QUEUE: usize = 1024;

pub struct Supervisor {
    resources: Mutex<HashMap<(String, String), String>>,
    status: mpsc::Sender<(String, Bytes)>,
}

impl Supervisor {
    pub fn new() -> (Supervisor, mpsc::Receiver<(String, Bytes)>) {
        let (status, rx) = mpsc::channel(STATUS_QUEUE);
        (
            Supervisor {
                resources: Mutex::new(HashMap::new()),
                status,
            },
            rx,
        )
    }

    fn publish(&self, topic: String, payload: Bytes) {
        if self.status.try_send((topic, payload)).is_err() {
            warn!("Status queue full; a service status update was dropped");
        }
    }
}

/// Why a resource cannot run in this build.
fn no_driver(resource: &Resource) -> String {
    match &resource.kind {
        ResourceKind::Connection(c) => format!(
            "no driver for {:?} connections in this build yet",
            c.protocol
        ),
        ResourceKind::Endpoint(e) => {
            format!("no driver for {:?} endpoints in this build yet", e.protocol)
        }
        ResourceKind::Mapping(_) => {
            "the rule engine that runs mappings is not in this build yet".into()
        }
        ResourceKind::User(_) | ResourceKind::Role(_) => String::new(),
    }
}

impl ResourceRuntime for Supervisor {
    fn start<'a>(
        &'a self,
        service: &'a Service,
        resource: &'a Resource,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let reason = no_driver(resource);
            warn!(service = %service.id, resource = %resource.id, reason = %reason, "Resource recorded but not running");
            self.resources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((service.id.clone(), resource.id.clone()), reason);
            Ok(())
        })
    }

    fn stop<'a>(&'a self, service_id: &'a str, resource_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.resources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(service_id.to_string(), resource_id.to_string()));
        })
    }

    fn status(&self, service_id: &str, resource_id: &str) -> ResourceStatus {
        let resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
        match resources.get(&(service_id.to_string(), resource_id.to_string())) {
            Some(reason) => ResourceStatus {
                state: "unavailable".into(),
                in_target_state: false,
                message: Some(reason.clone()),
            },
            None => ResourceStatus {
                state: "stopped".into(),
                in_target_state: false,
                message: None,
            },
        }
    }

    fn service_state(&self, service_id: &str, state: &str, last_error: Option<&str>) {
        let payload = serde_json::json!({
            "state": state,
            "since": now_millis(),
            "lastError": last_error,
        });
        self.publish(status_topic(service_id), Bytes::from(payload.to_string()));
    }

    fn service_removed(&self, service_id: &str) {
        // An empty retained message deletes the retained status.
        self.publish(status_topic(service_id), Bytes::new());
    }
}

fn status_topic(service_id: &str) -> String {
    format!("$SYS/ironbridge/services/{service_id}/status")
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Publishes queued status messages, retained, through an in-process broker link.
pub async fn publish_statuses(
    broker: BrokerHandle,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    stop: CancellationToken,
) {
    let client = match broker.connect_local("ironbridge/supervisor").await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "Cannot connect the supervisor to the broker; service states are not published");
            return;
        }
    };
    loop {
        let (topic, payload) = tokio::select! {
            _ = stop.cancelled() => break,
            next = rx.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        if let Err(e) = client
            .publish(Message::new(topic, payload, QoS::AtLeastOnce, true))
            .await
        {
            warn!(error = %e, "Cannot publish a service status");
        }
    }
    client.disconnect().await;
}
