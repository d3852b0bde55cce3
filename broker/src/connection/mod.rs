//! One task per network connection: the CONNECT handshake, then a loop that reads packets,
//! writes deliveries and watches the keep alive, and finally hands the session back to the router.
//!
//! The task owns all per-connection protocol state (packet ids, in-flight window, topic aliases,
//! QoS 2 ids). Acknowledgements for the client's own publishes are written by this task, after the
//! router has accepted the messages, so a client that stops reading slows only itself.

mod handshake;
mod incoming;
mod outgoing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::debug;

use crate::auth::Principal;
use crate::codec::{self, Disconnect, Packet, Properties, Protocol, ReasonCode, Will};
use crate::context::Context;
use crate::message::{Delivery, Message, MessageProperties, SessionKey};
use crate::metrics::{LocalTally, Metrics};
use crate::queue::{Next, QueueRx, Signals};
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
/// A client that does not take our bytes for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is on the other end of a connection, as the transport knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub address: Option<SocketAddr>,
    /// Common name of a verified client certificate (mutual TLS).
    pub certificate_name: Option<String>,
}

/// Serves one client until it goes away, then hands its session back to the router.
///
/// Everything awaited here lives in the connection's task for as long as the connection does,
/// and idle connections may stay for days; so the handshake is boxed (it owns the stream, the
/// peer and the CONNECT until it hands over the finished [`Connection`]) and so are the other
/// rare paths, and the task keeps only the connection and what an idle one waits on.
/// `slot` is the connection's place under `max_connections`, held until it ends; it is taken
/// here rather than by a wrapping future, which would keep the stream twice.
pub(crate) fn serve<S>(
    stream: S,
    peer: Peer,
    ctx: Arc<Context>,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let handshake = Box::pin({
        let ctx = ctx.clone();
        async move {
            let mut stream = stream;
            let mut rbuf = BytesMut::with_capacity(MIN_READ);
            let accepted = handshake::accept(&mut stream, &mut rbuf, &peer, &ctx).await?;
            // Boxed: the task's future would otherwise hold it more than once (as the
            // handshake's result and as the running connection).
            Some(Box::new(Connection::new(stream, rbuf, accepted, ctx)))
        }
    });
    serve_accepted(handshake, ctx, slot)
}

