//! Byte-level protocol behaviour: QoS flows and redelivery, keep alive, MQTT 5 flow control,
//! aliases, expiry, wills, takeover and malformed input. Each test documents one rule of the
//! standard with the scenario that exercises it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use broker::BrokerConfig;
use broker::codec::{
    self, Ack, Packet, Properties, Protocol, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use bytes::BytesMut;
use common::*;

#[tokio::test]
async fn connack_announces_limits_and_assigns_client_ids() {
    let b = TestBroker::start(config()).await;
    let (_c, ack) = Raw::connect(b.addr, connect_packet(Protocol::V5, "", true)).await;
    let p = &ack.properties;
    assert!(
        p.assigned_client_identifier
            .as_ref()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(p.receive_maximum, Some(b.config.receive_maximum));
    assert_eq!(p.topic_alias_maximum, Some(b.config.topic_alias_maximum));
    assert_eq!(p.maximum_packet_size, Some(b.config.max_packet_size));

    // 3.1.1: an empty client id needs a clean session (MQTT-3.1.3-8).
    let (_c, ack) = Raw::try_connect(b.addr, connect_packet(Protocol::V311, "", false)).await;
    assert_eq!(ack.code, ReasonCode::CLIENT_ID_NOT_VALID);
    let (_c, ack) = Raw::try_connect(b.addr, connect_packet(Protocol::V311, "", true)).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS);
    b.stop().await;
}

#[tokio::test]
async fn server_keep_alive_caps_what_v5_clients_ask_for() {
    let b = TestBroker::start(BrokerConfig {
        max_keep_alive: 60,
        ..config()
    })
    .await;
    let mut connect = connect_packet(Protocol::V5, "ka", true);
    connect.keep_alive = 0;
    let (_c, ack) = Raw::connect(b.addr, connect).await;
    assert_eq!(ack.properties.server_keep_alive, Some(60));
    b.stop().await;
}

#[tokio::test]
async fn keep_alive_timeout_closes_the_connection_and_publishes_the_will() {
    let b = TestBroker::start(config()).await;
    let mut watcher = Raw::v311(b.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut connect = connect_packet(Protocol::V5, "sleepy", true);
    connect.keep_alive = 1;
    connect.will = Some(will("wills/sleepy", b"gone", None));
    let (mut sleepy, _) = Raw::connect(b.addr, connect).await;
    let started = std::time::Instant::now();
    let disconnect = sleepy.expect_close().await.expect("v5 client is told why");
    assert_eq!(disconnect.code, ReasonCode::KEEP_ALIVE_TIMEOUT);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "1.5 x keep alive, not sooner"
    );
    let will = watcher.recv_publish().await;
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        ("wills/sleepy", &b"gone"[..])
    );
    b.stop().await;
}

