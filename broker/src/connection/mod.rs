//! One task per network connection: the CONNECT handshake, then a loop that reads packets and
//! writes deliveries, and finally hands the session back to the router.
//!
//! The task owns all per-connection protocol state (packet ids, in-flight window, topic aliases,
//! QoS 2 ids). Acknowledgements for the client's own publishes are written by this task, after the
//! router has accepted the messages, so a client that stops reading slows only itself.
//!
//! Idle connections may stay for days, and a broker may hold a hundred thousand of them, so what
//! a connection keeps while it waits is kept small: the state that exists only while messages
//! flow ([`Traffic`]) is boxed and given back when the connection comes to rest, the read buffer
//! too, and the keep alive is watched by the router (see `crate::queue`) rather than by a timer
//! of the connection's own.

mod handshake;
mod incoming;
mod outgoing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use crate::auth::Principal;
use crate::codec::{self, Disconnect, Packet, Properties, Protocol, ReasonCode, Will};
use crate::context::{ConnectionSlot, Context};
use crate::message::{Delivery, Message, MessageProperties, SessionKey};
use crate::metrics::{LocalTally, Metrics};
use crate::queue::{Next, QueueRx, Signals, millis_since};
use crate::router::{self, Event, Handback, Inflight, SessionState};

/// Smallest and largest read buffer; it grows while reads fill it and starts small so that idle
/// connections cost little memory. The largest read is kept modest so one busy publisher hands
/// the router small batches and cannot monopolise a worker thread.
const MIN_READ: usize = 512;
const MAX_READ: usize = 16 * 1024;
/// Bytes of deliveries encoded before they are written out. Consumers drain their queue in
/// batches much larger than a publisher's read, so under overload the scheduler's round robin
/// favours delivering over accepting, and fewer messages are accepted only to be dropped.
const WRITE_BATCH: usize = 256 * 1024;
/// A connection whose last write was at least this large is streaming: it keeps its
/// [`Traffic`] (and write buffer) between turns instead of allocating them again each time.
const STREAMING_WRITE: usize = 4 * 1024;
/// A client that does not take our bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is on the other end of a connection, as the transport knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub address: Option<SocketAddr>,
    /// Common name of a verified client certificate (mutual TLS).
    pub certificate_name: Option<String>,
}

/// Serves one client: runs the CONNECT handshake and, once the client is admitted, moves the
/// connection into a task of its own (tracked like this one), which serves it until it goes
/// away and then hands its session back to the router.
///
/// The connection's task lives as long as the client, days for an idle one, so it holds only
/// the [`Connection`] and what an idle one waits on, its socket and its queue: the handshake
/// (the CONNECT, the peer, the authentication) stays behind in this short-lived task, and the
/// connection's rare paths are boxed. `slot` is the connection's place under
/// `max_connections`, held by the connection until it ends.
pub(crate) async fn serve<S>(mut stream: S, peer: Peer, ctx: Arc<Context>, slot: ConnectionSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut rbuf = BytesMut::with_capacity(MIN_READ);
    let accepted = tokio::select! {
        accepted = handshake::accept(&mut stream, &mut rbuf, &peer, &ctx) => accepted,
        _ = ctx.shutdown.cancelled() => None,
    };
    let Some(accepted) = accepted else {
        return;
    };
    let connection = Connection::new(stream, rbuf, accepted, ctx.clone(), slot);
    ctx.connections.spawn(connection.serve());
}

/// Everything the handshake established.
pub(crate) struct Accepted {
    pub protocol: Protocol,
    pub client_id: ByteString,
    pub principal: Principal,
    pub session: SessionKey,
    pub rx: QueueRx,
    pub resumed: SessionState,
    pub keep_alive: u16,
    /// Boxed: most clients have none, and an idle connection should not carry its room.
    pub will: Option<Box<Will>>,
    pub session_expiry: u32,
    /// The client's limits (MQTT 5 CONNECT properties).
    pub client_receive_maximum: u16,
    pub client_max_packet_size: u32,
    pub client_topic_alias_maximum: u16,
}

