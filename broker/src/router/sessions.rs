//! Session lifecycle inside the router: connect (new, resumed, taken over), disconnect, expiry and
//! delayed wills.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use tokio::time::{Duration, Instant};
use tracing::{debug, warn};

use super::{
    ConnectReply, ConnectRequest, Entry, Handback, Router, SessionState, remove_from_tree,
};
use crate::auth::SessionOwner;
use crate::codec::ReasonCode;
use crate::message::{Message, SessionKey};
use crate::queue::{QueueRx, QueueTx, Signals, millis_since, session_queue};

/// One entry of the router's session table. Every connected client has one, so it is kept
/// small: what only offline sessions have is in [`Offline`], and the subscriptions are
/// allocated with the first one.
pub(crate) struct Session {
    pub client_id: ByteString,
    /// Who opened the session; only they resume it.
    pub owner: SessionOwner,
    /// The session's queue; the receiving end is with the connection while online.
    pub tx: QueueTx,
    /// `None` while a connection (or in-process client) holds the receiving end; the router
    /// reaches it through the queue, deliveries and [`Signals`] alike.
    offline: Option<Box<Offline>>,
    /// Full filter (with any `$share/group/` prefix) to its options; `None` without any.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes in every session entry instead of an empty map's 48"
    )]
    subscriptions: Option<Box<HashMap<ByteString, Entry>>>,
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// A connection that asked to take this session over, waiting for the old one to hand back.
    pub waiting: Option<Box<ConnectRequest>>,
}

/// What a session has while no connection holds it.
pub(crate) struct Offline {
    pub rx: QueueRx,
    pub state: SessionState,
    /// When the session ends, unless a client resumes it first.
    pub expires_at: Option<Instant>,
    /// A will waiting for its delay to pass.
    pub pending_will: Option<(Instant, Arc<Message>)>,
}

impl Offline {
    pub fn new(rx: QueueRx, state: SessionState) -> Box<Offline> {
        Box::new(Offline {
            rx,
            state,
            expires_at: None,
            pending_will: None,
        })
    }
}

impl Session {
    /// A session that is online, or offline with `offline`.
    pub fn new(
        client_id: ByteString,
        owner: SessionOwner,
        tx: QueueTx,
        offline: Option<Box<Offline>>,
    ) -> Session {
        Session {
            client_id,
            owner,
            tx,
            offline,
            subscriptions: None,
            expiry: 0,
            waiting: None,
        }
    }

    pub fn is_online(&self) -> bool {
        self.offline.is_none()
    }

    /// The offline part, if the session is offline.
    pub fn offline_mut(&mut self) -> Option<&mut Offline> {
        self.offline.as_deref_mut()
    }

    pub fn offline(&self) -> Option<&Offline> {
        self.offline.as_deref()
    }

    /// Puts the session offline with what its connection handed back.
    pub fn go_offline(&mut self, offline: Box<Offline>) {
        self.offline = Some(offline);
    }

    /// Puts the session online, returning what it had while offline (`None` if it was online).
    pub fn go_online(&mut self) -> Option<Box<Offline>> {
        self.offline.take()
    }

    /// Ends the session: what it had while offline, for its delayed will.
    pub fn into_offline(self) -> Option<Box<Offline>> {
        self.offline
    }

    /// Whether the router's shutdown and user-change signals are meant for this session: they
    /// are for network clients; in-process clients have no principal to check again, and they
    /// stop with the router, not before it.
    pub fn hears_broker_signals(&self) -> bool {
        self.owner != SessionOwner::Internal
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&ByteString, &Entry)> {
        self.subscriptions.iter().flat_map(|map| map.iter())
    }

    pub fn add_subscription(&mut self, filter: ByteString, entry: Entry) {
        self.subscriptions
            .get_or_insert_with(Box::default)
            .insert(filter, entry);
    }

    /// Whether the session had the subscription.
    pub fn remove_subscription(&mut self, filter: &str) -> bool {
        let Some(map) = &mut self.subscriptions else {
            return false;
        };
        let existed = map.remove(filter).is_some();
        if map.is_empty() {
            self.subscriptions = None;
        }
        existed
    }
}

impl Router {
    pub(super) fn connect(&mut self, request: ConnectRequest) {
        let Some(key) = self.by_client_id.get(&request.client_id, &self.sessions) else {
            self.create_session(request);
            return;
        };
        let session = &mut self.sessions[key];
        if session.is_online() {
            debug!(client_id = %request.client_id, "Session taken over by a new connection");
            session.tx.signal(Signals::TAKEN_OVER);
            // A previous waiter loses its place; its connection sees the reply dropped and closes.
            session.waiting = Some(Box::new(request));
            return;
        }
        self.connect_to_offline(key, request);
    }

    fn connect_to_offline(&mut self, key: SessionKey, request: ConnectRequest) {
        let session = &mut self.sessions[key];
        if session.owner != request.owner {
            // A persistent session belongs to the user who opened it: another user with the same
            // client id gets a fresh session and never sees the old one's subscriptions or
            // queued messages. The old session ends (its delayed will, if any, goes out now).
            debug!(client_id = %request.client_id, "Client id reused by another user; the old session ends");
            self.remove_session(key);
            self.create_session(request);
            return;
        }
        // A new connection before the will delay passed cancels the will (MQTT-3.1.3-9).
        if let Some(offline) = session.offline_mut() {
            offline.pending_will = None;
        }
        if request.clean_start {
            self.remove_session(key);
            self.create_session(request);
            return;
        }
        let Some(offline) = session.go_online() else {
            // Only offline sessions get here; keep the invariant visible rather than panic.
            self.remove_session(key);
            self.create_session(request);
            return;
        };
        // A takeover signal or keep-alive deadline meant for the previous connection must not
        // end this one.
        session.tx.reset_for_new_connection();
        let previous_expiry = std::mem::replace(&mut session.expiry, request.session_expiry);
        self.dirty = true;
        self.tell_if_shutting_down(key);
        let Offline {
            rx,
            state,
            expires_at,
            ..
        } = *offline;
        let reply = ConnectReply {
            session: key,
            session_present: true,
            rx,
            resumed: state,
        };
        if let Err(Ok(reply)) = request.reply.send(Ok(reply)) {
            // The connection went away while waiting: the session goes back offline untouched,
            // and still ends when it was going to (its timer is still set).
            let session = &mut self.sessions[key];
            let mut offline = Offline::new(reply.rx, reply.resumed);
            offline.expires_at = expires_at;
            session.go_offline(offline);
            session.expiry = previous_expiry;
        }
    }

