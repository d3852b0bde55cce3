//! Conformance with a widely used client library: rumqttc's MQTT 3.1.1 and MQTT 5 clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestBroker, WAIT, config};
use tokio::sync::mpsc;

mod v4 {
    use super::*;
    use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS};

    /// A connected client whose received PUBLISHes arrive on the returned channel.
    pub struct Client {
        pub client: AsyncClient,
        pub rx: mpsc::Receiver<Publish>,
        pub session_present: bool,
        /// Aborting the event loop drops the socket without DISCONNECT, like a pulled cable.
        pub event_loop: tokio::task::AbortHandle,
    }

    pub async fn client(b: &TestBroker, id: &str, clean: bool, will: Option<LastWill>) -> Client {
        let mut options = MqttOptions::new(id, "127.0.0.1", b.addr.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(clean);
        if let Some(will) = will {
            options.set_last_will(will);
        }
        let (client, mut events) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::channel(1000);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(ack.session_present);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let session_present = tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
        Client {
            client,
            rx,
            session_present,
            event_loop: task.abort_handle(),
        }
    }

    pub async fn next(rx: &mut mpsc::Receiver<Publish>) -> Publish {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a message in time")
            .expect("client running")
    }

    #[tokio::test]
    async fn publish_and_subscribe_at_every_qos() {
        let b = TestBroker::start(config()).await;
        let Client {
            client: sub,
            mut rx,
            ..
        } = client(&b, "v4-sub", true, None).await;
        sub.subscribe("plant/+/temp", QoS::ExactlyOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let publ = client(&b, "v4-pub", true, None).await.client;
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            publ.publish(format!("plant/{i}/temp"), qos, false, format!("{i}"))
                .await
                .unwrap();
            let got = next(&mut rx).await;
            assert_eq!(
                (got.topic.as_str(), got.qos, &got.payload[..]),
                (
                    format!("plant/{i}/temp").as_str(),
                    qos,
                    format!("{i}").as_bytes()
                )
            );
        }
        b.stop().await;
    }

    #[tokio::test]
    async fn retained_will_and_persistent_session() {
        let b = TestBroker::start(config()).await;
        let publ = client(&b, "v4-pub", true, None).await.client;
        publ.publish("cell/1/state", QoS::AtLeastOnce, true, "running")
            .await
            .unwrap();

        // Retained message on subscribe, with the retain flag.
        let Client {
            client: late,
            rx: mut late_rx,
            ..
        } = client(&b, "v4-late", true, None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        late.subscribe("cell/#", QoS::AtLeastOnce).await.unwrap();
        let got = next(&mut late_rx).await;
        assert!(got.retain);
        assert_eq!(&got.payload[..], b"running");

        // The will of a client that vanishes.
        let will = LastWill::new("cell/1/conn", "lost", QoS::AtLeastOnce, false);
        let doomed = client(&b, "v4-doomed", true, Some(will)).await;
        doomed.event_loop.abort();
        let got = next(&mut late_rx).await;
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            ("cell/1/conn", &b"lost"[..])
        );

        // A persistent session collects QoS 1 while offline.
        let Client {
            client: durable,
            rx: drx,
            ..
        } = client(&b, "v4-durable", false, None).await;
        durable
            .subscribe("orders/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        durable.disconnect().await.unwrap();
        drop(drx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        publ.publish("orders/7", QoS::AtLeastOnce, false, "queued")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut back = client(&b, "v4-durable", false, None).await;
        assert!(back.session_present);
        assert_eq!(&next(&mut back.rx).await.payload[..], b"queued");
        b.stop().await;
    }

    #[tokio::test]
    async fn pings_keep_an_idle_client_connected() {
        let b = TestBroker::start(config()).await;
        let mut options = MqttOptions::new("idle-but-alive", "127.0.0.1", b.addr.port());
        options.set_keep_alive(Duration::from_secs(1));
        let (client, mut events) = AsyncClient::new(options, 10);
        client
            .subscribe("heartbeat", QoS::AtMostOnce)
            .await
            .unwrap();
        // Three keep-alive periods of silence but for rumqttc's PINGREQs: no disconnect.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut pings = 0;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PingResp))) => pings += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connection lost while idle: {e}"),
                Err(_) => break,
            }
        }
        assert!(pings >= 2, "PINGREQ answered ({pings} PINGRESP)");
        b.stop().await;
    }
}