/// Why the connection loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT from the client; `with_will` for MQTT 5 reason 0x04.
    ClientDisconnect { with_will: bool },
    /// The client closed the socket or it failed.
    Closed,
    /// We close the connection for this reason, telling MQTT 5 clients with a DISCONNECT.
    Server(ReasonCode),
}

pub(crate) struct Connection<S> {
    stream: S,
    ctx: Arc<Context>,
    /// Empty and unallocated while the client sends nothing (see [`poll_read_some`]).
    rbuf: BytesMut,
    client_id: ByteString,
    principal: Principal,
    session: SessionKey,
    will: Option<Box<Will>>,
    rx: QueueRx,
    /// `None` while the connection rests.
    traffic: Option<Box<Traffic>>,
    /// The connection's place under `max_connections`.
    _slot: ConnectionSlot,
    read_size: u32,
    /// One and a half keep-alive periods in milliseconds; 0 without keep alive.
    silence_limit_ms: u32,
    session_expiry: u32,
    client_max_packet_size: u32,
    next_packet_id: u16,
    send_quota: u16,
    client_topic_alias_maximum: u16,
    protocol: Protocol,
    /// The principal may read every topic: deliveries need no check (asked again on changes).
    receives_everything: bool,
}

/// The state of a connection that exists only while messages flow, boxed so that a resting
/// connection does not carry it: an idle connection's state is then its socket, its identity
/// and its queue.
#[derive(Default)]
struct Traffic {
    wbuf: BytesMut,
    tally: LocalTally,
    /// Messages accepted from the client, sent to the router in one event per read.
    accepted: Vec<Arc<Message>>,
    // Incoming (client to broker) state.
    qos2_incoming: HashSet<u16, BuildHasherDefault<PacketIdHasher>>,
    aliases_in: HashMap<u16, ByteString>,
    // Outgoing (broker to client) state.
    inflight: HashMap<u16, (u64, Inflight), BuildHasherDefault<PacketIdHasher>>,
    send_seq: u64,
    backlog: VecDeque<Delivery>,
    aliases_out: HashMap<ByteString, u16>,
    /// Bytes of the last write, to tell a streaming connection from one that rests.
    last_write: usize,
}

impl Traffic {
    /// Nothing to write, count or remember, and not streaming: the box can go.
    fn at_rest(&self) -> bool {
        self.wbuf.is_empty()
            && self.last_write < STREAMING_WRITE
            && self.tally.is_zero()
            && self.accepted.is_empty()
            && self.qos2_incoming.is_empty()
            && self.aliases_in.is_empty()
            && self.inflight.is_empty()
            && self.backlog.is_empty()
            && self.aliases_out.is_empty()
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(
        stream: S,
        rbuf: BytesMut,
        a: Accepted,
        ctx: Arc<Context>,
        slot: ConnectionSlot,
    ) -> Connection<S> {
        let send_quota = a.client_receive_maximum.min(ctx.config.max_inflight).max(1);
        let receives_everything = ctx.auth.may_receive_everything(&a.principal);
        let mut connection = Connection {
            stream,
            rbuf,
            client_id: a.client_id,
            principal: a.principal,
            session: a.session,
            will: a.will,
            rx: a.rx,
            traffic: None,
            _slot: slot,
            read_size: MIN_READ as u32,
            silence_limit_ms: u32::from(a.keep_alive) * 1500,
            session_expiry: a.session_expiry,
            client_max_packet_size: a.client_max_packet_size,
            next_packet_id: 1,
            send_quota,
            client_topic_alias_maximum: a.client_topic_alias_maximum,
            protocol: a.protocol,
            receives_everything,
            ctx,
        };
        let SessionState {
            inflight,
            backlog,
            qos2_incoming,
        } = a.resumed;
        if !qos2_incoming.is_empty() || !backlog.is_empty() {
            let traffic = connection.traffic();
            traffic.qos2_incoming = qos2_incoming.into_iter().collect();
            traffic.backlog = backlog;
        }
        connection.resend_inflight(inflight);
        connection.drain_backlog();
        connection
    }

    /// Serves the admitted client until it goes away, then hands its session back.
    fn serve(self) -> impl Future<Output = ()> + Send + 'static
    where
        S: 'static,
    {
        // An async block rather than an `async fn` taking `self`: that would keep the
        // connection twice in the task, as the argument and as its local copy.
        let mut connection = self;
        async move {
            let end = connection.run().await;
            Box::pin(connection.finish(end)).await;
        }
    }

    /// The state of flowing messages, made when the first one comes.
    fn traffic(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }

    fn inflight_len(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.inflight.len())
    }

