//! The MQTT connection actor: one per `Cybus::Connection` with `protocol: Mqtt`. It owns the
//! store-and-forward queue, the remote subscriptions of mappings and, while the link is up, one
//! rumqttc session.
//!
//! Outgoing QoS 1/2 messages are written to the queue first, whatever the link does; the actor
//! sends from the queue in order with at most [`WINDOW`] unacknowledged, and deletes a message
//! when its PUBACK (PUBCOMP) arrives. After a reconnect it starts again at the oldest message
//! still queued, so a message in flight when the link dropped is sent again (QoS 1 allows the
//! duplicate) and nothing overtakes it.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::link::Link;
use broker::{Message, QoS};
use commissioning::model::{ConnectionTargetState, MqttConnection};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use super::queue::{Queue, QueueCounters, QueueLimits, Record};
use super::remote::{Delivery, LinkCounters, OUTBOX, RemoteBroker, SubscriptionCommand};
use super::session::{Session, SessionConfig, SessionEvent, WINDOW};
use crate::backoff::Backoff;
use crate::driver::{self, ActorSide, Command, ConnectionHandle, End};
use crate::envelope::now_millis;
use crate::status::ConnectionState;

/// How often the status (queue fill, rate) is refreshed and old messages expire.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Messages taken from the outbox per disk write.
const BATCH: usize = 512;

/// Messages from the remote broker waiting for one mapping entry; beyond this they are dropped
/// and counted (waiting would stall the link for every other mapping).
pub const DELIVERY_QUEUE: usize = 4096;

/// Where a connection keeps its queue and how big it may grow.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub path: PathBuf,
    pub limits: QueueLimits,
}

/// Starts the actor. A configuration the session cannot use (a certificate that does not
/// parse) is an error here, so enabling the service fails with the reason.
pub fn start(
    service: &str,
    resource: &str,
    spec: MqttConnection,
    target: ConnectionTargetState,
    queue: QueueSettings,
    link: impl Into<Link>,
) -> Result<(ConnectionHandle, RemoteBroker), String> {
    let default_client_id = format!("ironbridge-{service}-{resource}");
    let config = SessionConfig::new(&spec, &default_client_id)?;
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
    let (subscriptions, subscriptions_rx) = mpsc::channel(64);
    let remote = RemoteBroker {
        outbox,
        subscriptions,
        queue: Arc::new(QueueCounters::default()),
        link: Arc::new(LinkCounters::default()),
    };
    let counters = (remote.queue.clone(), remote.link.clone());
    let stats = remote.clone();
    let handle = driver::spawn(service, resource, target, link, move |side| async move {
        let actor = Actor {
            side,
            config,
            strategy: spec.connection_strategy.map(|s| Backoff::new(Some(&s))),
            target,
            outbox: outbox_rx,
            subscriptions: subscriptions_rx,
            registry: Registry::default(),
            queue_counters: counters.0,
            link: counters.1,
            stats,
            sending: Sending::default(),
            rate: Rate::default(),
        };
        actor.run(queue).await
    });
    Ok((handle, remote))
}

struct Actor {
    side: ActorSide,
    config: SessionConfig,
    strategy: Option<Backoff>,
    target: ConnectionTargetState,
    outbox: mpsc::Receiver<Message>,
    subscriptions: mpsc::Receiver<SubscriptionCommand>,
    registry: Registry,
    queue_counters: Arc<QueueCounters>,
    link: Arc<LinkCounters>,
    /// For the status snapshot.
    stats: RemoteBroker,
    sending: Sending,
    rate: Rate,
}

/// The send window of the current session.
#[derive(Default)]
struct Sending {
    /// Publishes handed to rumqttc, waiting for their packet id: the stored sequence number,
    /// or `None` for a QoS 0 message.
    awaiting_pkid: VecDeque<Option<i64>>,
    /// Packet id to sequence number, waiting for PUBACK/PUBCOMP.
    in_flight: HashMap<u16, i64>,
    /// The highest sequence number sent in this session.
    sent_through: i64,
    /// Acknowledged sequence numbers not yet deleted from the queue.
    acked: Vec<i64>,
}

impl Sending {
    fn unacknowledged(&self) -> usize {
        self.in_flight.len() + self.awaiting_pkid.iter().filter(|s| s.is_some()).count()
    }
}

#[derive(Default)]
struct Rate {
    at: Option<Instant>,
    delivered: u64,
}

