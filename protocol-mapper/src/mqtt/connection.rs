//! The MQTT client driver: one per `Cybus::Connection` with `protocol: Mqtt`. It owns the
//! store-and-forward queue, the remote subscriptions of mappings and, while the link is up, one
//! rumqttc session.
//!
//! Outgoing QoS 1/2 messages are written to the queue first, whatever the link does (the
//! shared state machine lets the driver work while it connects, backs off or is disabled); the
//! driver sends from the queue in order with at most [`WINDOW`] unacknowledged, and deletes a
//! message when its PUBACK (PUBCOMP) arrives. After a reconnect it starts again at the oldest
//! message still queued, so a message in flight when the link dropped is sent again (QoS 1
//! allows the duplicate) and nothing overtakes it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::bus::{
    Link, LinkCounters, QueueCounters, RemoteBroker, RemoteDelivery, SubscriptionCommand,
};
use broker::{Message, QoS};
use commissioning::model::{ConnectionStrategy, ConnectionTargetState, MqttConnection};
use futures_util::future::BoxFuture;
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use super::queue::QueueLimits;
use super::session::{Session, SessionConfig, SessionEvent, WINDOW};
use super::spool::{Sent, Spool};
use crate::backoff::Backoff;
use crate::driver::{self, ConnectionHandle, Driver, DriverError, EndpointSpec, Refusal, Reporter};

/// How often the status (queue fill, rate) is refreshed and old messages expire.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Messages taken from the outbox per disk write.
const BATCH: usize = 512;

/// Where a connection keeps its queue and how big it may grow.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub path: PathBuf,
    pub limits: QueueLimits,
}

/// Starts an MQTT client connection. A configuration the session cannot use (a certificate
/// that does not parse) is an error here, so enabling the service fails with the reason.
pub fn start(
    service: &str,
    resource: &str,
    spec: MqttConnection,
    target: ConnectionTargetState,
    queue: QueueSettings,
    link: impl Into<Link>,
) -> Result<(ConnectionHandle, RemoteBroker), DriverError> {
    let default_client_id = format!("ironbridge-{service}-{resource}");
    let config =
        SessionConfig::new(&spec, &default_client_id).map_err(DriverError::Configuration)?;
    let (remote, end) = RemoteBroker::new();
    let driver = MqttDriver {
        label: format!("{service}::{resource}"),
        config,
        strategy: spec.connection_strategy,
        queue,
        spool: None,
        outbox: end.outbox,
        outbox_open: true,
        batch: Vec::with_capacity(BATCH),
        subscriptions: end.subscriptions,
        registry: Registry::default(),
        queue_counters: end.queue,
        link: end.link,
        stats: remote.clone(),
        rate: Rate::default(),
        ticker: ticker(),
    };
    let handle = driver::spawn(driver, service, resource, target, link);
    Ok((handle, remote))
}

pub(crate) struct MqttDriver {
    /// `<service>::<resource>`, for logs.
    label: String,
    config: SessionConfig,
    strategy: Option<ConnectionStrategy>,
    queue: QueueSettings,
    /// The store-and-forward queue and the send window; opened by `prepare`.
    spool: Option<Spool>,
    outbox: mpsc::Receiver<Message>,
    /// False once every sender is gone (never while the driver keeps `stats`).
    outbox_open: bool,
    /// What the last wake took from the outbox.
    batch: Vec<Message>,
    subscriptions: mpsc::Receiver<SubscriptionCommand>,
    registry: Registry,
    queue_counters: Arc<QueueCounters>,
    link: Arc<LinkCounters>,
    /// For the status snapshot.
    stats: RemoteBroker,
    rate: Rate,
    /// Refreshes the status (queue fill, rate) and expires old messages.
    ticker: tokio::time::Interval,
}

/// A session the remote broker has accepted, and its events.
pub(crate) struct Live {
    session: Session,
    events: mpsc::Receiver<SessionEvent>,
}

/// What woke an MQTT connection.
pub(crate) enum Wake {
    /// News from the session; `None` when its poller has ended.
    Session(Option<SessionEvent>),
    /// Mappings forwarded messages; they are in the driver's batch.
    Forwarded,
    OutboxClosed,
    Subscription(SubscriptionCommand),
    Tick,
}

#[derive(Default)]
struct Rate {
    at: Option<Instant>,
    delivered: u64,
}

impl Driver for MqttDriver {
    const PROTOCOL: &'static str = "MQTT";
    type Session = Live;
    type Wake = Wake;

    fn backoff(&self) -> Backoff {
        Backoff::new(self.strategy.as_ref())
    }

