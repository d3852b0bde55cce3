//! The load generator: lean MQTT 3.1.1 clients on the broker crate's codec, so every broker is
//! driven by exactly the same code and the generator itself stays cheap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use broker::codec::{
    self, Ack, Connect, Packet, Properties, Protocol, Publish, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub const PAYLOAD: usize = 100;
/// Unacknowledged QoS 1 messages per publisher.
pub const WINDOW: usize = 100;

fn encode(packet: &Packet, buf: &mut BytesMut) {
    codec::encode(packet, Protocol::V311, buf);
}

/// The user `broker --login` runs every client as (Ironbridge's first admin).
pub const BENCH_USER: &str = "admin";
pub const BENCH_PASSWORD: &str = "bench-password-1";

/// Credentials every client of [`connect`] presents; unset, they connect anonymously. Set once
/// at start by `broker --login`, so every scenario's clients are alike.
static LOGIN: std::sync::OnceLock<(&'static str, &'static str)> = std::sync::OnceLock::new();

pub fn log_in_as(user: &'static str, password: &'static str) {
    let _ = LOGIN.set((user, password));
}

/// Opens a connection and completes CONNECT/CONNACK (anonymously, or as [`log_in_as`] said).
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    connect_as(addr, client_id, keep_alive, LOGIN.get().copied()).await
}

/// Opens a connection and completes CONNECT/CONNACK with a user name and password.
pub async fn connect_as(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            clean_start: true,
            keep_alive,
            properties: Properties::default(),
            client_id: client_id.into(),
            will: None,
            username: credentials.map(|(user, _)| user.into()),
            password: credentials
                .map(|(_, password)| bytes::Bytes::copy_from_slice(password.as_bytes())),
        })),
        &mut buf,
    );
    wr.write_all(&buf).await?;
    let mut rbuf = BytesMut::with_capacity(4096);
    match read_packet(&mut rd, &mut rbuf).await? {
        Packet::ConnAck(ack) if ack.code == ReasonCode::SUCCESS => Ok((rd, wr, rbuf)),
        other => bail!("connect refused: {other:?}"),
    }
}

async fn read_packet(rd: &mut OwnedReadHalf, rbuf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        if let Some(p) = codec::decode(rbuf, Protocol::V311, usize::MAX)? {
            return Ok(p);
        }
        if rd.read_buf(rbuf).await? == 0 {
            bail!("connection closed");
        }
    }
}

/// Called with each received payload, for latency measurement.
pub type OnMessage = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// One measuring subscriber.
pub struct Subscriber {
    pub addr: SocketAddr,
    pub id: String,
    pub topic: String,
    pub qos: QoS,
    /// Messages received, added to per read.
    pub received: Arc<AtomicU64>,
    /// Incremented once the SUBACK arrived.
    pub ready: Arc<AtomicU64>,
    pub on_message: Option<OnMessage>,
}

/// Runs a subscriber until `stop`, counting what it receives and acknowledging QoS 1.
pub async fn subscriber(spec: Subscriber, stop: CancellationToken) -> anyhow::Result<()> {
    let Subscriber {
        addr,
        id,
        topic,
        qos,
        received,
        ready,
        on_message,
    } = spec;
    let (mut rd, mut wr, mut rbuf) = connect(addr, &id, 600).await?;
    let mut out = BytesMut::new();
    encode(
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                topic.as_str().into(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
        }),
        &mut out,
    );
    wr.write_all(&out).await?;
    match read_packet(&mut rd, &mut rbuf).await? {
        Packet::SubAck(_) => {}
        other => bail!("expected SUBACK, got {other:?}"),
    }
    ready.fetch_add(1, Ordering::Relaxed);
    loop {
        rbuf.reserve(64 * 1024);
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = rd.read_buf(&mut rbuf) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        out.clear();
        let mut count = 0;
        while let Some(packet) = codec::decode(&mut rbuf, Protocol::V311, usize::MAX)? {
            if let Packet::Publish(p) = packet {
                count += 1;
                if let Some(f) = &on_message {
                    f(&p.payload);
                }
                if p.qos == QoS::AtLeastOnce {
                    encode(
                        &Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)),
                        &mut out,
                    );
                }
            }
        }
        received.fetch_add(count, Ordering::Relaxed);
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
    }
}

/// How a publisher paces itself.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the broker takes them (QoS 1: within the in-flight window).
    Flat,
    /// A fixed rate in messages per second, for latency.
    Rate(u64),
}

/// Publishes 100-byte messages until `stop`. The first 8 bytes carry the send time in
/// nanoseconds since `epoch`, for latency measurement.
pub async fn publisher(
    addr: SocketAddr,
    id: String,
    topic: String,
    qos: QoS,
    pace: Pace,
    epoch: Instant,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let (mut rd, mut wr, mut rbuf) = connect(addr, &id, 600).await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    if qos == QoS::AtLeastOnce {
        let window = window.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                rbuf.reserve(16 * 1024);
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = rd.read_buf(&mut rbuf) => n,
                };
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
                let mut acks = 0;
                while let Ok(Some(packet)) = codec::decode(&mut rbuf, Protocol::V311, usize::MAX) {
                    if let Packet::PubAck(_) = packet {
                        acks += 1;
                    }
                }
                window.add_permits(acks);
            }
        });
    }
    let topic = ByteString::from(topic);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut packet_id: u16 = 0;
    let mut sent = 0u64;
    let started = Instant::now();
    loop {
        if stop.is_cancelled() {
            break;
        }
        let batch = match pace {
            Pace::Flat => 64,
            Pace::Rate(rate) => {
                // Send what is due now, one message at a time, then sleep a little.
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                if due <= sent {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                    continue;
                }
                (due - sent).min(64) as usize
            }
        };
        let mut n = batch;
        if qos == QoS::AtLeastOnce {
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                permit = window.acquire() => permit.context("window closed")?,
            };
            first.forget();
            n = 1;
            while n < batch {
                match window.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        out.clear();
        for _ in 0..n {
            let mut payload = vec![0u8; PAYLOAD];
            let now = epoch.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now.to_le_bytes());
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
                properties: Properties::default(),
                payload: Bytes::from(payload),
            };
            codec::encode_publish((&publish).into(), false, &mut out);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            r = wr.write_all(&out) => r?,
        }
        sent += n as u64;
    }
    Ok(sent)
}

/// Opens `count` idle connections (client ids `idle-{first_id}` on) and keeps them until `stop`;
/// returns how many succeeded.
pub async fn idle_connections(
    addr: SocketAddr,
    first_id: usize,
    count: usize,
    stop: CancellationToken,
) -> usize {
    let connected = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(count);
    for i in first_id..first_id + count {
        let connected = connected.clone();
        let gate = gate.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let conn = connect(addr, &format!("idle-{i}"), 600).await;
            drop(permit);
            if let Ok(conn) = conn {
                connected.fetch_add(1, Ordering::Relaxed);
                stop.cancelled().await;
                drop(conn);
            }
        }));
    }
    // Wait until every attempt finished connecting (or failed).
    let deadline = Instant::now() + Duration::from_secs(120);
    while gate.available_permits() < 256 || (connected.load(Ordering::Relaxed) as usize) < count {
        if Instant::now() > deadline || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tasks.iter().filter(|t| !t.is_finished()).count()
            == connected.load(Ordering::Relaxed) as usize
        {
            break;
        }
    }
    connected.load(Ordering::Relaxed) as usize
}