impl Actor {
    async fn run(mut self, queue: QueueSettings) {
        let mut store =
            match Queue::open(&queue.path, queue.limits, self.queue_counters.clone()).await {
                Ok(store) => store,
                Err(e) => {
                    self.side
                        .reporter
                        .set_state(ConnectionState::Disconnected, Some(e))
                        .await;
                    self.side.stop.cancelled().await;
                    return;
                }
            };
        if !store.is_empty() {
            info!(connection = %self.side.reporter.label, messages = store.len(), "Store-and-forward queue holds messages from an earlier run");
        }
        let mut backoff = self.strategy.take().unwrap_or_else(|| Backoff::new(None));
        let mut first = true;
        loop {
            if self.target == ConnectionTargetState::Disconnected {
                self.side
                    .reporter
                    .set_state(ConnectionState::Disconnected, None)
                    .await;
                self.offline(&mut store, None).await;
                break;
            }
            let state = match first {
                true => ConnectionState::Connecting,
                false => ConnectionState::Reconnecting,
            };
            first = false;
            if self.side.reporter.state() != state {
                self.side.reporter.set_state(state, None).await;
            }
            let (session, mut events) = Session::open(&self.config);
            let end = self
                .online(&session, &mut events, &mut store, &mut backoff)
                .await;
            session.close(events).await;
            self.flush_acks(&mut store).await;
            self.sending = Sending::default();
            match end {
                End::Stopped => break,
                End::Lost(reason) => {
                    warn!(connection = %self.side.reporter.label, error = %reason, "Remote broker unreachable; queueing");
                    self.side
                        .reporter
                        .set_state(ConnectionState::Reconnecting, Some(reason))
                        .await;
                    let delay = backoff.next_delay(rand::random::<f64>());
                    if self.offline(&mut store, Some(Instant::now() + delay)).await {
                        break;
                    }
                }
            }
        }
        self.refresh_status(&mut store).await;
        store.close().await;
    }

