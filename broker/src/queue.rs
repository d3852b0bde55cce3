//! A session's queue of deliveries, bounded by count and by bytes (like Mosquitto's
//! `max_queued_messages` and `max_queued_bytes`): a subscriber that never reads holds at most
//! that much, whatever the size of the messages. The router sends without waiting; the session's
//! connection (or in-process client) receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::message::Delivery;

/// What a delivery weighs in a queue: its topic and payload.
fn weight(delivery: &Delivery) -> usize {
    delivery.message.topic.len() + delivery.message.payload.len()
}

/// Bytes a receiver takes before it tells the sender; the sender's view is that much behind at
/// most. Telling it per message would bounce one cache line between the router and every
/// connection for every delivery.
const SETTLE_BYTES: usize = 64 * 1024;

/// A new queue holding at most `max_messages` deliveries and `max_bytes` of them.
pub(crate) fn session_queue(max_messages: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let consumed = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            sent: 0,
            consumed: consumed.clone(),
            max_bytes,
        },
        QueueRx {
            rx,
            consumed,
            unsettled: 0,
        },
    )
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_queued_messages` reached.
    Full,
    /// `max_queued_bytes` reached.
    TooManyBytes,
    /// The receiving end is gone.
    Closed,
}

pub(crate) struct QueueTx {
    tx: mpsc::Sender<Delivery>,
    /// Bytes ever queued; only the sender (the router) counts them.
    sent: usize,
    /// Bytes ever taken out, as far as the receiver has told.
    consumed: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl QueueTx {
    /// Queues without waiting; a message larger than the whole byte bound is refused too.
    pub fn try_send(&mut self, delivery: Delivery) -> Result<(), (Refused, Delivery)> {
        let weight = weight(&delivery);
        let queued = self
            .sent
            .wrapping_sub(self.consumed.load(Ordering::Relaxed));
        if queued + weight > self.max_bytes {
            return Err((Refused::TooManyBytes, delivery));
        }
        match self.tx.try_send(delivery) {
            Ok(()) => {
                self.sent = self.sent.wrapping_add(weight);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(d)) => Err((Refused::Full, d)),
            Err(mpsc::error::TrySendError::Closed(d)) => Err((Refused::Closed, d)),
        }
    }
}

pub(crate) struct QueueRx {
    rx: mpsc::Receiver<Delivery>,
    consumed: Arc<AtomicUsize>,
    /// Bytes taken out but not yet told to the sender.
    unsettled: usize,
}

impl QueueRx {
    /// A receiver of nothing, to leave in place of one handed back.
    pub fn detached() -> QueueRx {
        QueueRx {
            rx: mpsc::channel(1).1,
            consumed: Arc::new(AtomicUsize::new(0)),
            unsettled: 0,
        }
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await?;
        self.taken(&delivery);
        Some(delivery)
    }

    pub fn try_recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.try_recv().ok()?;
        self.taken(&delivery);
        Some(delivery)
    }

    /// Tells the sender what was taken out, in batches; at once when the queue ran empty, so an
    /// idle queue is never reported fuller than it is.
    fn taken(&mut self, delivery: &Delivery) {
        self.unsettled += weight(delivery);
        if self.unsettled >= SETTLE_BYTES || self.rx.is_empty() {
            self.consumed.fetch_add(self.unsettled, Ordering::Relaxed);
            self.unsettled = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A refused or accepted send where the test expects the other fails it.
mod tests {
    use std::sync::Arc as StdArc;

    use super::*;
    use crate::codec::QoS;
    use crate::message::Message;

    fn delivery(payload_len: usize) -> Delivery {
        Delivery {
            message: StdArc::new(Message::new(
                "t",
                vec![0u8; payload_len],
                QoS::AtLeastOnce,
                false,
            )),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        }
    }

    #[test]
    fn bounded_by_count_and_by_bytes_and_freed_by_receiving() {
        let (mut tx, mut rx) = session_queue(3, 250);
        assert!(tx.try_send(delivery(99)).is_ok()); // 100 bytes with the topic
        assert!(tx.try_send(delivery(99)).is_ok());
        assert_eq!(
            tx.try_send(delivery(99)).unwrap_err().0,
            Refused::TooManyBytes
        );
        assert!(tx.try_send(delivery(9)).is_ok());
        assert_eq!(tx.try_send(delivery(0)).unwrap_err().0, Refused::Full);
        assert!(rx.try_recv().is_some());
        assert_eq!(
            tx.try_send(delivery(99)).unwrap_err().0,
            Refused::TooManyBytes,
            "what is taken is told in batches (here: not yet)"
        );
        assert!(rx.try_recv().is_some() && rx.try_recv().is_some());
        assert!(
            tx.try_send(delivery(99)).is_ok(),
            "an emptied queue tells at once"
        );
        assert!(tx.try_send(delivery(99)).is_ok());
        assert!(tx.try_send(delivery(0)).is_ok());
        assert_eq!(tx.try_send(delivery(0)).unwrap_err().0, Refused::Full);
        drop(rx);
        let (mut tx, rx) = session_queue(10, 50);
        assert_eq!(
            tx.try_send(delivery(100)).unwrap_err().0,
            Refused::TooManyBytes
        );
        drop(rx);
    }
}