mod v5 {
    use super::*;
    use bytes::Bytes;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{
        ConnAck, Filter, LastWill, LastWillProperties, Packet, Publish, PublishProperties,
        RetainForwardRule, SubscribeProperties,
    };
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub struct Client {
        pub client: AsyncClient,
        pub rx: mpsc::Receiver<Publish>,
        pub connack: ConnAck,
        /// Aborting the event loop drops the socket without DISCONNECT, like a pulled cable.
        pub event_loop: tokio::task::AbortHandle,
    }

    /// Connects with options adjusted by `configure`; received PUBLISHes arrive on `rx`.
    pub async fn connect(
        b: &TestBroker,
        id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let mut options = MqttOptions::new(id, "127.0.0.1", b.addr.port());
        options.set_keep_alive(Duration::from_secs(5));
        configure(&mut options);
        let (client, mut events) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::channel(1000);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(ack);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let connack = tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
        Client {
            client,
            rx,
            connack,
            event_loop: task.abort_handle(),
        }
    }

    pub async fn client(
        b: &TestBroker,
        id: &str,
        clean: bool,
        expiry: Option<u32>,
    ) -> (AsyncClient, mpsc::Receiver<Publish>, bool) {
        let c = connect(b, id, |o| {
            o.set_clean_start(clean);
            o.set_session_expiry_interval(expiry);
        })
        .await;
        (c.client, c.rx, c.connack.session_present)
    }

    async fn next(rx: &mut mpsc::Receiver<Publish>) -> Publish {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a message in time")
            .expect("client running")
    }