    /// Runs without a link until `until` (or until stopped when `None`): stores what mappings
    /// forward and keeps subscriptions for the next session. Returns true when stopped.
    async fn offline(&mut self, store: &mut Queue, until: Option<Instant>) -> bool {
        let mut ticker = ticker();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = self.side.stop.cancelled() => return true,
                _ = sleep_until(until) => return false,
                Some(command) = self.side.commands.recv() => refuse_endpoint(command),
                Some(command) = self.subscriptions.recv() => self.registry.apply(command, None),
                n = self.outbox.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return true;
                    }
                    self.store(store, &mut batch, None).await;
                }
                _ = ticker.tick() => self.refresh_status(store).await,
            }
        }
    }

    /// Runs one session until it is lost or the connection is stopped.
    async fn online(
        &mut self,
        session: &Session,
        events: &mut mpsc::Receiver<SessionEvent>,
        store: &mut Queue,
        backoff: &mut Backoff,
    ) -> End {
        let mut connected = false;
        let mut ticker = ticker();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = self.side.stop.cancelled() => return End::Stopped,
                event = events.recv() => {
                    // The poller ends only after reporting why.
                    let Some(mut event) = event else {
                        return End::Lost("the session ended".into());
                    };
                    // Take what else has arrived, so acknowledgements are deleted in batches.
                    for _ in 0..WINDOW * 2 {
                        match event {
                            SessionEvent::Connected => {
                                connected = true;
                                backoff.reset();
                                self.side.reporter.set_state(ConnectionState::Connected, None).await;
                                info!(connection = %self.side.reporter.label, client_id = %self.config.client_id, "Connected to the remote broker");
                                self.registry.subscribe_all(session);
                            }
                            SessionEvent::Lost(reason) => return End::Lost(reason),
                            other => self.on_event(other),
                        }
                        match events.try_recv() {
                            Ok(next) => event = next,
                            Err(_) => break,
                        }
                    }
                    self.flush_acks(store).await;
                }
                Some(command) = self.side.commands.recv() => refuse_endpoint(command),
                Some(command) = self.subscriptions.recv() => {
                    self.registry.apply(command, connected.then_some(session));
                }
                n = self.outbox.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return End::Stopped;
                    }
                    self.store(store, &mut batch, connected.then_some(session)).await;
                }
                _ = ticker.tick() => self.refresh_status(store).await,
            }
            if connected && let Err(e) = self.fill_window(session, store).await {
                return End::Lost(e);
            }
        }
    }

    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Sent(pkid) => match self.sending.awaiting_pkid.pop_front() {
                Some(Some(seq)) => {
                    self.sending.in_flight.insert(pkid, seq);
                }
                Some(None) => {
                    self.link.sent_qos0.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            },
            SessionEvent::Acked { pkid, refused } => {
                if let Some(seq) = self.sending.in_flight.remove(&pkid) {
                    self.sending.acked.push(seq);
                    if let Some(reason) = refused {
                        // The broker will not take it however often it is sent (not
                        // authorised, quota); keeping it would block everything behind it.
                        let total = self.link.refused.fetch_add(1, Ordering::Relaxed) + 1;
                        if total == 1 || total.is_power_of_two() {
                            warn!(connection = %self.side.reporter.label, reason = %reason, refused_total = total, "The remote broker refused a forwarded message");
                        }
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

    /// Stores QoS 1/2 messages; sends QoS 0 ones straight away when connected and drops them
    /// (counted) otherwise.
    async fn store(
        &mut self,
        store: &mut Queue,
        batch: &mut Vec<Message>,
        session: Option<&Session>,
    ) {
        let mut records = Vec::with_capacity(batch.len());
        for message in batch.drain(..) {
            if message.qos == QoS::AtMostOnce {
                let sent = session.is_some_and(|s| {
                    s.try_publish(
                        &message.topic,
                        QoS::AtMostOnce,
                        message.retain,
                        message.payload.clone(),
                    )
                    .is_ok()
                });
                match sent {
                    true => self.sending.awaiting_pkid.push_back(None),
                    false => {
                        self.link.dropped_qos0.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            records.push(Record {
                topic: message.topic.to_string(),
                payload: message.payload.clone(),
                qos: message.qos as u8,
                retain: message.retain,
            });
        }
        match store.push(&records, now_millis()).await {
            Ok(0) => {}
            Ok(dropped) => {
                warn!(connection = %self.side.reporter.label, dropped, "Store-and-forward queue full; the oldest messages were dropped")
            }
            Err(e) => {
                // Nothing else can hold them; say so loudly.
                warn!(connection = %self.side.reporter.label, error = %e, lost = records.len(), "Cannot store forwarded messages");
            }
        }
    }

    /// Sends queued messages until the window is full.
    async fn fill_window(&mut self, session: &Session, store: &mut Queue) -> Result<(), String> {
        loop {
            let room = WINDOW.saturating_sub(self.sending.unacknowledged());
            if room == 0 {
                return Ok(());
            }
            let next = store.peek(self.sending.sent_through, room).await?;
            if next.is_empty() {
                return Ok(());
            }
            for stored in next {
                let record = stored.record;
                let qos = if record.qos == 2 {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                if session
                    .try_publish(&record.topic, qos, record.retain, record.payload)
                    .is_err()
                {
                    // rumqttc's request channel is full; the next event frees it.
                    return Ok(());
                }
                self.sending.awaiting_pkid.push_back(Some(stored.seq));
                self.sending.sent_through = stored.seq;
            }
        }
    }

    async fn flush_acks(&mut self, store: &mut Queue) {
        if self.sending.acked.is_empty() {
            return;
        }
        let acked = std::mem::take(&mut self.sending.acked);
        if let Err(e) = store.acknowledge(&acked).await {
            warn!(connection = %self.side.reporter.label, error = %e, "Cannot remove delivered messages from the queue; they may be sent again");
        }
    }

    async fn refresh_status(&mut self, store: &mut Queue) {
        if let Err(e) = store.expire(now_millis()).await {
            warn!(connection = %self.side.reporter.label, error = %e, "Cannot expire old messages");
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
        self.side.reporter.set_forwarding(self.stats.stats()).await;
    }
}

/// MQTT connections have no endpoints of their own: mappings reach them with `connection`.
fn refuse_endpoint(command: Command) {
    match command {
        Command::Add(_, done) => {
            let _ = done.send(Err(
                "MQTT connections take no endpoints; use a Cybus::Mapping with `connection: !ref` on its subscribe or publish".into(),
            ));
        }
        Command::Remove(_, done) => {
            let _ = done.send(());
        }
    }
}

fn ticker() -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
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
    deliver: mpsc::Sender<Delivery>,
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