    /// Opens the store-and-forward queue; a queue file that cannot be opened is final.
    async fn prepare(&mut self) -> Result<(), DriverError> {
        let spool = Spool::open(
            &self.queue.path,
            self.queue.limits,
            self.queue_counters.clone(),
        )
        .await
        .map_err(DriverError::Configuration)?;
        if spool.len() > 0 {
            info!(connection = %self.label, messages = spool.len(), "Store-and-forward queue holds messages from an earlier run");
        }
        self.spool = Some(spool);
        Ok(())
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<Live, DriverError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let (session, mut events) = Session::open(&config);
            let failure = loop {
                match events.recv().await {
                    Some(SessionEvent::Connected) => return Ok(Live { session, events }),
                    Some(SessionEvent::Lost(reason)) => break reason,
                    Some(_) => continue,
                    None => break "the session ended".to_string(),
                }
            };
            session.close(events).await;
            Err(DriverError::Connection(failure))
        })
    }

    async fn on_connected(&mut self, live: &mut Live, _: &Reporter) -> Result<(), DriverError> {
        info!(connection = %self.label, client_id = %self.config.client_id, "Connected to the remote broker");
        self.registry.subscribe_all(&live.session);
        self.fill_window(&live.session).await
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut Live>) -> Wake {
        let events = async {
            match session {
                Some(live) => live.events.recv().await,
                None => std::future::pending().await,
            }
        };
        let forwarding = self.outbox_open && self.spool.is_some();
        tokio::select! {
            event = events => Wake::Session(event),
            Some(command) = self.subscriptions.recv() => Wake::Subscription(command),
            n = self.outbox.recv_many(&mut self.batch, BATCH), if forwarding => match n {
                0 => Wake::OutboxClosed,
                _ => Wake::Forwarded,
            },
            _ = self.ticker.tick() => Wake::Tick,
        }
    }

    async fn work(
        &mut self,
        wake: Wake,
        mut session: Option<&mut Live>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        match wake {
            Wake::Session(None) => {
                return Err(DriverError::Connection("the session ended".into()));
            }
            Wake::Session(Some(event)) => {
                if let Some(live) = session.as_deref_mut() {
                    self.take_events(event, live)?;
                    self.flush_acks().await;
                }
            }
            Wake::Forwarded => self.store(session.as_deref().map(|l| &l.session)).await,
            Wake::OutboxClosed => self.outbox_open = false,
            Wake::Subscription(command) => self
                .registry
                .apply(command, session.as_deref().map(|l| &l.session)),
            Wake::Tick => self.refresh_status(report).await,
        }
        match session {
            Some(live) => self.fill_window(&live.session).await,
            None => Ok(()),
        }
    }

    async fn add_endpoint(
        &mut self,
        _: EndpointSpec,
        _: Option<&mut Live>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        Err(DriverError::Unsupported(
            "MQTT endpoints have no driver in this build; a Cybus::Mapping with `connection: !ref` on its subscribe or publish moves data to and from a remote broker".into(),
        ))
    }

    async fn remove_endpoint(&mut self, _: &str, _: Option<&mut Live>) {}

    async fn request(
        &mut self,
        _: &str,
        _: Json,
        _: &mut Live,
        _: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        Ok(Err(Refusal::new("MQTT connections take no requests")))
    }

    async fn close(&mut self, live: Live) {
        live.session.close(live.events).await;
        self.flush_acks().await;
        if let Some(spool) = self.spool.as_mut() {
            spool.session_ended();
        }
    }

    async fn shutdown(&mut self, report: &Reporter) {
        self.refresh_status(report).await;
        if let Some(spool) = self.spool.take() {
            spool.close().await;
        }
    }
}