#[tokio::test]
async fn qos2_is_routed_once_even_when_the_client_resends() {
    let b = TestBroker::start(config()).await;
    let mut sub = Raw::v311(b.addr, "sub").await;
    sub.subscribe("q2", QoS::ExactlyOnce).await;
    let mut publ = Raw::v311(b.addr, "pub").await;
    publ.publish("q2", b"once", QoS::ExactlyOnce, false, 7)
        .await;
    assert_eq!(
        publ.recv().await,
        Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))
    );
    // The client missed the PUBREC and resends with DUP.
    let mut again = publish("q2", b"once", QoS::ExactlyOnce, false, 7);
    again.dup = true;
    publ.send(&Packet::Publish(again)).await;
    assert_eq!(
        publ.recv().await,
        Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))
    );
    publ.send(&Packet::PubRel(Ack::new(7, ReasonCode::SUCCESS)))
        .await;
    assert_eq!(
        publ.recv().await,
        Packet::PubComp(Ack::new(7, ReasonCode::SUCCESS))
    );

    let got = sub.recv_publish().await;
    assert_eq!(
        (got.qos, &got.payload[..]),
        (QoS::ExactlyOnce, &b"once"[..])
    );
    sub.send(&Packet::PubRec(Ack::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    assert_eq!(
        sub.recv().await,
        Packet::PubRel(Ack::new(got.packet_id, ReasonCode::SUCCESS))
    );
    sub.send(&Packet::PubComp(Ack::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    sub.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_after_reconnect() {
    let b = TestBroker::start(config()).await;
    let (mut sub, _) = Raw::connect(b.addr, connect_packet(Protocol::V311, "durable", false)).await;
    sub.subscribe("work/#", QoS::ExactlyOnce).await;
    let mut publ = Raw::v311(b.addr, "producer").await;
    publ.publish_acked("work/1", b"one", QoS::AtLeastOnce, false)
        .await;
    publ.publish_acked("work/2", b"two", QoS::ExactlyOnce, false)
        .await;
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    assert!(!first.dup && !second.dup);
    // Acknowledge only the PUBREC of the QoS 2 message, then drop the connection.
    sub.send(&Packet::PubRec(Ack::new(
        second.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    assert!(matches!(sub.recv().await, Packet::PubRel(_)));
    drop(sub);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (mut sub, ack) =
        Raw::connect(b.addr, connect_packet(Protocol::V311, "durable", false)).await;
    assert!(ack.session_present);
    let resent = sub.recv_publish().await;
    assert!(resent.dup, "redelivery carries DUP (MQTT-3.3.1-1)");
    assert_eq!(
        (resent.packet_id, &resent.payload[..]),
        (first.packet_id, &b"one"[..])
    );
    assert_eq!(
        sub.recv().await,
        Packet::PubRel(Ack::new(second.packet_id, ReasonCode::SUCCESS))
    );
    b.stop().await;
}

#[tokio::test]
async fn offline_persistent_session_queues_qos1_but_not_qos0() {
    let b = TestBroker::start(config()).await;
    let (mut sub, _) = Raw::connect(b.addr, connect_packet(Protocol::V311, "offline", false)).await;
    sub.subscribe("plant/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut publ = Raw::v311(b.addr, "p").await;
    publ.publish_acked("plant/a", b"zero", QoS::AtMostOnce, false)
        .await;
    publ.publish_acked("plant/b", b"one", QoS::AtLeastOnce, false)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut sub, ack) =
        Raw::connect(b.addr, connect_packet(Protocol::V311, "offline", false)).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"one");
    sub.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

#[tokio::test]
async fn outgoing_window_honours_the_clients_receive_maximum() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "small-window", true);
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = Raw::connect(b.addr, connect).await;
    sub.subscribe("flow", QoS::AtLeastOnce).await;
    let mut publ = Raw::v5(b.addr, "p").await;
    for _ in 0..4 {
        publ.publish_acked("flow", b"x", QoS::AtLeastOnce, false)
            .await;
    }
    let a = sub.recv_publish().await;
    let _b = sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.send(&Packet::PubAck(Ack::new(a.packet_id, ReasonCode::SUCCESS)))
        .await;
    sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

#[tokio::test]
async fn too_many_unreleased_qos2_messages_exceed_the_receive_maximum() {
    let b = TestBroker::start(BrokerConfig {
        receive_maximum: 2,
        ..config()
    })
    .await;
    let mut c = Raw::v5(b.addr, "greedy").await;
    for id in 1..=3 {
        c.publish("q", b"x", QoS::ExactlyOnce, false, id).await;
    }
    let d = c.expect_close().await.expect("DISCONNECT");
    assert_eq!(d.code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    b.stop().await;
}

#[tokio::test]
async fn client_maximum_packet_size_drops_larger_messages() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "tiny", true);
    connect.properties.maximum_packet_size = Some(40);
    let (mut sub, _) = Raw::connect(b.addr, connect).await;
    sub.subscribe("m", QoS::AtMostOnce).await;
    let mut publ = Raw::v5(b.addr, "p").await;
    publ.publish_acked("m", &[b'x'; 100], QoS::AtMostOnce, false)
        .await;
    publ.publish_acked("m", b"small", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"small");
    b.stop().await;
}

#[tokio::test]
async fn topic_aliases_work_in_both_directions() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "aliased", true);
    connect.properties.topic_alias_maximum = Some(4);
    let (mut sub, _) = Raw::connect(b.addr, connect).await;
    sub.subscribe("line/#", QoS::AtMostOnce).await;
    let mut publ = Raw::v5(b.addr, "p").await;
    // Client to broker: bind alias 1, then publish with an empty topic.
    let mut first = publish("line/speed", b"1", QoS::AtMostOnce, false, 0);
    first.properties.topic_alias = Some(1);
    publ.send(&Packet::Publish(first)).await;
    let mut second = publish("", b"2", QoS::AtMostOnce, false, 0);
    second.properties.topic_alias = Some(1);
    publ.send(&Packet::Publish(second)).await;
    // Broker to client: the first carries the topic and an alias, the second only the alias.
    let a = sub.recv_publish().await;
    assert_eq!(&a.topic[..], "line/speed");
    let alias = a.properties.topic_alias.expect("broker assigns an alias");
    let b2 = sub.recv_publish().await;
    assert_eq!(
        (&b2.topic[..], b2.properties.topic_alias, &b2.payload[..]),
        ("", Some(alias), &b"2"[..])
    );

    // An alias above the announced maximum is a protocol error.
    let mut bad = publish("x", b"", QoS::AtMostOnce, false, 0);
    bad.properties.topic_alias = Some(b.config.topic_alias_maximum + 1);
    publ.send(&Packet::Publish(bad)).await;
    assert_eq!(
        publ.expect_close().await.unwrap().code,
        ReasonCode::TOPIC_ALIAS_INVALID
    );
    b.stop().await;
}

#[tokio::test]
async fn message_expiry_drops_stale_messages_and_counts_down() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "late", false);
    connect.properties.session_expiry_interval = Some(60);
    let (mut sub, _) = Raw::connect(b.addr, connect.clone()).await;
    sub.subscribe("exp/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publ = Raw::v5(b.addr, "p").await;
    let mut short = publish("exp/short", b"short", QoS::AtLeastOnce, false, 1);
    short.properties.message_expiry_interval = Some(1);
    publ.send(&Packet::Publish(short)).await;
    let mut long = publish("exp/long", b"long", QoS::AtLeastOnce, false, 2);
    long.properties.message_expiry_interval = Some(100);
    publ.send(&Packet::Publish(long)).await;
    publ.recv().await;
    publ.recv().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut sub, _) = Raw::connect(b.addr, connect).await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"long");
    let left = got.properties.message_expiry_interval.unwrap();
    assert!(
        (98..=99).contains(&left),
        "remaining lifetime is sent, got {left}"
    );
    sub.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

#[tokio::test]
async fn session_expiry_ends_an_offline_session() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "brief", false);
    connect.properties.session_expiry_interval = Some(1);
    let (c, _) = Raw::connect(b.addr, connect.clone()).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (c, ack) = Raw::connect(b.addr, connect.clone()).await;
    assert!(ack.session_present, "still there within the interval");
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (_c, ack) = Raw::connect(b.addr, connect).await;
    assert!(!ack.session_present, "gone after the interval");
    b.stop().await;
}