    fn backlog_is_empty(&self) -> bool {
        self.traffic.as_ref().is_none_or(|t| t.backlog.is_empty())
    }

    /// Tells the router when the client must have been heard from next (its keep alive).
    fn heard_from_client(&self) {
        if self.silence_limit_ms > 0 {
            let now = millis_since(self.ctx.started, Instant::now());
            self.rx
                .expect_client_by(now + u64::from(self.silence_limit_ms));
        }
    }

    async fn run(&mut self) -> End {
        self.heard_from_client();
        // Users may have changed between the login and the session going online, before the
        // router could tell this connection: look once now.
        if let Err(end) = self.on_signals(Signals::AUTH_CHANGED) {
            return end;
        }
        // Clients may send before the CONNACK (MQTT 3.1.1 section 3.1.4): whatever came in the
        // CONNECT's read (one TCP write, one WebSocket frame) is handled now, not after the
        // next read, which may never come.
        if !self.rbuf.is_empty()
            && let Err(end) = Box::pin(self.process_input()).await
        {
            return end;
        }
        loop {
            if self.traffic.as_ref().is_some_and(|t| !t.wbuf.is_empty())
                && let Err(end) = Box::pin(self.flush()).await
            {
                return end;
            }
            self.settle();
            // Checked on every turn, not only when the queue is polled: a client whose reads are
            // always ready would otherwise never hear that it was taken over.
            if let Some(signals) = self.rx.take_signals()
                && let Err(end) = self.on_signals(signals)
            {
                return end;
            }
            let can_pull =
                self.backlog_is_empty() && self.inflight_len() < usize::from(self.send_quota);
            self.prepare_read_buffer();
            // Everything awaited here lives in the connection's task for as long as it is idle,
            // so this wait is one small hand-written poll of the socket and the queue (which
            // also carries the router's signals: takeover, shutdown, users changed, keep alive
            // expired), and the work that follows is boxed, allocated only while it runs.
            let read = match self.wait(can_pull).await {
                Woken::Read(read) => read,
                Woken::Queue(next) => match self.on_queue(next) {
                    Ok(()) => continue,
                    Err(end) => return end,
                },
            };
            let n = match read {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            };
            self.traffic().tally.bytes_received += n as u64;
            self.adapt_read_size(n);
            self.heard_from_client();
            if let Err(end) = Box::pin(self.process_input()).await {
                return end;
            }
            // One read's worth of messages per turn: a publisher that always has data waiting
            // would otherwise keep the worker (within tokio's budget) while the consumers it
            // feeds, whose queues are bounded, wait and overflow.
            tokio::task::yield_now().await;
        }
    }

    /// A delivery or a signal from the queue; an `Err` ends the connection.
    fn on_queue(&mut self, next: Next) -> Result<(), End> {
        match next {
            Next::Delivery(delivery) => {
                self.send_or_queue(delivery);
                self.pull_more();
                Ok(())
            }
            Next::Signal(signals) => self.on_signals(signals),
            // The sender lives in the router's session table; it never closes first.
            Next::Closed => Err(End::Server(ReasonCode::SERVER_SHUTTING_DOWN)),
        }
    }