async fn serve_accepted<S>(
    handshake: Pin<Box<impl Future<Output = Option<Box<Connection<S>>>> + Send>>,
    ctx: Arc<Context>,
    _slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    Metrics::add(&ctx.metrics.connections_current, 1);
    Metrics::add(&ctx.metrics.connections_total, 1);
    let connection = tokio::select! {
        connection = handshake => connection,
        _ = ctx.shutdown.cancelled() => None,
    };
    if let Some(mut connection) = connection {
        let end = connection.run().await;
        Box::pin(connection.finish(end)).await;
    }
    ctx.metrics
        .connections_current
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
    pub client_max_packet_size: usize,
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
    rbuf: BytesMut,
    read_size: usize,
    wbuf: BytesMut,
    protocol: Protocol,
    client_id: ByteString,
    principal: Principal,
    /// The principal may read every topic: deliveries need no check (asked again on changes).
    receives_everything: bool,
    session: SessionKey,
    keep_alive: Option<Duration>,
    will: Option<Box<Will>>,
    session_expiry: u32,
    tally: LocalTally,
    /// Messages accepted from the client, sent to the router in one event per read.
    accepted: Vec<Arc<Message>>,
    // Incoming (client to broker) state.
    qos2_incoming: HashSet<u16, BuildHasherDefault<PacketIdHasher>>,
    aliases_in: HashMap<u16, ByteString>,
    // Outgoing (broker to client) state.
    rx: QueueRx,
    inflight: HashMap<u16, (u64, Inflight), BuildHasherDefault<PacketIdHasher>>,
    send_seq: u64,
    next_packet_id: u16,
    send_quota: usize,
    backlog: VecDeque<Delivery>,
    aliases_out: HashMap<ByteString, u16>,
    client_max_packet_size: usize,
    client_topic_alias_maximum: u16,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(stream: S, rbuf: BytesMut, a: Accepted, ctx: Arc<Context>) -> Connection<S> {
        let send_quota = usize::from(a.client_receive_maximum.min(ctx.config.max_inflight));
        let receives_everything = ctx.auth.may_receive_everything(&a.principal);
        let mut connection = Connection {
            stream,
            rbuf,
            read_size: MIN_READ,
            wbuf: BytesMut::new(),
            protocol: a.protocol,
            client_id: a.client_id,
            principal: a.principal,
            receives_everything,
            session: a.session,
            keep_alive: (a.keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(a.keep_alive) * 1500)),
            will: a.will,
            session_expiry: a.session_expiry,
            tally: LocalTally::default(),
            accepted: Vec::new(),
            qos2_incoming: a.resumed.qos2_incoming.into_iter().collect(),
            aliases_in: HashMap::new(),
            rx: a.rx,
            inflight: HashMap::default(),
            send_seq: 0,
            next_packet_id: 1,
            send_quota: send_quota.max(1),
            backlog: a.resumed.backlog,
            aliases_out: HashMap::new(),
            client_max_packet_size: a.client_max_packet_size,
            client_topic_alias_maximum: a.client_topic_alias_maximum,
            ctx,
        };
        connection.resend_inflight(a.resumed.inflight);
        connection.drain_backlog();
        connection
    }

    async fn run(&mut self) -> End {
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
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
            if self.wbuf.is_empty() {
                // Deliveries may all have been dropped (denied, too large): count them now.
                self.tally.flush(&self.ctx.metrics);
            } else if let Err(end) = Box::pin(self.flush()).await {
                return end;
            }
            // Checked on every turn, not only when the queue is polled: a client whose reads are
            // always ready would otherwise never hear that it was taken over.
            if let Some(signals) = self.rx.take_signals()
                && let Err(end) = self.on_signals(signals)
            {
                return end;
            }
            let can_pull = self.backlog.is_empty() && self.inflight.len() < self.send_quota;
            self.prepare_read_buffer();
            // Everything awaited here lives in the connection's task for as long as it is idle,
            // so rare work (handling input, writing out) is boxed and allocated only while it
            // runs; what stays is the socket read, the queue (which also carries the router's
            // signals: takeover, shutdown, users changed) and the keep-alive timer.
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.rbuf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return End::Closed,
                        Ok(n) => n,
                    };
                    self.tally.bytes_received += n as u64;
                    self.adapt_read_size(n);
                    deadline = self.keep_alive.map(|k| Instant::now() + k);
                    if let Err(end) = Box::pin(self.process_input()).await {
                        return end;
                    }
                    // One read's worth of messages per turn: a publisher that always has data
                    // waiting would otherwise keep the worker (within tokio's budget) while the
                    // consumers it feeds, whose queues are bounded, wait and overflow.
                    tokio::task::yield_now().await;
                }
                next = self.rx.next(can_pull) => {
                    let delivery = match next {
                        Next::Delivery(delivery) => delivery,
                        Next::Signal(signals) => match self.on_signals(signals) {
                            Ok(()) => continue,
                            Err(end) => return end,
                        },
                        // The sender lives in the router's session table; it never closes first.
                        Next::Closed => return End::Server(ReasonCode::SERVER_SHUTTING_DOWN),
                    };
                    self.send_or_queue(delivery);
                    while self.wbuf.len() < WRITE_BATCH {
                        if !self.backlog.is_empty() || self.inflight.len() >= self.send_quota {
                            break;
                        }
                        match self.rx.try_recv() {
                            Some(delivery) => self.send_or_queue(delivery),
                            None => break,
                        }
                    }
                }
                _ = sleep_until_opt(deadline) => return End::Server(ReasonCode::KEEP_ALIVE_TIMEOUT),
            }
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
        self.tally.flush(&self.ctx.metrics);
        Ok(())
    }

    /// Hands the messages accepted so far to the router, before their acknowledgements go out.
    async fn forward_accepted(&mut self) -> Result<(), End> {
        if self.accepted.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.accepted);
        self.ctx
            .router
            .send(Event::Publish(batch))
            .await
            .map_err(|_| End::Server(ReasonCode::SERVER_SHUTTING_DOWN))
    }

    /// Makes room for the next read. A client that is not streaming holds no buffer while it
    /// waits: the read then takes a small one (64 bytes, `BytesMut`'s least) that grows if the
    /// client starts sending more.
    fn prepare_read_buffer(&mut self) {
        if self.rbuf.is_empty() && self.read_size == MIN_READ {
            if self.rbuf.capacity() > 0 {
                self.rbuf = BytesMut::new();
            }
        } else if self.rbuf.capacity() - self.rbuf.len() < MIN_READ / 2 {
            self.rbuf.reserve(self.read_size);
        }
    }

    /// Doubles the read size while reads fill the buffer, and halves it again when they use
    /// little of it, so a publisher that streams reads big and an idle client goes back to none.
    fn adapt_read_size(&mut self, read: usize) {
        if self.rbuf.capacity() == self.rbuf.len() && self.read_size < MAX_READ {
            self.read_size *= 2;
        } else if read < self.read_size / 4 && self.read_size > MIN_READ {
            self.read_size /= 2;
        }
    }

    /// Writes out whatever is buffered.
    async fn flush(&mut self) -> Result<(), End> {
        let write = async {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await
        };
        let result = tokio::select! {
            result = tokio::time::timeout(WRITE_TIMEOUT, write) => result,
            _ = self.ctx.shutdown.cancelled() => return Err(End::Closed),
        };
        match result {
            Ok(Ok(())) => {
                self.tally.bytes_sent += self.wbuf.len() as u64;
                self.wbuf.clear();
                // Do not let one burst pin a large buffer for the life of the connection.
                if self.wbuf.capacity() > 2 * WRITE_BATCH {
                    self.wbuf = BytesMut::new();
                }
                self.tally.flush(&self.ctx.metrics);
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(End::Closed),
        }
    }

    fn write_packet(&mut self, packet: &Packet) {
        codec::encode(packet, self.protocol, &mut self.wbuf);
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
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = self.stream.write_all(&self.wbuf).await;
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
        self.tally.flush(&self.ctx.metrics);
    }

    fn take_state(&mut self) -> SessionState {
        let mut inflight: Vec<(u64, u16, Inflight)> = self
            .inflight
            .drain()
            .map(|(id, (seq, f))| (seq, id, f))
            .collect();
        inflight.sort_unstable_by_key(|(seq, _, _)| *seq);
        SessionState {
            inflight: inflight.into_iter().map(|(_, id, f)| (id, f)).collect(),
            backlog: std::mem::take(&mut self.backlog),
            qos2_incoming: self.qos2_incoming.drain().collect(),
        }
    }
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
