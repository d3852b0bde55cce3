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

/// A new queue holding at most `max_messages` deliveries and `max_bytes` of them.
pub(crate) fn session_queue(max_messages: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        QueueRx { rx, bytes },
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
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl QueueTx {
    /// Queues without waiting; a message larger than the whole byte bound is refused too.
    pub fn try_send(&self, delivery: Delivery) -> Result<(), (Refused, Delivery)> {
        let weight = weight(&delivery);
        // Only the router sends, so load-then-add cannot overshoot; receivers only subtract.
        if self.bytes.load(Ordering::Relaxed) + weight > self.max_bytes {
            return Err((Refused::TooManyBytes, delivery));
        }
        match self.tx.try_send(delivery) {
            Ok(()) => {
                self.bytes.fetch_add(weight, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(d)) => Err((Refused::Full, d)),
            Err(mpsc::error::TrySendError::Closed(d)) => Err((Refused::Closed, d)),
        }
    }
}

pub(crate) struct QueueRx {
    rx: mpsc::Receiver<Delivery>,
    bytes: Arc<AtomicUsize>,
}

impl QueueRx {
    /// A receiver of nothing, to leave in place of one handed back.
    pub fn detached() -> QueueRx {
        QueueRx {
            rx: mpsc::channel(1).1,
            bytes: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await?;
        self.bytes.fetch_sub(weight(&delivery), Ordering::Relaxed);
        Some(delivery)
    }

    pub fn try_recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(weight(&delivery), Ordering::Relaxed);
        Some(delivery)
    }
}

#[cfg(test)]
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
        let (tx, mut rx) = session_queue(3, 250);
        assert!(tx.try_send(delivery(99)).is_ok()); // 100 bytes with the topic
        assert!(tx.try_send(delivery(99)).is_ok());
        assert_eq!(
            tx.try_send(delivery(99)).unwrap_err().0,
            Refused::TooManyBytes
        );
        assert!(tx.try_send(delivery(9)).is_ok());
        assert_eq!(tx.try_send(delivery(0)).unwrap_err().0, Refused::Full);
        assert!(rx.try_recv().is_some());
        assert!(
            tx.try_send(delivery(99)).is_ok(),
            "receiving frees its bytes"
        );
        assert_eq!(tx.try_send(delivery(0)).unwrap_err().0, Refused::Full);
        drop(rx);
        let (tx, rx) = session_queue(10, 50);
        assert_eq!(
            tx.try_send(delivery(100)).unwrap_err().0,
            Refused::TooManyBytes
        );
        drop(rx);
    }
}
