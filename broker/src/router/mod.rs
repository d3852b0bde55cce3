//! The router: one task that owns all routing state (sessions, subscriptions, retained messages).
//!
//! Connections and in-process clients talk to it through one bounded channel of [`Event`]s. It
//! never waits on a connection: deliveries go out with `try_send` into each session's bounded
//! queue, and a full queue means the message is dropped and counted, so one slow consumer cannot
//! stall anybody else.

mod client_ids;
mod persist;
mod retained;
mod sessions;
mod subscriptions;
mod sys;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use slab::Slab;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::SessionOwner;
use crate::codec::{QoS, ReasonCode, SubscriptionOptions};
use crate::config::BrokerConfig;
use crate::message::{Delivery, Message, SessionKey};
use crate::metrics::Metrics;
use crate::persistence::Store;
use crate::queue::{QueueRx, Refused, Signals};
use crate::topic;

use client_ids::ClientIds;
use retained::RetainedStore;
use sessions::Session;
pub use subscriptions::{Entry, Match, SharedGroup, SubscriptionTree};

/// Events the router handles before it yields. Consumers woken by its deliveries wait in this
/// worker's run queue until it yields, so it yields often: a few batches of a publisher's read
/// (each up to ~150 small messages) stay well inside a consumer's queue.
const EVENT_BATCH: usize = 16;

/// Requests to the router.
pub(crate) enum Event {
    Connect(ConnectRequest),
    /// Messages accepted from one client, in the order received.
    Publish(Vec<Arc<Message>>),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    /// A connection ended; its session state comes back to the router.
    Disconnected(Box<Handback>),
    /// Publish pending wills, save everything and stop.
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct ConnectRequest {
    pub client_id: ByteString,
    /// Who asks; an existing session is resumed only for its owner.
    pub owner: SessionOwner,
    pub clean_start: bool,
    /// Seconds; `u32::MAX` never expires, 0 ends the session with the connection.
    pub session_expiry: u32,
    /// The session, or why none could be opened.
    pub reply: oneshot::Sender<Result<ConnectReply, ReasonCode>>,
}

pub(crate) struct ConnectReply {
    pub session: SessionKey,
    pub session_present: bool,
    pub rx: QueueRx,
    pub resumed: SessionState,
}

/// Session state that lives in the connection while it is online and in the router while offline.
#[derive(Default)]
pub(crate) struct SessionState {
    /// Outgoing QoS 1/2 messages not yet completed, by packet id, in the order sent.
    pub inflight: Vec<(u16, Inflight)>,
    /// Deliveries taken from the queue but not yet sent (the in-flight window was full).
    pub backlog: VecDeque<Delivery>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub qos2_incoming: Vec<u16>,
}

#[derive(Debug, Clone)]
pub(crate) enum Inflight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Delivery),
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

pub(crate) struct Handback {
    pub session: SessionKey,
    pub rx: QueueRx,
    pub state: SessionState,
    /// The will to publish, when the connection ended without a normal DISCONNECT.
    pub will: Option<Will>,
    pub session_expiry: u32,
}

pub(crate) struct Will {
    pub message: Arc<Message>,
    /// Will delay interval in seconds (MQTT 5).
    pub delay: u32,
}

pub(crate) struct SubscribeRequest {
    pub session: SessionKey,
    pub subscription_id: Option<u32>,
    /// Filters already validated and authorised by the connection.
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    pub reply: oneshot::Sender<SubscribeReply>,
}

pub(crate) struct SubscribeReply {
    pub codes: Vec<ReasonCode>,
    /// Retained messages to send after the SUBACK.
    pub retained: Vec<Delivery>,
}

pub(crate) struct UnsubscribeRequest {
    pub session: SessionKey,
    pub filters: Vec<ByteString>,
    pub reply: oneshot::Sender<Vec<ReasonCode>>,
}

pub(crate) struct Router {
    config: Arc<BrokerConfig>,
    metrics: Arc<Metrics>,
    /// Boxed: the slab grows by doubling, and a slot of a pointer leaves little unused.
    sessions: Slab<Box<Session>>,
    by_client_id: ClientIds,
    tree: SubscriptionTree,
    retained: RetainedStore,
    /// Session expiries and delayed wills, by due time; entries are checked against the session
    /// when due, so stale ones are harmless.
    timers: BTreeSet<(Instant, SessionKey)>,
    /// Reused for every PUBLISH so matching allocates nothing.
    scratch: Vec<(SessionKey, Entry)>,
    store: Option<Store>,
    /// State changed since the last save.
    dirty: bool,
    started: Instant,
    /// Set once the broker's shutdown began: every network session put online is told at once.
    shutting_down: bool,
}

