//! A component's session with an MQTT broker outside the process (`broker.external`), seen from
//! the component: requests go to the task that owns the session, deliveries come back. The task
//! (reconnecting, buffering while the broker is away, resubscribing) belongs to the
//! implementation of [`ExternalBroker`]; the gateway's runs on rumqttc in the protocol mapper,
//! the one place that speaks MQTT as a client.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::{Delivery, LinkError, Message, SubscriptionOptions};

/// Requests a component has made and not yet handed over; the component waits beyond this.
const REQUESTS: usize = 1024;

/// An external broker that components connect to, one session each.
pub trait ExternalBroker: Send + Sync {
    /// Starts a link for one component; it connects in the background. An error is a setting
    /// the session cannot use.
    fn link(&self, client_id: &str) -> Result<ExternalLink, String>;

    /// Where it is, without credentials, for logs and the health check.
    fn display_url(&self) -> &str;

    /// Component links open, and connected now (for the health check).
    fn links(&self) -> (u64, u64);
}

/// What a component asks of its session.
#[derive(Debug)]
pub enum ExternalRequest {
    Publish(Message),
    /// Remembered at once and made on the broker whenever the session is up; `done` is
    /// answered when it is remembered.
    Subscribe {
        filter: String,
        options: SubscriptionOptions,
        done: oneshot::Sender<()>,
    },
    Unsubscribe {
        filter: String,
        done: oneshot::Sender<()>,
    },
    /// Send what is buffered when connected, say goodbye, answer `done` and end.
    Disconnect(oneshot::Sender<()>),
}

/// The session task's end of a link.
pub struct ExternalLinkEnd {
    pub requests: mpsc::Receiver<ExternalRequest>,
    /// Messages for the component; a full inbox means the component is behind.
    pub inbox: mpsc::Sender<Delivery>,
    /// Whether the session is up now.
    pub connected: watch::Sender<bool>,
}

/// One component's link to an external broker.
pub struct ExternalLink {
    requests: mpsc::Sender<ExternalRequest>,
    inbox: mpsc::Receiver<Delivery>,
    connected: watch::Receiver<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ExternalLink {
    /// A link whose session runs `serve` on a task of its own, ended when the link is
    /// disconnected or dropped. `inbox` bounds the deliveries waiting for the component.
    pub fn spawn<F, Fut>(inbox: usize, serve: F) -> ExternalLink
    where
        F: FnOnce(ExternalLinkEnd) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (requests, requests_rx) = mpsc::channel(REQUESTS);
        let (inbox_tx, inbox) = mpsc::channel(inbox);
        let (connected_tx, connected) = watch::channel(false);
        let end = ExternalLinkEnd {
            requests: requests_rx,
            inbox: inbox_tx,
            connected: connected_tx,
        };
        ExternalLink {
            requests,
            inbox,
            connected,
            task: Some(tokio::spawn(serve(end))),
        }
    }

    pub async fn publish(&self, message: Message) -> Result<(), LinkError> {
        self.request(ExternalRequest::Publish(message)).await
    }

    /// Remembered at once and made on the broker as soon as it is connected.
    pub async fn subscribe(
        &self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<(), LinkError> {
        let (done, wait) = oneshot::channel();
        self.request(ExternalRequest::Subscribe {
            filter: filter.to_string(),
            options,
            done,
        })
        .await?;
        wait.await.map_err(|_| LinkError::BrokerGone)
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), LinkError> {
        let (done, wait) = oneshot::channel();
        self.request(ExternalRequest::Unsubscribe {
            filter: filter.to_string(),
            done,
        })
        .await?;
        wait.await.map_err(|_| LinkError::BrokerGone)
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        self.inbox.recv().await
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Sends what is buffered when connected, says goodbye and ends the task.
    pub async fn disconnect(mut self) {
        let (done, wait) = oneshot::channel();
        if self
            .requests
            .send(ExternalRequest::Disconnect(done))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn request(&self, request: ExternalRequest) -> Result<(), LinkError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| LinkError::BrokerGone)
    }
}

impl Drop for ExternalLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