    /// Waits for the client to send or the queue to deliver (or signal); input first.
    fn wait(&mut self, deliveries: bool) -> impl Future<Output = Woken> {
        poll_fn(move |cx| {
            if let Poll::Ready(read) = poll_read_some(
                &mut self.stream,
                &mut self.rbuf,
                self.read_size as usize,
                cx,
            ) {
                return Poll::Ready(Woken::Read(read));
            }
            self.rx.poll_next(cx, deliveries).map(Woken::Queue)
        })
    }

    /// Takes more deliveries while the write batch and the in-flight window have room.
    fn pull_more(&mut self) {
        let quota = usize::from(self.send_quota);
        while let Some(traffic) = &self.traffic {
            if traffic.wbuf.len() >= WRITE_BATCH
                || !traffic.backlog.is_empty()
                || traffic.inflight.len() >= quota
            {
                break;
            }
            match self.rx.try_recv() {
                Some(delivery) => self.send_or_queue(delivery),
                None => break,
            }
        }
    }

    /// At the end of a turn, after writing out: counts what the turn did, and gives the
    /// traffic state back when the connection comes to rest.
    fn settle(&mut self) {
        let Some(traffic) = &mut self.traffic else {
            return;
        };
        if traffic.wbuf.is_empty() {
            // Deliveries may all have been dropped (denied, too large): count them now.
            traffic.tally.flush(&self.ctx.metrics);
        }
        if traffic.at_rest() {
            self.traffic = None;
        }
    }

    /// What the router's signals mean for this connection; an `Err` ends it.
    fn on_signals(&mut self, signals: Signals) -> Result<(), End> {
        if signals.contains(Signals::SHUTDOWN) {
            return Err(End::Server(ReasonCode::SERVER_SHUTTING_DOWN));
        }
        if signals.contains(Signals::TAKEN_OVER) {
            return Err(End::Server(ReasonCode::SESSION_TAKEN_OVER));
        }
        if signals.contains(Signals::KEEP_ALIVE_EXPIRED) {
            return Err(End::Server(ReasonCode::KEEP_ALIVE_TIMEOUT));
        }
        if signals.contains(Signals::AUTH_CHANGED) {
            // A deleted user, a recreated one, or a changed password: the connection no longer
            // speaks for a valid account (Mosquitto's dynamic security kicks such clients too).
            // Permission changes need no disconnect: every delivery and publish is checked
            // against the current ones.
            if !self.ctx.auth.is_current(&self.principal) {
                return Err(End::Server(ReasonCode::NOT_AUTHORIZED));
            }
            self.receives_everything = self.ctx.auth.may_receive_everything(&self.principal);
        }
        Ok(())
    }