impl Router {
    /// `started` is the broker's start, the zero of the keep-alive clock its connections share.
    pub fn new(
        config: Arc<BrokerConfig>,
        metrics: Arc<Metrics>,
        store: Option<Store>,
        started: Instant,
    ) -> Router {
        let retained = RetainedStore::new(config.max_retained_messages, config.max_retained_bytes);
        let mut router = Router {
            config,
            metrics,
            sessions: Slab::new(),
            by_client_id: ClientIds::default(),
            tree: SubscriptionTree::default(),
            retained,
            timers: BTreeSet::new(),
            scratch: Vec::new(),
            store,
            dirty: false,
            started,
            shutting_down: false,
        };
        router.restore();
        router
    }

    /// Handles events until told to stop. `shutdown` and `auth_changes` are passed on to the
    /// online sessions' connections through their queues ([`Signals`]), so that a connection
    /// waits on nothing of its own for them.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        shutdown: CancellationToken,
        mut auth_changes: Option<watch::Receiver<()>>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sys_every = Duration::from_secs(self.config.sys_interval_secs);
        let save_every = Duration::from_secs(self.config.autosave_interval_secs.max(1));
        let mut next_sys = Instant::now();
        let mut next_save = Instant::now() + save_every;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if let Some(done) = self.handle(event) {
                        self.shutdown(done).await;
                        return;
                    }
                    for _ in 1..EVENT_BATCH {
                        match events.try_recv() {
                            Ok(event) => {
                                if let Some(done) = self.handle(event) {
                                    self.shutdown(done).await;
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    tokio::task::yield_now().await;
                }
                _ = shutdown.cancelled(), if !self.shutting_down => {
                    self.shutting_down = true;
                    self.signal_online(Signals::SHUTDOWN);
                }
                _ = auth_changed(&mut auth_changes) => self.signal_online(Signals::AUTH_CHANGED),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.fire_timers(now);
                    self.enforce_keep_alive(now);
                    if !sys_every.is_zero() && now >= next_sys {
                        self.publish_sys();
                        next_sys = now + sys_every;
                    }
                    if now >= next_save {
                        self.autosave();
                        next_save = now + save_every;
                    }
                }
            }
        }
        debug!("router stopped: every sender is gone");
    }

    /// Tells every online session that hears the broker's signals (see
    /// [`Session::hears_broker_signals`]).
    fn signal_online(&self, signals: Signals) {
        for (_, session) in &self.sessions {
            if session.is_online() && session.hears_broker_signals() {
                session.tx.signal(signals);
            }
        }
    }

    /// Handles one event; returns the shutdown acknowledgement when asked to stop.
    fn handle(&mut self, event: Event) -> Option<oneshot::Sender<()>> {
        match event {
            Event::Connect(request) => self.connect(request),
            Event::Publish(messages) => {
                for message in messages {
                    self.route(message);
                }
            }
            Event::Subscribe(request) => self.subscribe(request),
            Event::Unsubscribe(request) => self.unsubscribe(request),
            Event::Disconnected(handback) => self.disconnected(*handback),
            Event::Shutdown(done) => return Some(done),
        }
        None
    }

    async fn shutdown(&mut self, done: oneshot::Sender<()>) {
        self.publish_all_pending_wills();
        if let Some(store) = self.store.clone() {
            let snapshot = self.snapshot();
            match tokio::task::spawn_blocking(move || store.save(&snapshot)).await {
                Ok(Ok(())) => debug!("broker state saved"),
                Ok(Err(e)) => warn!(error = %e, "Could not save broker state at shutdown"),
                Err(e) => warn!(error = %e, "Saving broker state panicked"),
            }
        }
        let _ = done.send(());
    }

    fn autosave(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(store) = self.store.clone() else {
            return;
        };
        self.dirty = false;
        let snapshot = self.snapshot();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.save(&snapshot) {
                warn!(error = %e, "Could not save broker state; retrying at the next autosave");
            }
        });
    }

    /// Delivers one message to every matching subscription and updates the retained store.
    pub(crate) fn route(&mut self, message: Arc<Message>) {
        if message.retain {
            if !self.retained.store(&message) {
                Metrics::add(&self.metrics.retained_dropped, 1);
            }
            self.dirty = true;
        }
        let Router {
            tree,
            sessions,
            scratch,
            ..
        } = self;
        scratch.clear();
        tree.for_each_match(&message.topic, &mut |m| match m {
            Match::Direct(key, entry) => scratch.push((key, entry)),
            Match::Shared(group) => {
                if let Some(pick) = pick_shared_member(group, sessions) {
                    scratch.push(pick);
                }
            }
        });
        if scratch.len() > 1 {
            scratch.sort_unstable_by_key(|(key, _)| *key);
        }
        let mut i = 0;
        while i < self.scratch.len() {
            let key = self.scratch[i].0;
            let mut qos = None::<QoS>;
            let mut retain_as_published = false;
            let mut ids = Vec::new();
            while i < self.scratch.len() && self.scratch[i].0 == key {
                let entry = self.scratch[i].1;
                i += 1;
                if entry.options.no_local && message.origin == Some(key) {
                    continue;
                }
                qos = Some(qos.map_or(entry.options.qos, |q| q.max(entry.options.qos)));
                retain_as_published |= entry.options.retain_as_published;
                ids.extend(entry.id);
            }
            if let Some(sub_qos) = qos {
                let delivery = Delivery {
                    qos: message.qos.min(sub_qos),
                    retain: retain_as_published && message.retain,
                    subscription_ids: ids,
                    message: message.clone(),
                };
                self.deliver(key, delivery);
            }
        }
    }

    fn deliver(&mut self, key: SessionKey, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if !session.is_online() {
            // QoS 0 is not queued for offline sessions.
            if delivery.qos == QoS::AtMostOnce {
                return;
            }
            self.dirty = true;
        }
        match session.tx.try_send(delivery) {
            Ok(()) | Err((Refused::Closed, _)) => {}
            Err((Refused::Full, _)) => Metrics::add(&self.metrics.messages_dropped, 1),
            Err((Refused::TooManyBytes, _)) => {
                Metrics::add(&self.metrics.messages_dropped, 1);
                Metrics::add(&self.metrics.messages_dropped_queue_bytes, 1);
            }
        }
    }

    fn subscribe(&mut self, request: SubscribeRequest) {
        let mut reply = SubscribeReply {
            codes: Vec::with_capacity(request.filters.len()),
            retained: Vec::new(),
        };
        let now = Instant::now();
        for (filter, options) in request.filters {
            let entry = Entry {
                options,
                id: request.subscription_id,
            };
            let (group, plain) = match topic::parse_shared(&filter) {
                Ok(Some(shared)) => (Some(shared.group), shared.filter),
                Ok(None) => (None, &filter[..]),
                Err(_) => {
                    reply.codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            let Some(session) = self.sessions.get_mut(request.session) else {
                reply.codes.push(ReasonCode::UNSPECIFIED_ERROR);
                continue;
            };
            let is_new = self.tree.insert(plain, group, request.session, entry);
            session.add_subscription(filter.clone(), entry);
            self.dirty = true;
            reply.codes.push(ReasonCode(options.qos as u8));
            // Shared subscriptions get no retained messages (MQTT-4.8.2-4... retained are per client).
            let send_retained = group.is_none()
                && match options.retain_handling {
                    0 => true,
                    1 => is_new,
                    _ => false,
                };
            if send_retained {
                self.retained.collect(plain, now, |message| {
                    reply.retained.push(Delivery {
                        qos: message.qos.min(options.qos),
                        retain: true,
                        subscription_ids: entry.id.into_iter().collect(),
                        message: message.clone(),
                    });
                });
            }
        }
        let _ = request.reply.send(reply);
    }

    fn unsubscribe(&mut self, request: UnsubscribeRequest) {
        let mut codes = Vec::with_capacity(request.filters.len());
        for filter in request.filters {
            let existed = match self.sessions.get_mut(request.session) {
                Some(session) => session.remove_subscription(&filter),
                None => false,
            };
            if existed {
                remove_from_tree(&mut self.tree, &filter, request.session);
                self.dirty = true;
                codes.push(ReasonCode::SUCCESS);
            } else {
                codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        let _ = request.reply.send(codes);
    }
}

fn remove_from_tree(tree: &mut SubscriptionTree, filter: &str, session: SessionKey) {
    match topic::parse_shared(filter) {
        Ok(Some(shared)) => tree.remove(shared.filter, Some(shared.group), session),
        _ => tree.remove(filter, None, session),
    };
}

/// Round robin over the group, preferring members that are online so messages do not pile up
/// in a disconnected member's queue while others could take them.
fn pick_shared_member(
    group: &mut SharedGroup,
    sessions: &Slab<Box<Session>>,
) -> Option<(SessionKey, Entry)> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let start = group.next % n;
    let chosen = (0..n)
        .map(|offset| (start + offset) % n)
        .find(|&i| {
            sessions
                .get(group.members[i].0)
                .is_some_and(|s| s.is_online())
        })
        .unwrap_or(start);
    group.next = chosen + 1;
    Some(group.members[chosen])
}

/// Resolves when the auth hook signals a change; never when it has no signal (or it closed).
async fn auth_changed(changes: &mut Option<watch::Receiver<()>>) {
    match changes {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *changes = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