#[tokio::test]
async fn will_delay_is_cancelled_by_a_reconnect_and_fires_otherwise() {
    let b = TestBroker::start(config()).await;
    let mut watcher = Raw::v5(b.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut connect = connect_packet(Protocol::V5, "flaky", false);
    connect.properties.session_expiry_interval = Some(30);
    connect.will = Some(will("wills/flaky", b"offline", Some(1)));

    // Abrupt loss, back within the delay: no will.
    let (c, _) = Raw::connect(b.addr, connect.clone()).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, _) = Raw::connect(b.addr, connect.clone()).await;
    watcher.expect_silence(Duration::from_millis(1300)).await;

    // Abrupt loss without coming back: the will arrives after the delay.
    drop(c);
    let started = std::time::Instant::now();
    let got = watcher.recv_publish().await;
    assert_eq!(&got.payload[..], b"offline");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "not before the delay"
    );
    b.stop().await;
}

#[tokio::test]
async fn disconnect_reason_decides_about_the_will() {
    let b = TestBroker::start(config()).await;
    let mut watcher = Raw::v5(b.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let mut connect = connect_packet(Protocol::V5, "polite", true);
    connect.will = Some(will("wills/polite", b"bye", None));
    let (c, _) = Raw::connect(b.addr, connect.clone()).await;
    c.disconnect().await;
    watcher.expect_silence(Duration::from_millis(300)).await;

    let (mut c, _) = Raw::connect(b.addr, connect).await;
    c.send(&Packet::Disconnect(broker::codec::Disconnect {
        code: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Properties::default(),
    }))
    .await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"bye");
    b.stop().await;
}