impl MqttDriver {
    /// Handles `first` and whatever else has arrived, so acknowledgements are deleted from the
    /// queue in batches.
    fn take_events(&mut self, first: SessionEvent, live: &mut Live) -> Result<(), DriverError> {
        let mut event = first;
        for _ in 0..WINDOW * 2 {
            match event {
                SessionEvent::Lost(reason) => return Err(DriverError::Connection(reason)),
                other => self.on_event(other),
            }
            match live.events.try_recv() {
                Ok(next) => event = next,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: SessionEvent) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        match event {
            SessionEvent::Sent(pkid) => {
                if let Sent::Direct = spool.sent(pkid) {
                    self.link.sent_qos0.fetch_add(1, Ordering::Relaxed);
                }
            }
            SessionEvent::Acked { pkid, refused } => {
                if spool.acknowledged(pkid)
                    && let Some(reason) = refused
                {
                    // The broker will not take it however often it is sent (not authorised,
                    // quota); keeping it would block everything behind it.
                    let total = self.link.refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if total == 1 || total.is_power_of_two() {
                        warn!(connection = %self.label, reason = %reason, refused_total = total, "The remote broker refused a forwarded message");
                    }
                }
            }
            SessionEvent::Received(message) => {
                self.link.received.fetch_add(1, Ordering::Relaxed);
                if !self.registry.dispatch(&message) {
                    self.link.dropped_received.fetch_add(1, Ordering::Relaxed);
                }
            }
            SessionEvent::Connected | SessionEvent::Lost(_) => {}
        }
    }

    /// Stores the forwarded QoS 1/2 messages of the batch; sends QoS 0 ones straight away when
    /// connected and drops them (counted) otherwise.
    async fn store(&mut self, session: Option<&Session>) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        for message in self.batch.iter().filter(|m| m.qos == QoS::AtMostOnce) {
            let sent = session.is_some_and(|s| spool.send_direct(s, &message.topic, message));
            if !sent {
                self.link.dropped_qos0.fetch_add(1, Ordering::Relaxed);
            }
        }
        match spool.store(&self.batch).await {
            Ok(0) => {}
            Ok(dropped) => {
                warn!(connection = %self.label, dropped, "Store-and-forward queue full; the oldest messages were dropped")
            }
            Err(e) => {
                // Nothing else can hold them; say so loudly.
                warn!(connection = %self.label, error = %e, lost = self.batch.len(), "Cannot store forwarded messages");
            }
        }
        self.batch.clear();
    }

    /// Sends queued messages until the window is full.
    async fn fill_window(&mut self, session: &Session) -> Result<(), DriverError> {
        match self.spool.as_mut() {
            Some(spool) => spool
                .fill_window(session, str::to_string)
                .await
                .map_err(DriverError::Connection),
            None => Ok(()),
        }
    }

    async fn flush_acks(&mut self) {
        if let Some(spool) = self.spool.as_mut()
            && let Err(e) = spool.flush_acknowledged().await
        {
            warn!(connection = %self.label, error = %e, "Cannot remove delivered messages from the queue; they may be sent again");
        }
    }

    async fn refresh_status(&mut self, report: &Reporter) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        if let Err(e) = spool.expire().await {
            warn!(connection = %self.label, error = %e, "Cannot expire old messages");
        }
        let now = Instant::now();
        let delivered = self.queue_counters.delivered.load(Ordering::Relaxed);
        if let Some(at) = self.rate.at {
            let seconds = now.duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                let per_second = (delivered - self.rate.delivered) as f64 / seconds;
                self.link
                    .delivery_rate_milli
                    .store((per_second * 1000.0) as u64, Ordering::Relaxed);
            }
        }
        self.rate = Rate {
            at: Some(now),
            delivered,
        };
        report.set_forwarding(self.stats.stats()).await;
    }
}

fn ticker() -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The remote subscriptions of mappings. Several mappings may subscribe to the same filter;
/// the broker sees it once, with the highest QoS asked for.
#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    filter: String,
    qos: QoS,
    tag: usize,
    deliver: mpsc::Sender<RemoteDelivery>,
}

impl Registry {
    fn apply(&mut self, command: SubscriptionCommand, session: Option<&Session>) {
        match command {
            SubscriptionCommand::Add {
                filter,
                qos,
                tag,
                deliver,
                done,
            } => {
                self.next_id += 1;
                let id = self.next_id;
                if let Some(session) = session {
                    let _ = session.try_subscribe(&filter, qos);
                }
                self.entries.insert(
                    id,
                    Entry {
                        filter,
                        qos,
                        tag,
                        deliver,
                    },
                );
                let _ = done.send(id);
            }
            SubscriptionCommand::Remove(id) => {
                if let Some(entry) = self.entries.remove(&id)
                    && !self.entries.values().any(|e| e.filter == entry.filter)
                    && let Some(session) = session
                {
                    let _ = session.try_unsubscribe(&entry.filter);
                }
            }
        }
    }

    fn subscribe_all(&self, session: &Session) {
        let mut filters: HashMap<&str, QoS> = HashMap::new();
        for entry in self.entries.values() {
            let qos = filters.entry(&entry.filter).or_insert(entry.qos);
            *qos = (*qos).max(entry.qos);
        }
        for (filter, qos) in filters {
            let _ = session.try_subscribe(filter, qos);
        }
    }

    /// Hands a message to every subscription it matches. False when one of them was full.
    fn dispatch(&self, message: &Message) -> bool {
        let mut delivered = true;
        for entry in self.entries.values() {
            if broker::topic::matches(&entry.filter, &message.topic)
                && entry
                    .deliver
                    .try_send((entry.tag, message.clone()))
                    .is_err()
            {
                delivered = false;
            }
        }
        delivered
    }
}