    #[tokio::test]
    async fn properties_and_subscription_options() {
        let b = TestBroker::start(config()).await;
        let (sub, mut rx, _) = client(&b, "v5-sub", true, None).await;
        let filter = Filter {
            path: "req/#".into(),
            qos: QoS::AtLeastOnce,
            nolocal: true,
            preserve_retain: true,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        };
        let props = SubscribeProperties {
            id: Some(42),
            user_properties: vec![],
        };
        sub.subscribe_with_properties(filter.path.clone(), filter.qos, props)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let (publ, _prx, _) = client(&b, "v5-pub", true, None).await;
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json".into()),
            response_topic: Some("res/1".into()),
            correlation_data: Some(Bytes::from_static(b"c-1")),
            user_properties: vec![("machine".into(), "cnc-7".into())],
            ..PublishProperties::default()
        };
        publ.publish_with_properties(
            "req/1",
            QoS::AtLeastOnce,
            false,
            "{\"cmd\":\"start\"}",
            props,
        )
        .await
        .unwrap();
        let got = next(&mut rx).await;
        let p = got.properties.expect("properties forwarded");
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert_eq!(p.response_topic.as_deref(), Some("res/1"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(
            p.user_properties,
            vec![("machine".to_string(), "cnc-7".to_string())]
        );
        assert_eq!(p.subscription_identifiers, vec![42]);
        assert_eq!(p.payload_format_indicator, Some(1));

        // No local: our own publish on a matching topic does not come back.
        sub.subscribe_many([filter]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        sub.publish("req/self", QoS::AtLeastOnce, false, "echo?")
            .await
            .unwrap();
        publ.publish("req/other", QoS::AtLeastOnce, false, "from-other")
            .await
            .unwrap();
        let got = next(&mut rx).await;
        assert_eq!(&got.payload[..], b"from-other");
        b.stop().await;
    }

    #[tokio::test]
    async fn session_expiry_keeps_messages_for_a_returning_client() {
        let b = TestBroker::start(config()).await;
        let (durable, rx, _) = client(&b, "v5-durable", true, Some(300)).await;
        durable
            .subscribe("alarms/#", QoS::ExactlyOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        durable.disconnect().await.unwrap();
        drop(rx);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (publ, _prx, _) = client(&b, "v5-pub", true, None).await;
        publ.publish("alarms/overheat", QoS::ExactlyOnce, false, "spindle 7")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_durable, mut rx, present) = client(&b, "v5-durable", false, Some(300)).await;
        assert!(present);
        let got = next(&mut rx).await;
        assert_eq!(
            (got.qos, &got.payload[..]),
            (QoS::ExactlyOnce, &b"spindle 7"[..])
        );
        b.stop().await;
    }

    #[tokio::test]
    async fn shared_subscription_with_rumqttc() {
        let b = TestBroker::start(config()).await;
        let (w1, mut r1, _) = client(&b, "w1", true, None).await;
        let (w2, mut r2, _) = client(&b, "w2", true, None).await;
        w1.subscribe("$share/g/jobs", QoS::AtLeastOnce)
            .await
            .unwrap();
        w2.subscribe("$share/g/jobs", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (publ, _p, _) = client(&b, "boss", true, None).await;
        for i in 0..6 {
            publ.publish("jobs", QoS::AtLeastOnce, false, format!("{i}"))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(next(&mut r1).await.payload);
            seen.push(next(&mut r2).await.payload);
        }
        seen.sort();
        assert_eq!(seen.len(), 6);
        seen.dedup();
        assert_eq!(seen.len(), 6, "each job went to exactly one worker");
        b.stop().await;
    }

    #[tokio::test]
    async fn connack_assigns_an_id_and_announces_limits() {
        let b = TestBroker::start(config()).await;
        let c = connect(&b, "", |_| {}).await;
        let props = c.connack.properties.expect("MQTT 5 CONNACK properties");
        assert!(
            props
                .assigned_client_identifier
                .is_some_and(|id| !id.is_empty())
        );
        assert_eq!(props.receive_max, Some(b.config.receive_maximum));
        assert_eq!(props.topic_alias_max, Some(b.config.topic_alias_maximum));
        assert_eq!(props.max_packet_size, Some(b.config.max_packet_size));
        b.stop().await;
    }

    #[tokio::test]
    async fn topic_aliases_both_ways_with_rumqttc() {
        let b = TestBroker::start(config()).await;
        let mut sub = connect(&b, "alias-sub", |o| {
            o.set_topic_alias_max(Some(8));
        })
        .await;
        sub.client
            .subscribe("line/+/speed", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let publ = connect(&b, "alias-pub", |_| {}).await;
        let with_alias = |alias| PublishProperties {
            topic_alias: Some(alias),
            ..PublishProperties::default()
        };
        // The publisher binds alias 3, then sends with an empty topic.
        publ.client
            .publish_with_properties("line/7/speed", QoS::AtLeastOnce, false, "1", with_alias(3))
            .await
            .unwrap();
        publ.client
            .publish_with_properties("", QoS::AtLeastOnce, false, "2", with_alias(3))
            .await
            .unwrap();
        for expected in ["1", "2"] {
            let got = next(&mut sub.rx).await;
            assert_eq!(&got.payload[..], expected.as_bytes());
            let alias = got.properties.as_ref().and_then(|p| p.topic_alias);
            assert!(
                alias.is_some(),
                "the broker aliases topics for a client that allows it"
            );
        }
        b.stop().await;
    }

    #[tokio::test]
    async fn retain_handling_with_rumqttc() {
        let b = TestBroker::start(config()).await;
        let publ = connect(&b, "retainer", |_| {}).await;
        publ.client
            .publish("cfg/line1", QoS::AtLeastOnce, true, "v1")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut sub = connect(&b, "rh", |_| {}).await;
        let filter = |rule| Filter {
            path: "cfg/#".into(),
            qos: QoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: rule,
        };
        sub.client
            .subscribe_many([filter(RetainForwardRule::Never)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            sub.rx.try_recv().is_err(),
            "retain handling 2 sends nothing"
        );
        // Now the subscription exists: OnNewSubscribe sends nothing either...
        sub.client
            .subscribe_many([filter(RetainForwardRule::OnNewSubscribe)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            sub.rx.try_recv().is_err(),
            "retain handling 1 on an existing subscription"
        );
        // ...and OnEverySubscribe does.
        sub.client
            .subscribe_many([filter(RetainForwardRule::OnEverySubscribe)])
            .await
            .unwrap();
        let got = next(&mut sub.rx).await;
        assert!(got.retain);
        assert_eq!(&got.payload[..], b"v1");
        b.stop().await;
    }

    #[tokio::test]
    async fn will_delay_with_rumqttc() {
        let b = TestBroker::start(config()).await;
        let mut watcher = connect(&b, "watcher", |_| {}).await;
        watcher
            .client
            .subscribe("status/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let will = LastWill::new(
            "status/cnc-7",
            "offline",
            QoS::AtLeastOnce,
            false,
            Some(LastWillProperties {
                delay_interval: Some(1),
                payload_format_indicator: None,
                message_expiry_interval: None,
                content_type: None,
                response_topic: None,
                correlation_data: None,
                user_properties: vec![],
            }),
        );
        let machine = connect(&b, "cnc-7", |o| {
            o.set_session_expiry_interval(Some(60));
            o.set_last_will(will);
        })
        .await;
        machine.event_loop.abort();
        let lost = std::time::Instant::now();
        let got = next(&mut watcher.rx).await;
        assert_eq!(&got.payload[..], b"offline");
        assert!(
            lost.elapsed() >= Duration::from_millis(700),
            "sent after the will delay"
        );
        b.stop().await;
    }
}
