//! Store-and-forward over one session at a time: QoS 1/2 messages go into the [`Queue`] before
//! they are sent, leave in order with at most [`WINDOW`] unacknowledged, and are deleted when
//! the broker acknowledges them (PUBACK, or PUBCOMP for QoS 2). When a session ends, what was in
//! flight is simply sent again by the next one, from the oldest message still queued, so a
//! message is never lost and nothing overtakes it (QoS 1 allows the duplicate).
//!
//! Used by MQTT connections (forwarding to a cloud) and by an agent's links to its gateway.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use broker::bus::QueueCounters;
use broker::{Message, QoS};

use super::queue::{Queue, QueueLimits, Record};
use super::session::{Session, WINDOW};
use crate::envelope::now_millis;

pub(crate) struct Spool {
    queue: Queue,
    /// Publishes handed to rumqttc, waiting for their packet id: the stored sequence number,
    /// or `None` for one sent directly (never stored). The session reports every publish it
    /// writes, in order, so every publish on it must pass through here.
    awaiting_pkid: VecDeque<Option<i64>>,
    /// Packet id to sequence number, waiting for PUBACK/PUBCOMP.
    in_flight: HashMap<u16, i64>,
    /// The highest sequence number sent in this session.
    sent_through: i64,
    /// Acknowledged sequence numbers not yet deleted from the queue.
    acked: Vec<i64>,
}

/// What a packet id the session reported belonged to.
pub(crate) enum Sent {
    /// One sent directly: done as far as the spool is concerned.
    Direct,
    /// A stored message, now waiting for its acknowledgement.
    Stored,
    /// Nothing we know of.
    Unknown,
}

impl Spool {
    pub async fn open(
        path: &Path,
        limits: QueueLimits,
        counters: Arc<QueueCounters>,
    ) -> Result<Spool, String> {
        Ok(Spool {
            queue: Queue::open(path, limits, counters).await?,
            awaiting_pkid: VecDeque::new(),
            in_flight: HashMap::new(),
            sent_through: 0,
            acked: Vec::new(),
        })
    }

    /// Messages stored and not yet acknowledged.
    pub fn len(&self) -> u64 {
        self.queue.len()
    }

    /// Stores the QoS 1/2 messages among `messages`, in order; returns how many older ones the
    /// queue's bounds dropped to make room. QoS 0 messages are not stored: see
    /// [`Spool::send_direct`].
    pub async fn store(&mut self, messages: &[Message]) -> Result<u64, String> {
        let records: Vec<Record> = messages
            .iter()
            .filter(|m| m.qos != QoS::AtMostOnce)
            .map(|m| Record {
                topic: m.topic.to_string(),
                payload: m.payload.clone(),
                qos: m.qos as u8,
                retain: m.retain,
            })
            .collect();
        if records.is_empty() {
            return Ok(0);
        }
        self.queue.push(&records, now_millis()).await
    }

    /// Sends a message straight away without storing it (QoS 0 ones, announcements); false
    /// when the session cannot take it now.
    pub fn send_direct(&mut self, session: &Session, topic: &str, message: &Message) -> bool {
        let sent = session
            .try_publish(topic, message.qos, message.retain, message.payload.clone())
            .is_ok();
        if sent {
            self.awaiting_pkid.push_back(None);
        }
        sent
    }

    /// The session wrote a publish with this packet id.
    pub fn sent(&mut self, pkid: u16) -> Sent {
        match self.awaiting_pkid.pop_front() {
            Some(Some(seq)) => {
                self.in_flight.insert(pkid, seq);
                Sent::Stored
            }
            Some(None) => Sent::Direct,
            None => Sent::Unknown,
        }
    }

    /// The broker acknowledged this packet id; true when it was one of ours.
    pub fn acknowledged(&mut self, pkid: u16) -> bool {
        match self.in_flight.remove(&pkid) {
            Some(seq) => {
                self.acked.push(seq);
                true
            }
            None => false,
        }
    }

    /// Deletes what was acknowledged since the last call, in one statement.
    pub async fn flush_acknowledged(&mut self) -> Result<(), String> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let acked = std::mem::take(&mut self.acked);
        self.queue.acknowledge(&acked).await
    }

    /// Sends stored messages, oldest first, until the window is full. `topic` maps a stored
    /// topic to the one the broker sees.
    pub async fn fill_window(
        &mut self,
        session: &Session,
        topic: impl Fn(&str) -> String,
    ) -> Result<(), String> {
        loop {
            let unacknowledged =
                self.in_flight.len() + self.awaiting_pkid.iter().filter(|s| s.is_some()).count();
            let room = WINDOW.saturating_sub(unacknowledged);
            if room == 0 {
                return Ok(());
            }
            let next = self.queue.peek(self.sent_through, room).await?;
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
                    .try_publish(&topic(&record.topic), qos, record.retain, record.payload)
                    .is_err()
                {
                    // rumqttc's request channel is full; the next event frees it.
                    return Ok(());
                }
                self.awaiting_pkid.push_back(Some(stored.seq));
                self.sent_through = stored.seq;
            }
        }
    }

    /// The session is gone: what it had in flight is sent again by the next one.
    pub fn session_ended(&mut self) {
        self.awaiting_pkid.clear();
        self.in_flight.clear();
        self.sent_through = 0;
    }

    /// Drops messages older than the queue's `max_age`.
    pub async fn expire(&mut self) -> Result<u64, String> {
        self.queue.expire(now_millis()).await
    }

    pub async fn close(self) {
        self.queue.close().await;
    }
}