    /// Decodes every whole packet in the read buffer and handles it.
    async fn process_input(&mut self) -> Result<(), End> {
        let max = self.ctx.config.max_packet_size as usize;
        loop {
            let packet = match codec::decode(&mut self.rbuf, self.protocol, max) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    debug!(client_id = %self.client_id, error = %e, "Closing connection on a bad packet");
                    self.forward_accepted().await?;
                    return Err(End::Server(e.reason_code()));
                }
            };
            if let Err(end) = self.handle_packet(packet).await {
                // Messages before a DISCONNECT (or a protocol error) were accepted: route them.
                self.forward_accepted().await?;
                return Err(end);
            }
        }
        self.forward_accepted().await?;
        if let Some(traffic) = &mut self.traffic {
            traffic.tally.flush(&self.ctx.metrics);
        }
        Ok(())
    }

    /// Hands the messages accepted so far to the router, before their acknowledgements go out.
    async fn forward_accepted(&mut self) -> Result<(), End> {
        let Some(traffic) = self.traffic.as_mut().filter(|t| !t.accepted.is_empty()) else {
            return Ok(());
        };
        let batch = std::mem::take(&mut traffic.accepted);
        self.ctx
            .router
            .send(Event::Publish(batch))
            .await
            .map_err(|_| End::Server(ReasonCode::SERVER_SHUTTING_DOWN))
    }

    /// Makes room for the next read. A client that is not streaming holds no buffer while it
    /// waits: [`poll_read_some`] then reads into the stack and allocates only for what came.
    fn prepare_read_buffer(&mut self) {
        if self.rbuf.is_empty() && self.read_size as usize == MIN_READ {
            if self.rbuf.capacity() > 0 {
                self.rbuf = BytesMut::new();
            }
        } else if self.rbuf.capacity() - self.rbuf.len() < MIN_READ / 2 {
            self.rbuf.reserve(self.read_size as usize);
        }
    }

    /// Doubles the read size while reads fill the buffer, and halves it again when they use
    /// little of it, so a publisher that streams reads big and an idle client goes back to none.
    fn adapt_read_size(&mut self, read: usize) {
        let size = self.read_size as usize;
        if self.rbuf.capacity() == self.rbuf.len() && size < MAX_READ {
            self.read_size *= 2;
        } else if read < size / 4 && size > MIN_READ {
            self.read_size /= 2;
        }
    }

    /// Writes out whatever is buffered.
    async fn flush(&mut self) -> Result<(), End> {
        let Some(traffic) = &mut self.traffic else {
            return Ok(());
        };
        let write = async {
            self.stream.write_all(&traffic.wbuf).await?;
            self.stream.flush().await
        };
        let result = tokio::select! {
            result = tokio::time::timeout(WRITE_TIMEOUT, write) => result,
            _ = self.ctx.shutdown.cancelled() => return Err(End::Closed),
        };
        match result {
            Ok(Ok(())) => {
                let written = traffic.wbuf.len();
                traffic.tally.bytes_sent += written as u64;
                traffic.last_write = written;
                traffic.wbuf.clear();
                // Do not let one burst pin a large buffer for the life of the connection.
                if traffic.wbuf.capacity() > 2 * WRITE_BATCH {
                    traffic.wbuf = BytesMut::new();
                }
                traffic.tally.flush(&self.ctx.metrics);
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(End::Closed),
        }
    }

    fn write_packet(&mut self, packet: &Packet) {
        let protocol = self.protocol;
        codec::encode(packet, protocol, &mut self.traffic().wbuf);
    }

    /// Says goodbye where the protocol allows it, and hands the session back to the router.
    async fn finish(&mut self, end: End) {
        if let End::Server(code) = end {
            if is_client_fault(code) {
                Metrics::add(&self.ctx.metrics.protocol_errors, 1);
            }
            if self.protocol.is_v5() {
                self.write_packet(&Packet::Disconnect(Disconnect {
                    code,
                    properties: Properties::default(),
                }));
                let wbuf = self.traffic.as_deref().map_or(&[][..], |t| &t.wbuf[..]);
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = self.stream.write_all(wbuf).await;
                    let _ = self.stream.flush().await;
                })
                .await;
            }
            debug!(client_id = %self.client_id, reason = %code, "Connection closed by the broker");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        let publish_will = !matches!(end, End::ClientDisconnect { with_will: false });
        // The will was allowed at CONNECT; it goes out only if the user still may publish it.
        let will = self
            .will
            .take()
            .filter(|w| publish_will && self.ctx.auth.authorize_publish(&self.principal, &w.topic))
            .map(|w| will_message(*w, self.session));
        let handback = Handback {
            session: self.session,
            rx: std::mem::replace(&mut self.rx, QueueRx::detached()),
            state: self.take_state(),
            will,
            session_expiry: self.session_expiry,
        };
        // Fails only when the router is gone, and then there is nobody to hand back to.
        let _ = self
            .ctx
            .router
            .send(Event::Disconnected(Box::new(handback)))
            .await;
        if let Some(traffic) = &mut self.traffic {
            traffic.tally.flush(&self.ctx.metrics);
        }
    }

    fn take_state(&mut self) -> SessionState {
        let Some(mut traffic) = self.traffic.take() else {
            return SessionState::default();
        };
        let mut inflight: Vec<(u64, u16, Inflight)> = traffic
            .inflight
            .drain()
            .map(|(id, (seq, f))| (seq, id, f))
            .collect();
        inflight.sort_unstable_by_key(|(seq, _, _)| *seq);
        // The counters go on with the connection's last flush.
        traffic.tally.flush(&self.ctx.metrics);
        SessionState {
            inflight: inflight.into_iter().map(|(_, id, f)| (id, f)).collect(),
            backlog: std::mem::take(&mut traffic.backlog),
            qos2_incoming: traffic.qos2_incoming.drain().collect(),
        }
    }
}

