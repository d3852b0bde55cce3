//! A session's queue of deliveries, bounded by count and by bytes (like Mosquitto's
//! `max_queued_messages` and `max_queued_bytes`): a subscriber that never reads holds at most
//! that much, whatever the size of the messages. The router sends without waiting; the session's
//! connection (or in-process client) receives.
//!
//! Written here rather than taken from `tokio::sync::mpsc` for the idle cost: a bounded tokio
//! channel allocates a block of 32 slots and a cache-padded header up front, about 2 KiB per
//! session, and every idle connection has a session. This queue is one small allocation until
//! messages flow, and gives its buffers back when it runs empty.
//!
//! The receiver takes everything queued at once into a batch of its own, so the lock is taken
//! once per batch on its side, and the sender wakes it only when the queue goes from empty to
//! non-empty. What the receiver took still counts against the bounds until it comes back for
//! more: it has not been delivered yet.
//!
//! The queue also carries the router's [`Signals`] to the session's connection (taken over,
//! shutting down, users changed): an idle connection then waits on its socket, its queue and
//! its keep-alive timer only, instead of a token and a watch channel of its own as well.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::message::Delivery;

fn take_signals(shared: &Shared) -> Option<Signals> {
    if shared.signals.load(Ordering::Acquire) == 0 {
        return None;
    }
    Some(Signals(shared.signals.swap(0, Ordering::AcqRel))).filter(|s| s.0 != 0)
}

/// What a delivery weighs in a queue: its topic and payload.
fn weight(delivery: &Delivery) -> usize {
    delivery.message.topic.len() + delivery.message.payload.len()
}

/// A buffer that ran empty with room for more than this many deliveries is freed rather than
/// kept, so a burst does not pin memory for the life of an idle session.
const KEEP_CAPACITY: usize = 64;

