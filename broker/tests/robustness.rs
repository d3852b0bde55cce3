//! Bad input, limits, authorisation, persistence across restarts and the in-process link.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::codec::{Packet, Protocol, QoS, ReasonCode};
use broker::{AuthHook, BrokerConfig, Credentials, Message, Principal};
use common::*;

/// CONNECT for 3.1.1 / 5.0 with client id "m", as raw bytes.
const CONNECT_V311: &[u8] = &[
    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'm',
];
const CONNECT_V5: &[u8] = &[
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 1, b'm',
];

#[tokio::test]
async fn malformed_packets_close_the_connection_with_the_right_reason() {
    let b = TestBroker::start(config()).await;
    // Each row: bytes sent after a successful CONNECT, and the reason an MQTT 5 client is given.
    let cases: &[(&str, &[u8], ReasonCode)] = &[
        (
            "remaining length of five bytes",
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "reserved flags on PINGREQ",
            &[0xC1, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "wildcard in a PUBLISH topic",
            &[0x30, 0x04, 0, 2, b'a', b'+'],
            ReasonCode::TOPIC_NAME_INVALID,
        ),
        (
            "invalid UTF-8 topic",
            &[0x30, 0x05, 0, 2, 0xC3, 0x28, 0],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "truncated topic length",
            &[0x30, 0x03, 0, 9, b'a'],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "QoS 3 PUBLISH",
            &[0x36, 0x06, 0, 1, b'a', 0, 1, 0],
            ReasonCode::MALFORMED_PACKET,
        ),
        ("second CONNECT", CONNECT_V5, ReasonCode::PROTOCOL_ERROR),
        (
            "reserved packet type",
            &[0x00, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "SUBSCRIBE without filters",
            &[0x82, 0x03, 0, 1, 0],
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "packet over the maximum size",
            &[0x30, 0xFF, 0xFF, 0xFF, 0x7F],
            ReasonCode::PACKET_TOO_LARGE,
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut v5 = Raw::open(b.addr, Protocol::V5).await;
        v5.send_bytes(CONNECT_V5).await;
        assert!(matches!(v5.recv().await, Packet::ConnAck(_)));
        v5.send_bytes(bytes).await;
        let disconnect = v5.expect_close().await;
        assert_eq!(disconnect.map(|d| d.code), Some(*expected), "v5: {what}");

        let mut v3 = Raw::open(b.addr, Protocol::V311).await;
        v3.send_bytes(CONNECT_V311).await;
        assert!(matches!(v3.recv().await, Packet::ConnAck(_)));
        v3.send_bytes(bytes).await;
        assert!(
            v3.expect_close().await.is_none(),
            "3.1.1 is closed without DISCONNECT: {what}"
        );
    }
    // After all that the broker still serves clients.
    let mut ok = Raw::v5(b.addr, "still-alive").await;
    ok.subscribe("a", QoS::AtMostOnce).await;
    assert!(b.handle().metrics().protocol_errors.load(Ordering::Relaxed) >= cases.len() as u64 * 2);
    b.stop().await;
}

#[tokio::test]
async fn bad_first_packets_are_refused() {
    let b = TestBroker::start(config()).await;
    // Unknown protocol level: CONNACK 0x01 (3.1.1 form), then close.
    let mut c = Raw::open(b.addr, Protocol::V311).await;
    c.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 1, b'm',
    ])
    .await;
    match c.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    // A PUBLISH before CONNECT, and plain garbage, are closed without an answer.
    for bytes in [&[0x30u8, 0x03, 0, 1, b'a'][..], b"GET / HTTP/1.1\r\n\r\n"] {
        let mut c = Raw::open(b.addr, Protocol::V311).await;
        c.send_bytes(bytes).await;
        assert!(c.expect_close().await.is_none());
    }
    b.stop().await;
}

#[tokio::test]
async fn silent_sockets_are_closed_after_the_connect_timeout() {
    let b = TestBroker::start(BrokerConfig {
        connect_timeout_secs: 1,
        ..config()
    })
    .await;
    let mut c = Raw::open(b.addr, Protocol::V311).await;
    assert!(c.expect_close().await.is_none());
    b.stop().await;
}

#[tokio::test]
async fn connection_limit_refuses_extra_clients() {
    let b = TestBroker::start(BrokerConfig {
        max_connections: 2,
        ..config()
    })
    .await;
    let _one = Raw::v311(b.addr, "one").await;
    let _two = Raw::v311(b.addr, "two").await;
    let mut three = Raw::open(b.addr, Protocol::V311).await;
    three.send_bytes(CONNECT_V311).await;
    assert!(three.expect_close().await.is_none());
    assert_eq!(
        b.handle()
            .metrics()
            .connections_refused
            .load(Ordering::Relaxed),
        1
    );
    b.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_loses_its_own_messages_and_nobody_else_waits() {
    let b = TestBroker::start(BrokerConfig {
        max_queued_messages: 10,
        ..config()
    })
    .await;
    let mut slow = Raw::v311(b.addr, "slow").await;
    slow.subscribe("fire/#", QoS::AtMostOnce).await;
    // Stop reading: the kernel buffers fill, then the session queue, then messages are dropped.
    let mut fast = Raw::v311(b.addr, "fast").await;
    fast.subscribe("fire/#", QoS::AtMostOnce).await;
    let mut publ = Raw::v311(b.addr, "hose").await;
    let payload: &'static [u8] = &[b'x'; 1000];
    // 5 MB for the slow consumer: more than its socket buffers and its queue of 10 can hold.
    // Batches of 5 stay within the fast consumer's queue, so every loss is the slow one's.
    for batch in 0..1000 {
        for _ in 0..5 {
            publ.publish("fire/hose", payload, QoS::AtMostOnce, false, 0)
                .await;
        }
        for i in 0..5 {
            match fast.recv_within(Duration::from_secs(5)).await {
                Ok(Some(Packet::Publish(_))) => {}
                other => panic!("fast consumer stalled in batch {batch} at {i}: {other:?}"),
            }
        }
    }
    assert!(
        b.handle()
            .metrics()
            .messages_dropped
            .load(Ordering::Relaxed)
            > 0,
        "the slow one's overflow is counted"
    );
    drop(slow);
    b.stop().await;
}

/// Allows publishing only below `open/` and subscribing only below `open/`; user `bad` fails.
struct TestAuth;

impl AuthHook for TestAuth {
    fn authenticate<'a>(&'a self, c: &'a Credentials) -> broker::auth::AuthFuture<'a> {
        Box::pin(async move {
            match (c.username.as_deref(), c.password.as_deref()) {
                (Some("line"), Some(b"secret")) => Ok(Principal::user("line", "line", 0)),
                (Some(_), _) => Err(ReasonCode::BAD_USERNAME_OR_PASSWORD),
                (None, _) => Err(ReasonCode::NOT_AUTHORIZED),
            }
        })
    }
    fn authorize_publish(&self, _p: &Principal, topic: &str) -> bool {
        topic.starts_with("open/")
    }
    fn authorize_subscribe(&self, _p: &Principal, filter: &str) -> bool {
        filter.starts_with("open/")
    }
}

fn login(
    protocol: Protocol,
    id: &str,
    user: &str,
    password: &'static [u8],
) -> broker::codec::Connect {
    let mut c = connect_packet(protocol, id, true);
    c.username = Some(user.into());
    c.password = Some(bytes::Bytes::from_static(password));
    c
}

#[tokio::test]
async fn the_auth_hook_decides_connect_publish_subscribe_and_will() {
    let b = TestBroker::start_with_auth(config(), Arc::new(TestAuth)).await;
    for protocol in [Protocol::V311, Protocol::V5] {
        let (_c, ack) = Raw::try_connect(b.addr, login(protocol, "x", "line", b"wrong")).await;
        assert_eq!(
            ack.code,
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            "{protocol:?}"
        );
        let (_c, ack) = Raw::try_connect(b.addr, connect_packet(protocol, "anon", true)).await;
        assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED, "{protocol:?}");
        let mut with_will = login(protocol, "w", "line", b"secret");
        with_will.will = Some(will("closed/will", b"x", None));
        let (_c, ack) = Raw::try_connect(b.addr, with_will).await;
        assert_eq!(
            ack.code,
            ReasonCode::NOT_AUTHORIZED,
            "will topic is checked: {protocol:?}"
        );
    }

    let (mut v5, _) = Raw::connect(b.addr, login(Protocol::V5, "v5", "line", b"secret")).await;
    assert_eq!(
        v5.subscribe("closed/#", QoS::AtLeastOnce).await,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        v5.subscribe("open/#", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    v5.publish("closed/x", b"no", QoS::AtLeastOnce, false, 5)
        .await;
    assert_eq!(
        v5.recv().await,
        Packet::PubAck(broker::codec::Ack::new(5, ReasonCode::NOT_AUTHORIZED))
    );

    let (mut v3, _) = Raw::connect(b.addr, login(Protocol::V311, "v3", "line", b"secret")).await;
    let codes = v3.subscribe("closed/#", QoS::AtLeastOnce).await;
    assert_eq!(codes, vec![ReasonCode(0x80)], "3.1.1 failure return code");
    v3.publish_acked("closed/x", b"dropped", QoS::AtLeastOnce, false)
        .await;
    v3.publish_acked("open/x", b"delivered", QoS::AtLeastOnce, false)
        .await;
    let got = v5.recv_publish().await;
    assert_eq!(
        &got.payload[..],
        b"delivered",
        "denied publishes are dropped"
    );
    assert_eq!(
        b.handle()
            .metrics()
            .publishes_denied
            .load(Ordering::Relaxed),
        4
    );
    b.stop().await;
}

#[tokio::test]
async fn anonymous_access_can_be_switched_off() {
    let b = TestBroker::start(BrokerConfig {
        allow_anonymous: false,
        ..config()
    })
    .await;
    let (_c, ack) = Raw::try_connect(b.addr, connect_packet(Protocol::V5, "anon", true)).await;
    assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED);
    b.stop().await;
}

#[tokio::test]
async fn retained_messages_and_sessions_survive_a_restart() {
    let mut b = TestBroker::start(config()).await;
    let mut publ = Raw::v311(b.addr, "p").await;
    publ.publish_acked("plant/line1/state", b"running", QoS::AtLeastOnce, true)
        .await;
    let mut connect = connect_packet(Protocol::V5, "historian", false);
    connect.properties.session_expiry_interval = Some(3600);
    let (mut sub, _) = Raw::connect(b.addr, connect.clone()).await;
    sub.subscribe_with(
        "plant/+/count",
        broker::codec::SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            retain_handling: 2,
            ..Default::default()
        },
        Some(5),
    )
    .await;
    sub.disconnect().await;
    publ.publish_acked("plant/line1/count", b"41", QoS::AtLeastOnce, false)
        .await;
    publ.publish_acked("plant/line1/count", b"42", QoS::ExactlyOnce, false)
        .await;
    drop(publ);
    tokio::time::sleep(Duration::from_millis(100)).await;

    b.restart().await;

    let (mut sub, ack) = Raw::connect(b.addr, connect).await;
    assert!(ack.session_present, "the session came back");
    for expected in [&b"41"[..], b"42"] {
        let got = sub.recv_publish().await;
        assert_eq!(&got.payload[..], expected, "queued messages in order");
        assert_eq!(got.properties.subscription_identifiers, vec![5]);
    }
    let mut fresh = Raw::v311(b.addr, "fresh").await;
    fresh.subscribe("plant/+/state", QoS::AtMostOnce).await;
    assert_eq!(
        &fresh.recv_publish().await.payload[..],
        b"running",
        "retained came back"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_corrupt_snapshot_is_set_aside_and_the_broker_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("broker");
    std::fs::create_dir_all(&store_dir).unwrap();
    std::fs::write(
        store_dir.join("broker.snapshot"),
        b"IBSNAP01\xff\xff\xff garbage",
    )
    .unwrap();
    let config = BrokerConfig {
        persistence_dir: Some(store_dir.clone()),
        ..config()
    };
    let broker = broker::Broker::start(
        config,
        Arc::new(broker::AnonymousOnly {
            allow_anonymous: true,
        }),
    )
    .unwrap();
    assert!(store_dir.join("broker.corrupt").exists());
    broker.shutdown().await;
}

#[tokio::test]
async fn in_process_clients_exchange_messages_with_network_clients() {
    let b = TestBroker::start(config()).await;
    let handle = b.handle();
    let mut local = handle.connect_local("ironbridge/test").await.unwrap();
    assert_eq!(
        local.subscribe("cmd/#", QoS::AtLeastOnce).await.unwrap(),
        ReasonCode::GRANTED_QOS_1
    );
    let mut net = Raw::v5(b.addr, "net").await;
    net.subscribe("data/#", QoS::AtLeastOnce).await;

    net.publish_acked("cmd/start", b"go", QoS::AtLeastOnce, false)
        .await;
    let got = tokio::time::timeout(WAIT, local.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&got.message.topic[..], &got.message.payload[..]),
        ("cmd/start", &b"go"[..])
    );

    local
        .publish(Message::new("data/temp", "21.5", QoS::AtLeastOnce, false))
        .await
        .unwrap();
    let got = net.recv_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..], got.qos),
        ("data/temp", &b"21.5"[..], QoS::AtLeastOnce)
    );

    assert!(
        local
            .publish(Message::new("bad/#", "x", QoS::AtMostOnce, false))
            .await
            .is_err()
    );
    assert!(local.subscribe("bad/#/x", QoS::AtMostOnce).await.is_err());
    local.disconnect().await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_tells_v5_clients_and_completes_quickly() {
    let b = TestBroker::start(config()).await;
    let mut c = Raw::v5(b.addr, "c").await;
    let started = std::time::Instant::now();
    let stopper = tokio::spawn(b.stop());
    assert_eq!(
        c.expect_close().await.unwrap().code,
        ReasonCode::SERVER_SHUTTING_DOWN
    );
    stopper.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_session_limit_counts_offline_sessions_too() {
    let b = TestBroker::start(BrokerConfig {
        max_sessions: 2,
        ..config()
    })
    .await;
    let (kept, _) = Raw::connect(b.addr, connect_packet(Protocol::V311, "kept", false)).await;
    kept.disconnect().await;
    let _online = Raw::v311(b.addr, "online").await;
    for protocol in [Protocol::V311, Protocol::V5] {
        let (_c, ack) = Raw::try_connect(b.addr, connect_packet(protocol, "third", true)).await;
        assert_eq!(
            ack.code.v311_connack(),
            0x03,
            "server unavailable in 3.1.1 terms: {protocol:?}"
        );
        if protocol == Protocol::V5 {
            assert_eq!(ack.code, ReasonCode::QUOTA_EXCEEDED);
        }
    }
    // Resuming an existing session needs no new one.
    let (_again, ack) = Raw::connect(b.addr, connect_packet(Protocol::V311, "kept", false)).await;
    assert!(ack.session_present);
    b.stop().await;
}
