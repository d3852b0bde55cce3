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
use crate::queue::{QueueRx, QueueTx, Signals, session_queue};

pub(crate) struct Session {
    pub client_id: ByteString,
    /// Who opened the session; only they resume it.
    pub owner: SessionOwner,
    /// The session's queue; the receiving end is with the connection while online.
    pub tx: QueueTx,
    pub link: Link,
    /// Full filter (with any `$share/group/` prefix) to its options.
    pub subscriptions: HashMap<ByteString, Entry>,
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// When an offline session ends.
    pub expires_at: Option<Instant>,
    /// A will waiting for its delay to pass.
    pub pending_will: Option<(Instant, Arc<Message>)>,
    /// A connection that asked to take this session over, waiting for the old one to hand back.
    pub waiting: Option<Box<ConnectRequest>>,
}

pub(crate) enum Link {
    /// A connection (or in-process client) holds the receiving end; the router reaches it
    /// through the queue, deliveries and [`Signals`] alike.
    Online,
    Offline {
        rx: QueueRx,
        /// Boxed so that the session table's entries stay small: most sessions are online.
        state: Box<SessionState>,
    },
    /// Only between taking the offline state out and putting the session online.
    Moving,
}

impl Session {
    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online)
    }

    /// Whether the router's shutdown and user-change signals are meant for this session: they
    /// are for network clients; in-process clients have no principal to check again, and they
    /// stop with the router, not before it.
    pub fn hears_broker_signals(&self) -> bool {
        self.owner != SessionOwner::Internal
    }
}

impl Router {
    pub(super) fn connect(&mut self, request: ConnectRequest) {
        let Some(&key) = self.by_client_id.get(&request.client_id) else {
            self.create_session(request);
            return;
        };
        let session = &mut self.sessions[key];
        if let Link::Online = &session.link {
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
        session.pending_will = None;
        if request.clean_start {
            self.remove_session(key);
            self.create_session(request);
            return;
        }
        let Link::Offline { rx, state } = std::mem::replace(&mut session.link, Link::Moving) else {
            // Only offline sessions get here; keep the invariant visible rather than panic.
            self.remove_session(key);
            self.create_session(request);
            return;
        };
        session.link = Link::Online;
        // A takeover signal meant for the previous connection must not end this one.
        session.tx.clear_signals();
        session.expiry = request.session_expiry;
        session.expires_at = None;
        self.dirty = true;
        self.tell_if_shutting_down(key);
        let reply = ConnectReply {
            session: key,
            session_present: true,
            rx,
            resumed: *state,
        };
        if let Err(Ok(reply)) = request.reply.send(Ok(reply)) {
            // The connection went away while waiting: the session goes back offline untouched.
            self.sessions[key].link = Link::Offline {
                rx: reply.rx,
                state: Box::new(reply.resumed),
            };
        }
    }

    fn create_session(&mut self, request: ConnectRequest) {
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
        let key = self.sessions.insert(Session {
            client_id: request.client_id.clone(),
            owner: request.owner.clone(),
            tx,
            link: Link::Online,
            subscriptions: HashMap::new(),
            expiry: request.session_expiry,
            expires_at: None,
            pending_will: None,
            waiting: None,
        });
        self.by_client_id.insert(request.client_id, key);
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
        if !self.sessions.contains(key) {
            return;
        }
        if let Some(will) = handback.will {
            let delay = will.delay.min(handback.session_expiry);
            if delay == 0 {
                self.route(will.message);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                let session = &mut self.sessions[key];
                session.pending_will = Some((due, will.message));
                self.timers.insert((due, key));
            }
        }
        let session = &mut self.sessions[key];
        session.link = Link::Offline {
            rx: handback.rx,
            state: Box::new(handback.state),
        };
        session.expiry = handback.session_expiry;
        self.dirty = true;
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
            self.sessions[key].expires_at = Some(due);
            self.timers.insert((due, key));
        }
    }

    /// Ends a session: its subscriptions and queued messages are gone.
    pub(super) fn remove_session(&mut self, key: SessionKey) {
        if !self.sessions.contains(key) {
            return;
        }
        let session = self.sessions.remove(key);
        for filter in session.subscriptions.keys() {
            remove_from_tree(&mut self.tree, filter, key);
        }
        if self.by_client_id.get(&session.client_id) == Some(&key) {
            self.by_client_id.remove(&session.client_id);
        }
        if let Some((_, will)) = session.pending_will {
            // The session ends before the will delay passed: the will goes now (MQTT-3.1.2-8).
            self.route(will);
        }
        self.dirty = true;
    }

    /// Publishes delayed wills and ends expired sessions whose time has come.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&(due, key)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            if session
                .pending_will
                .as_ref()
                .is_some_and(|(at, _)| *at <= now)
            {
                if let Some((_, will)) = session.pending_will.take() {
                    self.route(will);
                }
            }
            let session = &self.sessions[key];
            if !session.is_online() && session.expires_at.is_some_and(|at| at <= now) {
                debug!(client_id = %session.client_id, "Session expired");
                self.remove_session(key);
            }
        }
    }

    pub(super) fn publish_all_pending_wills(&mut self) {
        let wills: Vec<Arc<Message>> = self
            .sessions
            .iter_mut()
            .filter_map(|(_, s)| s.pending_will.take().map(|(_, will)| will))
            .collect();
        for will in wills {
            self.route(will);
        }
    }

    pub(super) fn sessions_online(&self) -> usize {
        self.sessions.iter().filter(|(_, s)| s.is_online()).count()
    }
}