/// A new queue holding at most `max_messages` deliveries and `max_bytes` of them.
pub(crate) fn session_queue(max_messages: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        signals: AtomicU8::new(0),
        max_messages: max_messages.max(1),
        max_bytes,
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueRx {
            shared: Some(shared),
            batch: VecDeque::new(),
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

/// What the router tells a session's receiver besides deliveries; several may be pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signals(u8);

impl Signals {
    /// Another connection took the session over.
    pub const TAKEN_OVER: Signals = Signals(1);
    /// The broker is shutting down.
    pub const SHUTDOWN: Signals = Signals(2);
    /// Users or their passwords changed: the connection checks its principal again.
    pub const AUTH_CHANGED: Signals = Signals(4);

    pub fn contains(self, other: Signals) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What a receiver gets next.
#[derive(Debug)]
pub(crate) enum Next {
    Delivery(Delivery),
    Signal(Signals),
    /// The sender is gone and everything was received.
    Closed,
}

struct Shared {
    state: Mutex<State>,
    /// Pending [`Signals`], outside the lock so a receiver checks them for free.
    signals: AtomicU8,
    max_messages: usize,
    max_bytes: usize,
}

impl Shared {
    /// The state; a panic elsewhere while holding the lock leaves it consistent (every update
    /// is a handful of assignments), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    /// Queued and not yet taken by the receiver.
    items: VecDeque<Delivery>,
    items_bytes: usize,
    /// The receiver's current batch, as it was when taken: it counts until the receiver comes
    /// back for more.
    taken_count: usize,
    taken_bytes: usize,
    /// Set by a receiver that found the queue empty.
    waker: Option<Waker>,
    /// Set by a receiver waiting for anything; only signals wake it.
    signal_waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

pub(crate) struct QueueTx {
    shared: Arc<Shared>,
}

impl QueueTx {
    /// Queues without waiting; a message larger than the whole byte bound is refused too.
    pub fn try_send(&mut self, delivery: Delivery) -> Result<(), (Refused, Delivery)> {
        let weight = weight(&delivery);
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.receiver_gone {
            return Err((Refused::Closed, delivery));
        }
        if state.items.len() + state.taken_count >= shared.max_messages {
            return Err((Refused::Full, delivery));
        }
        if state.items_bytes + state.taken_bytes + weight > shared.max_bytes {
            return Err((Refused::TooManyBytes, delivery));
        }
        state.items.push_back(delivery);
        state.items_bytes += weight;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl QueueTx {
    /// Tells the receiver, waking it whether or not it waits for deliveries.
    pub fn signal(&self, signals: Signals) {
        self.shared.signals.fetch_or(signals.0, Ordering::Release);
        let waker = self.shared.lock().signal_waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Forgets pending signals, before the queue is handed to a new connection.
    pub fn clear_signals(&self) {
        self.shared.signals.store(0, Ordering::Release);
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_gone = true;
        let wakers = [state.waker.take(), state.signal_waker.take()];
        drop(state);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

pub(crate) struct QueueRx {
    /// `None` for a detached receiver, which receives nothing.
    shared: Option<Arc<Shared>>,
    /// Taken from the queue in one go, handed out one by one.
    batch: VecDeque<Delivery>,
}

impl QueueRx {
    /// A receiver of nothing, to leave in place of one handed back. It allocates nothing.
    pub fn detached() -> QueueRx {
        QueueRx {
            shared: None,
            batch: VecDeque::new(),
        }
    }

    /// A pending signal, or else the next delivery when `deliveries` is true; a receiver that
    /// cannot take deliveries now (its in-flight window is full) still hears signals. Cancel
    /// safe: a delivery or a signal is only taken when it is returned.
    pub async fn next(&mut self, deliveries: bool) -> Next {
        poll_fn(|cx| self.poll_next(cx, deliveries)).await
    }

    /// Pending signals, if any, without waiting (one atomic load when there are none).
    pub fn take_signals(&self) -> Option<Signals> {
        self.shared.as_deref().and_then(take_signals)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, deliveries: bool) -> Poll<Next> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(Next::Closed);
        };
        if let Some(signals) = take_signals(shared) {
            return Poll::Ready(Next::Signal(signals));
        }
        if deliveries {
            match self.poll_recv(cx) {
                Poll::Ready(Some(delivery)) => return Poll::Ready(Next::Delivery(delivery)),
                Poll::Ready(None) => return Poll::Ready(Next::Closed),
                Poll::Pending => {}
            }
        }
        let Some(shared) = &self.shared else {
            return Poll::Ready(Next::Closed);
        };
        let mut state = shared.lock();
        if !state
            .signal_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.signal_waker = Some(cx.waker().clone());
        }
        // A signal set before the waker was in place would not have found it: look again,
        // under the lock that `signal` takes after setting it.
        match take_signals(shared) {
            Some(signals) => Poll::Ready(Next::Signal(signals)),
            None => Poll::Pending,
        }
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.batch.pop_front() {
            return Some(delivery);
        }
        let (delivery, _) = self.refill(None);
        delivery
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if let Some(delivery) = self.batch.pop_front() {
            return Poll::Ready(Some(delivery));
        }
        match self.refill(Some(cx.waker())) {
            (Some(delivery), _) => Poll::Ready(Some(delivery)),
            (None, true) => Poll::Ready(None),
            (None, false) => Poll::Pending,
        }
    }

    /// With the batch used up: takes everything queued as the new batch and returns its first
    /// delivery. On an empty queue, leaves `waker` to be woken by the next send and says
    /// whether the sender is gone.
    fn refill(&mut self, waker: Option<&Waker>) -> (Option<Delivery>, bool) {
        let Some(shared) = &self.shared else {
            return (None, true);
        };
        let mut state = shared.lock();
        if state.items.is_empty() {
            state.taken_count = 0;
            state.taken_bytes = 0;
            if state.items.capacity() > KEEP_CAPACITY {
                state.items = VecDeque::new();
            }
            if let Some(waker) = waker
                && !state.sender_gone
                && !state.waker.as_ref().is_some_and(|w| w.will_wake(waker))
            {
                state.waker = Some(waker.clone());
            }
            let sender_gone = state.sender_gone;
            drop(state);
            if self.batch.capacity() > KEEP_CAPACITY {
                self.batch = VecDeque::new();
            }
            return (None, sender_gone);
        }
        state.taken_count = state.items.len();
        state.taken_bytes = std::mem::take(&mut state.items_bytes);
        std::mem::swap(&mut state.items, &mut self.batch);
        drop(state);
        (self.batch.pop_front(), false)
    }

    /// Shows `visit` everything queued and not yet received, in order, leaving the queue as it
    /// is (for saving an offline session's queue).
    pub fn for_each_pending(&self, mut visit: impl FnMut(&Delivery)) {
        self.batch.iter().for_each(&mut visit);
        if let Some(shared) = &self.shared {
            shared.lock().items.iter().for_each(visit);
        }
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let mut state = shared.lock();
            state.receiver_gone = true;
            state.waker = None;
            state.signal_waker = None;
            // Whatever is queued can no longer be received; free it now rather than with the
            // sender, which lives as long as the session does.
            let items = std::mem::take(&mut state.items);
            state.items_bytes = 0;
            drop(state);
            drop(items);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A refused or accepted send where the test expects the other fails it.
mod tests {
    use std::sync::Arc as StdArc;
    use std::time::Duration;

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

    fn pending_sizes(rx: &QueueRx) -> Vec<usize> {
        let mut sizes = Vec::new();
        rx.for_each_pending(|d| sizes.push(d.message.payload.len()));
        sizes
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
            tx.try_send(delivery(0)).unwrap_err().0,
            Refused::Full,
            "what the receiver took counts until it comes back for more"
        );
        assert!(rx.try_recv().is_some() && rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
        assert!(
            tx.try_send(delivery(99)).is_ok(),
            "a receiver that found the queue empty has freed it all"
        );
        assert!(tx.try_send(delivery(99)).is_ok());
        assert!(tx.try_send(delivery(0)).is_ok());
        assert_eq!(tx.try_send(delivery(0)).unwrap_err().0, Refused::Full);
        drop(rx);
        let (mut tx, rx) = session_queue(10, 50);
        assert_eq!(
            tx.try_send(delivery(100)).unwrap_err().0,
            Refused::TooManyBytes,
            "a message larger than the whole bound never fits"
        );
        drop(rx);
    }

    #[test]
    fn keeps_order_across_batches() {
        let (mut tx, mut rx) = session_queue(100, 100_000);
        tx.try_send(delivery(1)).unwrap();
        tx.try_send(delivery(2)).unwrap();
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 1);
        tx.try_send(delivery(3)).unwrap();
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 2);
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 3);
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn pending_copies_without_taking() {
        let (mut tx, mut rx) = session_queue(100, 100_000);
        for n in 1..=3 {
            tx.try_send(delivery(n)).unwrap();
        }
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 1);
        tx.try_send(delivery(4)).unwrap();
        assert_eq!(pending_sizes(&rx), [2, 3, 4], "batch first, then the queue");
        assert_eq!(pending_sizes(&rx), [2, 3, 4], "and nothing was taken");
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 2);
    }

    #[test]
    fn a_dropped_receiver_closes_the_queue_and_frees_it() {
        let (mut tx, rx) = session_queue(100, 100_000);
        let queued = delivery(10);
        let message = queued.message.clone();
        tx.try_send(queued).unwrap();
        drop(rx);
        assert_eq!(
            StdArc::strong_count(&message),
            1,
            "the queued copy is freed"
        );
        assert_eq!(tx.try_send(delivery(1)).unwrap_err().0, Refused::Closed);
    }

    #[test]
    fn a_detached_receiver_receives_nothing() {
        let mut rx = QueueRx::detached();
        assert!(rx.try_recv().is_none());
        assert!(pending_sizes(&rx).is_empty());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_ends_after_the_sender() {
        let (mut tx, mut rx) = session_queue(100, 100_000);
        let receiver = tokio::spawn(async move {
            let mut sizes = Vec::new();
            while let Next::Delivery(d) = rx.next(true).await {
                sizes.push(d.message.payload.len());
            }
            sizes
        });
        // One runtime thread: yielding lets the receiver run until it waits on the empty queue.
        tokio::task::yield_now().await;
        tx.try_send(delivery(1)).unwrap();
        tokio::task::yield_now().await;
        tx.try_send(delivery(2)).unwrap();
        tx.try_send(delivery(3)).unwrap();
        drop(tx);
        let received = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("the receiver was woken")
            .unwrap();
        assert_eq!(
            received,
            [1, 2, 3],
            "what was queued before the sender left"
        );
    }

    #[tokio::test]
    async fn signals_reach_a_receiver_that_takes_no_deliveries() {
        let (mut tx, mut rx) = session_queue(100, 100_000);
        tx.try_send(delivery(1)).unwrap();
        let receiver = tokio::spawn(async move {
            let first = rx.next(false).await;
            let second = rx.next(true).await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.signal(Signals::TAKEN_OVER);
        let (first, second) = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("the signal woke the receiver")
            .unwrap();
        assert!(matches!(first, Next::Signal(s) if s.contains(Signals::TAKEN_OVER)));
        assert!(
            matches!(second, Next::Delivery(_)),
            "signals are taken once"
        );
    }

    #[test]
    fn signals_come_before_deliveries_and_can_be_cleared() {
        let (mut tx, mut rx) = session_queue(100, 100_000);
        tx.try_send(delivery(1)).unwrap();
        tx.signal(Signals::AUTH_CHANGED);
        tx.signal(Signals::SHUTDOWN);
        let signals = rx.take_signals().unwrap();
        assert!(signals.contains(Signals::AUTH_CHANGED) && signals.contains(Signals::SHUTDOWN));
        assert!(rx.take_signals().is_none());
        tx.signal(Signals::TAKEN_OVER);
        tx.clear_signals();
        assert!(
            rx.take_signals().is_none(),
            "a new connection does not inherit them"
        );
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 1);
    }
}
