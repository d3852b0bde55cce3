//! Shared test helpers: a broker on a free port with its own data directory, and a raw MQTT
//! client built on the broker's codec for flows that need byte-level control.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::codec::{
    self, Ack, ConnAck, Connect, Packet, Properties, Protocol, Publish, QoS, Subscribe,
    SubscriptionOptions, Will,
};
use broker::{AnonymousOnly, AuthHook, Broker, BrokerConfig};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub broker: Option<Broker>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: BrokerConfig,
}

pub fn config() -> BrokerConfig {
    BrokerConfig {
        sys_interval_secs: 1,
        allow_anonymous: true,
        ..BrokerConfig::default()
    }
}

impl TestBroker {
    pub async fn start(config: BrokerConfig) -> TestBroker {
        let allow = config.allow_anonymous;
        TestBroker::start_with_auth(
            config,
            Arc::new(AnonymousOnly {
                allow_anonymous: allow,
            }),
        )
        .await
    }

    pub async fn start_with_auth(mut config: BrokerConfig, auth: Arc<dyn AuthHook>) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        config.persistence_dir = Some(dir.path().join("broker"));
        let broker = Broker::start(config.clone(), auth).unwrap();
        let addr = broker
            .listen_tcp("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        TestBroker {
            broker: Some(broker),
            addr,
            dir,
            config,
        }
    }

    /// Stops the broker gracefully and starts a new one on the same data directory and port.
    pub async fn restart(&mut self) {
        self.broker.take().unwrap().shutdown().await;
        let broker = Broker::start(
            self.config.clone(),
            Arc::new(AnonymousOnly {
                allow_anonymous: true,
            }),
        )
        .unwrap();
        self.addr = broker.listen_tcp(self.addr).await.unwrap();
        self.broker = Some(broker);
    }

    pub fn handle(&self) -> broker::BrokerHandle {
        self.broker.as_ref().unwrap().handle()
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
    }
}

/// A raw MQTT client: sends exactly the packets a test gives it.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub protocol: Protocol,
}

pub fn connect_packet(protocol: Protocol, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol,
        clean_start: clean,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

pub fn will(topic: &str, payload: &'static [u8], delay: Option<u32>) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties {
            will_delay_interval: delay,
            ..Properties::default()
        },
    }
}

impl Raw {
    pub async fn open(addr: SocketAddr, protocol: Protocol) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            protocol,
        }
    }

    /// Connects and returns the CONNACK, asserting success.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let (raw, ack) = Raw::try_connect(addr, connect).await;
        assert_eq!(ack.code, broker::ReasonCode::SUCCESS, "CONNACK {ack:?}");
        (raw, ack)
    }

    pub async fn try_connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr, connect.protocol).await;
        raw.send(&Packet::Connect(Box::new(connect))).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn v311(addr: SocketAddr, client_id: &str) -> Raw {
        Raw::connect(addr, connect_packet(Protocol::V311, client_id, true))
            .await
            .0
    }

    pub async fn v5(addr: SocketAddr, client_id: &str) -> Raw {
        Raw::connect(addr, connect_packet(Protocol::V5, client_id, true))
            .await
            .0
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        codec::encode(packet, self.protocol, &mut out);
        self.send_bytes(&out).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next packet; panics after [`WAIT`] or if the connection closes.
    pub async fn recv(&mut self) -> Packet {
        match self.recv_within(WAIT).await {
            Ok(Some(p)) => p,
            Ok(None) => panic!("connection closed while waiting for a packet"),
            Err(()) => panic!("no packet within {WAIT:?}"),
        }
    }

    /// `Ok(None)` when the broker closed the connection, `Err(())` on time-out.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Packet>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(packet) = codec::decode(&mut self.buf, self.protocol, usize::MAX)
                .expect("broker sent a valid packet")
            {
                return Ok(Some(packet));
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Asserts nothing arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(p) = self.recv_within(wait).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Asserts the broker closes the connection, returning the DISCONNECT it sent first, if any.
    pub async fn expect_close(&mut self) -> Option<broker::codec::Disconnect> {
        let mut disconnect = None;
        loop {
            match self.recv_within(WAIT).await {
                Ok(Some(Packet::Disconnect(d))) => disconnect = Some(d),
                Ok(Some(_)) => {}
                Ok(None) => return disconnect,
                Err(()) => panic!("connection not closed within {WAIT:?}"),
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<broker::ReasonCode> {
        self.subscribe_with(
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
            None,
        )
        .await
    }

    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Vec<broker::ReasonCode> {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties {
                subscription_identifiers: id.into_iter().collect(),
                ..Properties::default()
            },
            filters: vec![(filter.into(), options)],
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(ack) => ack.codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
        retain: bool,
        packet_id: u16,
    ) {
        self.send(&Packet::Publish(publish(
            topic, payload, qos, retain, packet_id,
        )))
        .await;
    }

    /// Publishes and completes the QoS flow as a well-behaved client.
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        payload: &'static [u8],
        qos: QoS,
        retain: bool,
    ) {
        self.publish(topic, payload, qos, retain, 1).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv().await, Packet::PubAck(_))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv().await, Packet::PubRec(_)));
                self.send(&Packet::PubRel(Ack::new(1, broker::ReasonCode::SUCCESS)))
                    .await;
                assert!(matches!(self.recv().await, Packet::PubComp(_)));
            }
        }
    }

    /// The next PUBLISH, skipping nothing: anything else is a failure.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default())).await;
        let _ = self.stream.shutdown().await;
    }
}

pub fn publish(
    topic: &str,
    payload: &'static [u8],
    qos: QoS,
    retain: bool,
    packet_id: u16,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}