#[tokio::test]
async fn a_second_connection_takes_the_session_over() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "twin", false);
    connect.properties.session_expiry_interval = Some(60);
    let (mut first, _) = Raw::connect(b.addr, connect.clone()).await;
    first.subscribe("t", QoS::AtLeastOnce).await;
    let (mut second, ack) = Raw::connect(b.addr, connect).await;
    assert!(ack.session_present);
    assert_eq!(
        first.expect_close().await.unwrap().code,
        ReasonCode::SESSION_TAKEN_OVER
    );
    let mut publ = Raw::v5(b.addr, "p").await;
    publ.publish_acked("t", b"to-second", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&second.recv_publish().await.payload[..], b"to-second");
    b.stop().await;
}

#[tokio::test]
async fn subscription_options_and_identifiers() {
    let b = TestBroker::start(config()).await;
    let mut c = Raw::v5(b.addr, "opts").await;
    let mut publ = Raw::v5(b.addr, "p").await;
    publ.publish_acked("r/kept", b"retained", QoS::AtLeastOnce, true)
        .await;

    // Retain handling 2: no retained message on subscribe. Subscription id is echoed.
    let no_retained = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_handling: 2,
        ..Default::default()
    };
    c.subscribe_with("r/#", no_retained, Some(11)).await;
    c.expect_silence(Duration::from_millis(200)).await;
    // Retain handling 1: retained only when the subscription is new.
    let if_new = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_handling: 1,
        ..Default::default()
    };
    c.subscribe_with("r/+", if_new, Some(12)).await;
    let got = c.recv_publish().await;
    assert!(got.retain);
    assert_eq!(got.properties.subscription_identifiers, vec![12]);
    c.send(&Packet::PubAck(Ack::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    c.subscribe_with("r/+", if_new, Some(12)).await;
    c.expect_silence(Duration::from_millis(200)).await;

    // A live message matching both subscriptions arrives once with both identifiers; without
    // retain-as-published its retain flag is cleared.
    publ.publish_acked("r/kept", b"live", QoS::AtLeastOnce, true)
        .await;
    let got = c.recv_publish().await;
    assert!(!got.retain);
    let mut ids = got.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![11, 12]);
    c.send(&Packet::PubAck(Ack::new(
        got.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;

    // Retain as published keeps the flag; no local hides our own messages.
    let mut me = Raw::v5(b.addr, "me").await;
    let rap = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_as_published: true,
        no_local: true,
        retain_handling: 2,
    };
    me.subscribe_with("own/#", rap, None).await;
    me.publish_acked("own/x", b"mine", QoS::AtMostOnce, true)
        .await;
    me.expect_silence(Duration::from_millis(200)).await;
    publ.publish_acked("own/y", b"theirs", QoS::AtMostOnce, true)
        .await;
    assert!(me.recv_publish().await.retain);
    b.stop().await;
}

#[tokio::test]
async fn retained_messages_are_set_replaced_and_cleared() {
    let b = TestBroker::start(config()).await;
    let mut publ = Raw::v311(b.addr, "p").await;
    publ.publish_acked("cell/state", b"idle", QoS::AtLeastOnce, true)
        .await;
    publ.publish_acked("cell/state", b"running", QoS::AtLeastOnce, true)
        .await;
    let mut a = Raw::v311(b.addr, "a").await;
    a.subscribe("cell/#", QoS::AtMostOnce).await;
    let got = a.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"running"[..], true));
    publ.publish_acked("cell/state", b"", QoS::AtLeastOnce, true)
        .await;
    assert_eq!(
        &a.recv_publish().await.payload[..],
        b"",
        "the clearing message is delivered live"
    );
    let mut late = Raw::v311(b.addr, "late").await;
    late.subscribe("cell/#", QoS::AtMostOnce).await;
    late.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

#[tokio::test]
async fn shared_subscriptions_split_the_load() {
    let b = TestBroker::start(config()).await;
    let mut m1 = Raw::v5(b.addr, "m1").await;
    let mut m2 = Raw::v5(b.addr, "m2").await;
    let mut publ = Raw::v5(b.addr, "p").await;
    publ.publish_acked("jobs/kept", b"r", QoS::AtMostOnce, true)
        .await;
    m1.subscribe("$share/workers/jobs/#", QoS::AtMostOnce).await;
    m2.subscribe("$share/workers/jobs/#", QoS::AtMostOnce).await;
    for _ in 0..10 {
        publ.publish_acked("jobs/new", b"job", QoS::AtMostOnce, false)
            .await;
    }
    let mut counts = [0, 0];
    for (i, m) in [&mut m1, &mut m2].into_iter().enumerate() {
        while let Ok(Some(Packet::Publish(p))) = m.recv_within(Duration::from_millis(300)).await {
            assert!(!p.retain, "shared subscriptions get no retained messages");
            counts[i] += 1;
        }
    }
    assert_eq!(counts, [5, 5], "round robin over the group");
    b.stop().await;
}

#[tokio::test]
async fn sys_topics_are_published_but_hidden_from_first_level_wildcards() {
    let b = TestBroker::start(config()).await;
    let mut all = Raw::v311(b.addr, "all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    let mut sys = Raw::v311(b.addr, "sys").await;
    sys.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    // The first value is the retained one from start-up; a later one counts both clients.
    loop {
        let got = sys.recv_publish().await;
        let connected: u64 = std::str::from_utf8(&got.payload).unwrap().parse().unwrap();
        if connected >= 2 {
            break;
        }
    }
    all.expect_silence(Duration::from_millis(1500)).await;
    b.stop().await;
}

#[tokio::test]
async fn v5_properties_pass_through_unchanged() {
    let b = TestBroker::start(config()).await;
    let mut sub = Raw::v5(b.addr, "sub").await;
    sub.subscribe("req/#", QoS::AtMostOnce).await;
    let mut publ = Raw::v5(b.addr, "p").await;
    let mut p = publish("req/1", b"{\"a\":1}", QoS::AtMostOnce, false, 0);
    p.properties = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("res/1".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        user_properties: vec![("line".into(), "3".into()), ("line".into(), "4".into())],
        ..Properties::default()
    };
    publ.send(&Packet::Publish(p.clone())).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.properties, p.properties);

    // A payload announced as UTF-8 that is not is refused (0x99) and not routed.
    let mut bad = publish("req/2", b"\xff\xfe", QoS::AtLeastOnce, false, 9);
    bad.properties.payload_format_indicator = Some(1);
    publ.send(&Packet::Publish(bad)).await;
    assert_eq!(
        publ.recv().await,
        Packet::PubAck(Ack::new(9, ReasonCode::PAYLOAD_FORMAT_INVALID))
    );
    sub.expect_silence(Duration::from_millis(200)).await;
    b.stop().await;
}

#[tokio::test]
async fn unsubscribe_reports_what_existed() {
    let b = TestBroker::start(config()).await;
    let mut c = Raw::v5(b.addr, "u").await;
    c.subscribe("a/b", QoS::AtMostOnce).await;
    c.send(&Packet::Unsubscribe(broker::codec::Unsubscribe {
        packet_id: 3,
        properties: Properties::default(),
        filters: vec!["a/b".into(), "never".into()],
    }))
    .await;
    match c.recv().await {
        Packet::UnsubAck(ack) => assert_eq!(
            ack.codes,
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        ),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn taking_over_a_session_that_ends_with_its_connection_starts_afresh() {
    let b = TestBroker::start(config()).await;
    // MQTT 5 with session expiry 0: the session ends when the first connection is closed, so the
    // second connection finds none even though it asks to resume.
    let (mut first, _) =
        Raw::connect(b.addr, connect_packet(Protocol::V5, "short-lived", true)).await;
    first.subscribe("t", QoS::AtLeastOnce).await;
    let (mut second, ack) =
        Raw::connect(b.addr, connect_packet(Protocol::V5, "short-lived", false)).await;
    assert!(!ack.session_present);
    assert_eq!(
        first.expect_close().await.unwrap().code,
        ReasonCode::SESSION_TAKEN_OVER
    );
    let mut publ = Raw::v5(b.addr, "p").await;
    publ.publish_acked("t", b"nobody", QoS::AtLeastOnce, false)
        .await;
    second.expect_silence(Duration::from_millis(300)).await;
    b.stop().await;
}

/// Guards a bug: a new outgoing topic alias adds 3 bytes; the size check used to run before the
/// alias was added, so a message within 3 bytes of the client's maximum went out too large, and
/// the alias was recorded even when the message was then dropped.
#[tokio::test]
async fn a_new_topic_alias_counts_towards_the_clients_maximum_packet_size() {
    let b = TestBroker::start(config()).await;
    let mut connect = connect_packet(Protocol::V5, "tight", true);
    connect.properties.maximum_packet_size = Some(40);
    connect.properties.topic_alias_maximum = Some(4);
    let (mut sub, _) = Raw::connect(b.addr, connect).await;
    sub.subscribe("t/x", QoS::AtMostOnce).await;
    let mut publ = Raw::v5(b.addr, "p").await;
    // 40 bytes on the wire without an alias, 43 with a new one: it must not be sent.
    publ.publish_acked("t/x", &[b'a'; 32], QoS::AtMostOnce, false)
        .await;
    publ.publish_acked("t/x", b"ok", QoS::AtMostOnce, false)
        .await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"ok");
    assert_eq!(
        &got.topic[..],
        "t/x",
        "the alias is bound by the first message actually sent"
    );
    assert!(got.properties.topic_alias.is_some());
    b.stop().await;
}

/// Scenario: CONNECT, SUBSCRIBE and PUBLISH in one TCP write got only a CONNACK; the rest sat in
/// the buffer until the client sent something else.
#[tokio::test]
async fn packets_sent_with_the_connect_are_handled_at_once() {
    let b = TestBroker::start(config()).await;
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut c = Raw::open(b.addr, protocol).await;
        let mut bytes = BytesMut::new();
        let client_id = format!("eager-{protocol:?}");
        let packets = [
            Packet::Connect(Box::new(connect_packet(protocol, &client_id, true))),
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![("eager/#".into(), options(QoS::AtLeastOnce))],
            }),
            Packet::Publish(publish("eager/x", b"hello", QoS::AtLeastOnce, false, 2)),
        ];
        for packet in &packets {
            codec::encode(packet, protocol, &mut bytes);
        }
        c.send_bytes(&bytes).await;
        assert!(matches!(c.recv().await, Packet::ConnAck(_)), "{protocol:?}");
        assert!(matches!(c.recv().await, Packet::SubAck(_)), "{protocol:?}");
        let mut puback = false;
        let mut delivered = false;
        while !(puback && delivered) {
            match c.recv().await {
                Packet::PubAck(ack) => puback = ack.packet_id == 2,
                Packet::Publish(p) => delivered = &p.payload[..] == b"hello",
                other => panic!("{protocol:?}: unexpected {other:?}"),
            }
        }
    }
    // The receive maximum counts the packets of that first write too.
    let b2 = TestBroker::start(BrokerConfig {
        receive_maximum: 2,
        ..config()
    })
    .await;
    let mut c = Raw::open(b2.addr, Protocol::V5).await;
    let mut bytes = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect_packet(Protocol::V5, "greedy-eager", true))),
        Protocol::V5,
        &mut bytes,
    );
    for id in 1..=3 {
        let p = Packet::Publish(publish("q", b"x", QoS::ExactlyOnce, false, id));
        codec::encode(&p, Protocol::V5, &mut bytes);
    }
    c.send_bytes(&bytes).await;
    assert!(matches!(c.recv().await, Packet::ConnAck(_)));
    let d = c.expect_close().await.expect("DISCONNECT");
    assert_eq!(d.code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    b.stop().await;
    b2.stop().await;
}