/// What ended a connection's wait.
enum Woken {
    Read(io::Result<usize>),
    Queue(Next),
}

/// Reads what the client sent into `buf`. A buffer without room (a resting connection's) is
/// not grown while waiting, which would allocate for every idle client: the read goes to the
/// stack, and only what arrived is copied into a buffer sized for the next reads.
fn poll_read_some<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    read_size: usize,
    cx: &mut std::task::Context<'_>,
) -> Poll<io::Result<usize>>
where
    S: AsyncRead + Unpin,
{
    if buf.capacity() > buf.len() {
        return tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf);
    }
    let mut space = [0u8; MIN_READ];
    let mut landed = ReadBuf::new(&mut space);
    ready!(Pin::new(stream).poll_read(cx, &mut landed))?;
    let n = landed.filled().len();
    if n > 0 {
        buf.reserve(read_size.max(n));
        buf.extend_from_slice(landed.filled());
    }
    Poll::Ready(Ok(n))
}

fn will_message(mut will: Will, session: SessionKey) -> router::Will {
    let delay = will.properties.will_delay_interval.unwrap_or(0);
    let expires_at = will
        .properties
        .message_expiry_interval
        .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
    let message = Message {
        properties: MessageProperties::from_properties(&mut will.properties),
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        expires_at,
        origin: Some(session),
    };
    router::Will {
        message: Arc::new(message),
        delay,
    }
}

/// Hashes packet ids, small integers looked up for every QoS 1/2 message, with one
/// multiplication (Fibonacci hashing) instead of SipHash. The maps it serves are bounded by the
/// in-flight window and the receive maximum, so a client choosing colliding ids gains nothing.
#[derive(Default)]
struct PacketIdHasher(u64);

impl Hasher for PacketIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Reasons that blame the client's packets (as opposed to time-outs, takeovers and shutdown).
fn is_client_fault(code: ReasonCode) -> bool {
    code.is_error()
        && ![
            ReasonCode::SERVER_SHUTTING_DOWN,
            ReasonCode::SESSION_TAKEN_OVER,
            ReasonCode::KEEP_ALIVE_TIMEOUT,
        ]
        .contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<C, F: Future>(_: fn(C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A guard on what an idle connection costs (see the module's comment and BENCHMARKS.md):
    /// a task is tokio's header and trailer (104 bytes with the task tracker's token) around
    /// the future, rounded up to 128 bytes, so a future of at most 280 bytes keeps a plain
    /// connection's task at 384. A field added to `Connection` that breaks this costs every
    /// idle client 128 bytes; box it, or put it in `Traffic` if it only matters while
    /// messages flow.
    #[test]
    fn a_plain_connections_task_stays_within_384_bytes() {
        let size = future_size(Connection::<tokio::net::TcpStream>::serve);
        assert!(
            size <= 280,
            "the connection task's future is {size} bytes, more than 280"
        );
    }
}