    fn create_session(&mut self, mut request: ConnectRequest) {
        if self.sessions.len() >= self.config.max_sessions {
            // Offline persistent sessions count too: they hold queues and subscriptions.
            warn!(limit = self.config.max_sessions, client_id = %request.client_id, "Session limit reached; refusing a new session");
            let _ = request.reply.send(Err(ReasonCode::QUOTA_EXCEEDED));
            return;
        }
        let (tx, rx) = session_queue(
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let mut session = Session::new(
            std::mem::take(&mut request.client_id),
            request.owner.clone(),
            tx,
            None,
        );
        session.expiry = request.session_expiry;
        let key = self.sessions.insert(Box::new(session));
        self.by_client_id.insert(key, &self.sessions);
        self.dirty = true;
        self.tell_if_shutting_down(key);
        let reply = ConnectReply {
            session: key,
            session_present: false,
            rx,
            resumed: SessionState::default(),
        };
        if request.reply.send(Ok(reply)).is_err() {
            self.remove_session(key);
        }
    }

    /// A network session put online after shutdown began gets its signal now: the router
    /// told the others when it started.
    fn tell_if_shutting_down(&self, key: SessionKey) {
        let session = &self.sessions[key];
        if self.shutting_down && session.hears_broker_signals() {
            session.tx.signal(Signals::SHUTDOWN);
        }
    }

    pub(super) fn disconnected(&mut self, handback: Handback) {
        let key = handback.session;
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        session.go_offline(Offline::new(handback.rx, handback.state));
        session.expiry = handback.session_expiry;
        self.dirty = true;
        if let Some(will) = handback.will {
            let delay = will.delay.min(handback.session_expiry);
            if delay == 0 {
                self.route(will.message);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                if let Some(offline) = self.sessions[key].offline_mut() {
                    offline.pending_will = Some((due, will.message));
                }
                self.timers.insert((due, key));
            }
        }
        let session = &mut self.sessions[key];
        if let Some(waiting) = session.waiting.take() {
            if handback.session_expiry == 0 {
                // The old session ended with its connection; the new one starts afresh.
                self.remove_session(key);
                self.create_session(*waiting);
            } else {
                self.connect_to_offline(key, *waiting);
            }
            return;
        }
        if handback.session_expiry == 0 {
            self.remove_session(key);
        } else if handback.session_expiry != u32::MAX {
            let due = now + Duration::from_secs(u64::from(handback.session_expiry));
            if let Some(offline) = session.offline_mut() {
                offline.expires_at = Some(due);
            }
            self.timers.insert((due, key));
        }
    }

    /// Ends a session: its subscriptions and queued messages are gone.
    pub(super) fn remove_session(&mut self, key: SessionKey) {
        if !self.sessions.contains(key) {
            return;
        }
        let session = self.sessions.remove(key);
        for (filter, _) in session.subscriptions() {
            remove_from_tree(&mut self.tree, filter, key);
        }
        self.by_client_id.remove(&session.client_id, key);
        if let Some(offline) = session.into_offline()
            && let Some((_, will)) = offline.pending_will
        {
            // The session ends before the will delay passed: the will goes now (MQTT-3.1.2-8).
            self.route(will);
        }
        self.dirty = true;
    }

    /// Signals connections whose clients stayed silent past their keep-alive deadline.
    pub(super) fn enforce_keep_alive(&self, now: Instant) {
        let now = millis_since(self.started, now);
        for (_, session) in &self.sessions {
            if session.is_online() && session.tx.client_deadline_passed(now) {
                session.tx.signal(Signals::KEEP_ALIVE_EXPIRED);
            }
        }
    }

    /// Publishes delayed wills and ends expired sessions whose time has come.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&(due, key)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(offline) = self.sessions.get_mut(key).and_then(|s| s.offline_mut()) else {
                continue;
            };
            if offline
                .pending_will
                .as_ref()
                .is_some_and(|(at, _)| *at <= now)
                && let Some((_, will)) = offline.pending_will.take()
            {
                self.route(will);
            }
            let Some(session) = self.sessions.get(key) else {
                continue;
            };
            if session
                .offline()
                .is_some_and(|o| o.expires_at.is_some_and(|at| at <= now))
            {
                debug!(client_id = %session.client_id, "Session expired");
                self.remove_session(key);
            }
        }
    }

    pub(super) fn publish_all_pending_wills(&mut self) {
        let wills: Vec<Arc<Message>> = self
            .sessions
            .iter_mut()
            .filter_map(|(_, s)| s.offline_mut()?.pending_will.take())
            .map(|(_, will)| will)
            .collect();
        for will in wills {
            self.route(will);
        }
    }

    pub(super) fn sessions_online(&self) -> usize {
        self.sessions.iter().filter(|(_, s)| s.is_online()).count()
    }
}