/// Scenario: a 3.1.1 SUBSCRIBE with `a/#/b` was answered 0x80 instead of closing the connection
/// (3.1.1 has no return code for a malformed filter); MQTT 5 answers 0x8F.
#[tokio::test]
async fn a_malformed_filter_closes_a_311_connection_and_is_refused_in_5() {
    let b = TestBroker::start(config()).await;
    let mut v3 = Raw::v311(b.addr, "bad-filter-3").await;
    v3.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("a/#/b".into(), options(QoS::AtMostOnce))],
    }))
    .await;
    assert_eq!(
        v3.recv_within(WAIT).await,
        Ok(None),
        "closed without a SUBACK"
    );
    let mut v5 = Raw::v5(b.addr, "bad-filter-5").await;
    assert_eq!(
        v5.subscribe("a/#/b", QoS::AtMostOnce).await,
        vec![ReasonCode::TOPIC_FILTER_INVALID]
    );
    b.stop().await;
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    }
}

/// Scenario: a subscriber that never reads held 10,000 queued messages whatever their size:
/// 705 MB with 64 KiB payloads. Queues are bounded by bytes too, and the drops are counted.
#[tokio::test]
async fn session_queues_are_bounded_by_bytes() {
    static PAYLOAD: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let b = TestBroker::start(BrokerConfig {
        max_queued_bytes: 1024 * 1024,
        ..config()
    })
    .await;
    let (mut away, _) = Raw::connect(b.addr, connect_packet(Protocol::V311, "away", false)).await;
    away.subscribe("big/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut publisher = Raw::v311(b.addr, "publisher").await;
    for _ in 0..40 {
        publisher
            .publish_acked("big/x", &PAYLOAD, QoS::AtLeastOnce, false)
            .await;
    }
    let handle = b.handle();
    let dropped = broker::metrics::Metrics::get(&handle.metrics().messages_dropped_queue_bytes);
    // 1 MiB holds 15 messages of 64 KiB and their topic.
    assert_eq!(dropped, 40 - 15, "dropped for the byte bound");

    let (mut back, ack) = Raw::connect(b.addr, connect_packet(Protocol::V311, "away", false)).await;
    assert!(ack.session_present);
    let mut received = 0;
    while let Ok(Some(Packet::Publish(p))) = back.recv_within(Duration::from_millis(500)).await {
        back.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
            .await;
        received += 1;
    }
    assert_eq!(received, 15);
    b.stop().await;
}
