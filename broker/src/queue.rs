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
//! shutting down, users changed, client silent too long): an idle connection then waits on its
//! socket and its queue and nothing else, instead of a token, a watch channel and a keep-alive
//! timer of its own as well.
//! For the keep alive, the connection writes into the queue when it expects to hear from its
//! client next ([`QueueRx::expect_client_by`]), and the router, which looks at every online
//! session a few times a second, signals [`Signals::KEEP_ALIVE_EXPIRED`] once that has passed.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use crate::message::Delivery;

/// Milliseconds from `start` (the broker's start) to `now`: the clock of keep-alive deadlines,
/// small enough to keep in an atomic.
pub(crate) fn millis_since(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

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

const NO_DEADLINE: u64 = 0;

/// A buffer that ran empty with room for more than this many deliveries is freed rather than
/// kept, so a burst does not pin memory for the life of an idle session.
const KEEP_CAPACITY: usize = 64;

/// A new queue holding at most `max_messages` deliveries and `max_bytes` of them (both kept as
/// `u32`, larger values act as `u32::MAX`: the queue is one small allocation per session).
pub(crate) fn session_queue(max_messages: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        signals: AtomicU8::new(0),
        client_deadline: AtomicU64::new(NO_DEADLINE),
        max_messages: u32::try_from(max_messages.max(1)).unwrap_or(u32::MAX),
        max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueRx {
            shared: Some(shared),
            batch: None,
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
    /// The client sent nothing within one and a half keep-alive periods (MQTT-3.1.2-24).
    pub const KEEP_ALIVE_EXPIRED: Signals = Signals(8);

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
    /// When the connection expects to have heard from its client, on the [`millis_since`]
    /// clock; [`NO_DEADLINE`] when it expects nothing (no keep alive, or no connection).
    client_deadline: AtomicU64,
    max_messages: u32,
    max_bytes: u32,
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
    items_bytes: u32,
    /// The receiver's current batch, as it was when taken: it counts until the receiver comes
    /// back for more.
    taken_count: u32,
    taken_bytes: u32,
    /// Set by a waiting receiver; signals always wake it, deliveries only when
    /// `waker_wants_deliveries` (a receiver whose in-flight window is full waits for signals
    /// and its client's acknowledgements only).
    waker: Option<Waker>,
    waker_wants_deliveries: bool,
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
        if state.items.len() + state.taken_count as usize >= shared.max_messages as usize {
            return Err((Refused::Full, delivery));
        }
        let queued = u64::from(state.items_bytes) + u64::from(state.taken_bytes);
        if queued + weight as u64 > u64::from(shared.max_bytes) {
            return Err((Refused::TooManyBytes, delivery));
        }
        state.items.push_back(delivery);
        // Fits: the sum is at most `max_bytes`, a `u32`.
        state.items_bytes += weight as u32;
        let waker = match state.waker_wants_deliveries {
            true => state.waker.take(),
            false => None,
        };
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
        let waker = self.shared.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Forgets pending signals and the previous connection's keep-alive deadline, before the
    /// queue is handed to a new connection.
    pub fn reset_for_new_connection(&self) {
        self.shared.signals.store(0, Ordering::Release);
        self.shared
            .client_deadline
            .store(NO_DEADLINE, Ordering::Relaxed);
    }

    /// Whether the client's keep-alive deadline passed before `now` (on the [`millis_since`]
    /// clock). True once per deadline: the deadline is consumed, so the router signals once;
    /// a connection that hears from its client at the same moment sets a new deadline and the
    /// answer is false.
    pub fn client_deadline_passed(&self, now: u64) -> bool {
        let deadline = &self.shared.client_deadline;
        let at = deadline.load(Ordering::Relaxed);
        at != NO_DEADLINE
            && at <= now
            && deadline
                .compare_exchange(at, NO_DEADLINE, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_gone = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub(crate) struct QueueRx {
    /// `None` for a detached receiver, which receives nothing.
    shared: Option<Arc<Shared>>,
    /// Taken from the queue in one go, handed out one by one; boxed, and made with the first
    /// delivery, so a receiver that never received is one pointer.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes in every idle receiver instead of an empty deque's 32"
    )]
    batch: Option<Box<VecDeque<Delivery>>>,
}

impl QueueRx {
    /// A receiver of nothing, to leave in place of one handed back. It allocates nothing.
    pub fn detached() -> QueueRx {
        QueueRx {
            shared: None,
            batch: None,
        }
    }

    /// A pending signal, or else the next delivery when `deliveries` is true; a receiver that
    /// cannot take deliveries now (its in-flight window is full) still hears signals. Cancel
    /// safe: a delivery or a signal is only taken when it is returned.
    pub async fn next(&mut self, deliveries: bool) -> Next {
        poll_fn(|cx| self.poll_next(cx, deliveries)).await
    }

    /// Tells the router when the client must have been heard from next, on the
    /// [`millis_since`] clock; [`QueueTx::client_deadline_passed`] reports when it passed.
    pub fn expect_client_by(&self, deadline: u64) {
        if let Some(shared) = &self.shared {
            shared
                .client_deadline
                .store(deadline.max(NO_DEADLINE + 1), Ordering::Relaxed);
        }
    }

    /// Pending signals, if any, without waiting (one atomic load when there are none).
    pub fn take_signals(&self) -> Option<Signals> {
        self.shared.as_deref().and_then(take_signals)
    }

    /// [`QueueRx::next`] as a poll, for a receiver that waits on other things as well.
    pub fn poll_next(&mut self, cx: &mut Context<'_>, deliveries: bool) -> Poll<Next> {
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
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        state.waker_wants_deliveries = deliveries;
        // A signal set before the waker was in place would not have found it: look again,
        // under the lock that `signal` takes after setting it.
        match take_signals(shared) {
            Some(signals) => Poll::Ready(Next::Signal(signals)),
            None => Poll::Pending,
        }
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.batch.as_mut().and_then(|b| b.pop_front()) {
            return Some(delivery);
        }
        let (delivery, _) = self.refill(None);
        delivery
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if let Some(delivery) = self.batch.as_mut().and_then(|b| b.pop_front()) {
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
            {
                if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    state.waker = Some(waker.clone());
                }
                state.waker_wants_deliveries = true;
            }
            let sender_gone = state.sender_gone;
            drop(state);
            // A small batch buffer is kept for the next one (the queue and the batch trade
            // buffers, so a receiver that keeps up allocates nothing); a large one goes.
            if self
                .batch
                .as_ref()
                .is_some_and(|b| b.capacity() > KEEP_CAPACITY)
            {
                self.batch = None;
            }
            return (None, sender_gone);
        }
        state.taken_count = u32::try_from(state.items.len()).unwrap_or(u32::MAX);
        state.taken_bytes = std::mem::take(&mut state.items_bytes);
        let batch = self.batch.get_or_insert_with(Box::default);
        std::mem::swap(&mut state.items, batch);
        drop(state);
        (batch.pop_front(), false)
    }

    /// Shows `visit` everything queued and not yet received, in order, leaving the queue as it
    /// is (for saving an offline session's queue).
    pub fn for_each_pending(&self, mut visit: impl FnMut(&Delivery)) {
        self.batch
            .iter()
            .flat_map(|b| b.iter())
            .for_each(&mut visit);
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
    fn a_passed_keep_alive_deadline_is_reported_once_and_a_new_connection_starts_afresh() {
        let (tx, rx) = session_queue(10, 1_000);
        assert!(
            !tx.client_deadline_passed(u64::MAX),
            "no deadline, no expiry"
        );
        rx.expect_client_by(1_500);
        assert!(!tx.client_deadline_passed(1_499));
        assert!(tx.client_deadline_passed(1_500));
        assert!(
            !tx.client_deadline_passed(1_600),
            "reported once: the router signals once"
        );
        rx.expect_client_by(3_000);
        tx.reset_for_new_connection();
        assert!(
            !tx.client_deadline_passed(10_000),
            "the previous connection's deadline does not end the next one"
        );
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
        tx.reset_for_new_connection();
        assert!(
            rx.take_signals().is_none(),
            "a new connection does not inherit them"
        );
        assert_eq!(rx.try_recv().unwrap().message.payload.len(), 1);
    }
}
