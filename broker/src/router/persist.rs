//! Converting the router's state to and from a [`Snapshot`].

use std::sync::Arc;

use tokio::time::{Duration, Instant};
use tracing::info;

use super::sessions::{Offline, Session};
use super::{Entry, Inflight, Router, SessionState};
use crate::auth::SessionOwner;
use crate::codec::{QoS, SubscriptionOptions};
use crate::message::{Delivery, Message, MessageProperties};
use crate::persistence::{
    DeliveryRecord, InflightRecord, MessageRecord, SessionRecord, Snapshot, SubscriptionRecord,
};
use crate::queue::session_queue;
use crate::topic;

fn secs_until(at: Instant, now: Instant) -> u32 {
    u32::try_from(at.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
}

fn message_record(m: &Message, now: Instant) -> MessageRecord {
    let props = m.properties.as_deref().cloned().unwrap_or_default();
    MessageRecord {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos as u8,
        retain: m.retain,
        expires_in: m.expires_at.map(|at| secs_until(at, now)),
        payload_format_indicator: props.payload_format_indicator,
        content_type: props.content_type,
        response_topic: props.response_topic,
        correlation_data: props.correlation_data,
        user_properties: props.user_properties,
    }
}

fn message_from(r: MessageRecord, now: Instant) -> Arc<Message> {
    let props = MessageProperties {
        payload_format_indicator: r.payload_format_indicator,
        content_type: r.content_type,
        response_topic: r.response_topic,
        correlation_data: r.correlation_data,
        user_properties: r.user_properties,
    };
    Arc::new(Message {
        topic: r.topic,
        payload: r.payload,
        qos: QoS::from_u8(r.qos).unwrap_or_default(),
        retain: r.retain,
        properties: (props != MessageProperties::default()).then(|| Box::new(props)),
        expires_at: r
            .expires_in
            .map(|s| now + Duration::from_secs(u64::from(s))),
        origin: None,
    })
}

fn delivery_record(d: &Delivery, now: Instant) -> DeliveryRecord {
    DeliveryRecord {
        message: message_record(&d.message, now),
        qos: d.qos as u8,
        retain: d.retain,
        subscription_ids: d.subscription_ids.clone(),
    }
}

fn delivery_from(r: DeliveryRecord, now: Instant) -> Delivery {
    Delivery {
        message: message_from(r.message, now),
        qos: QoS::from_u8(r.qos).unwrap_or_default(),
        retain: r.retain,
        subscription_ids: r.subscription_ids,
    }
}

impl Router {
    /// The state worth keeping: retained messages (but `$` topics: `$SYS` statistics and the
    /// gateway's own state, such as agents' work and presence, are published afresh after a
    /// start, and a stale "online" must not outlive the session that said it) and sessions that
    /// outlive their connection. For online sessions only the subscriptions are known here;
    /// their in-flight messages are saved once the connection hands them back at shutdown.
    pub(super) fn snapshot(&mut self) -> crate::persistence::Snapshot {
        let now = Instant::now();
        let retained = self
            .retained
            .all()
            .iter()
            .filter(|m| !m.topic.starts_with('$') && !m.is_expired(now))
            .map(|m| message_record(m, now))
            .collect();
        let mut sessions = Vec::new();
        let mut session_owners = Vec::new();
        for (_, session) in self.sessions.iter_mut() {
            if session.expiry == 0 {
                continue;
            }
            session_owners.push(session.owner.clone());
            let subscriptions = session
                .subscriptions()
                .map(|(filter, e)| SubscriptionRecord {
                    filter: filter.clone(),
                    qos: e.options.qos as u8,
                    no_local: e.options.no_local,
                    retain_as_published: e.options.retain_as_published,
                    retain_handling: e.options.retain_handling,
                    id: e.id,
                })
                .collect();
            let mut record = SessionRecord {
                client_id: session.client_id.clone(),
                expiry: session.expiry,
                expires_in: session
                    .offline()
                    .and_then(|o| o.expires_at)
                    .map(|at| secs_until(at, now)),
                subscriptions,
                inflight: Vec::new(),
                queued: Vec::new(),
                qos2_incoming: Vec::new(),
                will: session
                    .offline()
                    .and_then(|o| o.pending_will.as_ref())
                    .map(|(at, m)| (secs_until(*at, now), message_record(m, now))),
            };
            if let Some(Offline { rx, state, .. }) = session.offline() {
                record.inflight = state
                    .inflight
                    .iter()
                    .map(|(id, f)| {
                        let f = match f {
                            Inflight::Publish(d) => {
                                InflightRecord::Publish(Box::new(delivery_record(d, now)))
                            }
                            Inflight::Released => InflightRecord::Released,
                        };
                        (*id, f)
                    })
                    .collect();
                record.qos2_incoming = state.qos2_incoming.clone();
                record.queued = state
                    .backlog
                    .iter()
                    .map(|d| delivery_record(d, now))
                    .collect();
                rx.for_each_pending(|d| record.queued.push(delivery_record(d, now)));
            }
            sessions.push(record);
        }
        Snapshot {
            retained,
            sessions,
            session_owners,
        }
    }

    /// Loads the saved state, if any, at start.
    pub(super) fn restore(&mut self) {
        let Some(store) = &self.store else { return };
        let snapshot = store.load();
        let now = Instant::now();
        let (retained, sessions) = (snapshot.retained.len(), snapshot.sessions.len());
        for record in snapshot.retained {
            let message = message_from(record, now);
            if !message.is_expired(now) {
                let _ = self.retained.store(&message);
            }
        }
        for (record, owner) in snapshot.sessions.into_iter().zip(snapshot.session_owners) {
            self.restore_session(record, owner, now);
        }
        if retained + sessions > 0 {
            info!(retained, sessions, "Restored broker state");
        }
    }

    fn restore_session(&mut self, r: SessionRecord, owner: SessionOwner, now: Instant) {
        let (mut tx, rx) = session_queue(
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let mut backlog = std::collections::VecDeque::new();
        for d in r.queued {
            // Anything beyond the queue's capacity waits in the backlog, which is not bounded by
            // the channel; it is bounded by what was saved.
            if let Err((_, d)) = tx.try_send(delivery_from(d, now)) {
                backlog.push_back(d);
            }
        }
        let state = SessionState {
            inflight: r
                .inflight
                .into_iter()
                .map(|(id, f)| {
                    let f = match f {
                        InflightRecord::Publish(d) => Inflight::Publish(delivery_from(*d, now)),
                        InflightRecord::Released => Inflight::Released,
                    };
                    (id, f)
                })
                .collect(),
            backlog,
            qos2_incoming: r.qos2_incoming,
        };
        // An online session at save time counts as just disconnected now.
        let expires_in = r.expires_in.unwrap_or(r.expiry);
        let expires_at =
            (r.expiry != u32::MAX).then(|| now + Duration::from_secs(u64::from(expires_in)));
        let pending_will = r.will.map(|(secs, m)| {
            (
                now + Duration::from_secs(u64::from(secs)),
                message_from(m, now),
            )
        });
        let will_due = pending_will.as_ref().map(|(due, _)| *due);
        let mut offline = Offline::new(rx, state);
        offline.expires_at = expires_at;
        offline.pending_will = pending_will;
        let mut session = Session::new(r.client_id.clone(), owner, tx, Some(offline));
        session.expiry = r.expiry;
        let key = self.sessions.insert(Box::new(session));
        if let Some(due) = will_due {
            self.timers.insert((due, key));
        }
        if let Some(due) = expires_at {
            self.timers.insert((due, key));
        }
        self.by_client_id.insert(key, &self.sessions);
        for s in r.subscriptions {
            let entry = Entry {
                options: SubscriptionOptions {
                    qos: QoS::from_u8(s.qos).unwrap_or_default(),
                    no_local: s.no_local,
                    retain_as_published: s.retain_as_published,
                    retain_handling: s.retain_handling,
                },
                id: s.id,
            };
            match topic::parse_shared(&s.filter) {
                Ok(Some(shared)) => self
                    .tree
                    .insert(shared.filter, Some(shared.group), key, entry),
                Ok(None) => self.tree.insert(&s.filter, None, key, entry),
                Err(_) => continue,
            };
            self.sessions[key].add_subscription(s.filter, entry);
        }
    }
}
