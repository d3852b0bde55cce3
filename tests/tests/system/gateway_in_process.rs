//! The whole gateway in-process (`gateway::Gateway`), every listener on a free port: MQTT over TCP
//! and TLS, WebSocket routes, and the in-process link all reach the same broker.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use broker::{Message, QoS};
use gateway::Gateway;
use gateway::settings::{Settings, Tls, TlsMode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

fn settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        data_dir: data_dir.to_path_buf(),
        tls: Tls::Mode(TlsMode::SelfSigned),
        ..Settings::default()
    };
    // These tests are about listeners and the shared broker, not authentication.
    s.broker.allow_anonymous = true;
    for listener in [&mut s.mqtt, &mut s.mqtts, &mut s.http, &mut s.https] {
        listener.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        listener.port = 0;
    }
    s
}

#[tokio::test]
async fn every_listener_starts_and_components_share_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path())).await.unwrap();
    let (mqtt, mqtts, http, https) = (
        gw.mqtt_addr.unwrap(),
        gw.mqtts_addr.unwrap(),
        gw.http_addr.unwrap(),
        gw.https_addr.unwrap(),
    );
    assert!(
        [mqtt.port(), mqtts.port(), http.port(), https.port()]
            .iter()
            .all(|p| *p != 0)
    );
    assert!(
        dir.path().join("tls/tls-cert.pem").exists(),
        "self-signed certificate generated"
    );

    // A component on the in-process link hears a network client.
    let mut component = gw
        .broker()
        .unwrap()
        .connect_local("ironbridge/test-component")
        .await
        .unwrap();
    component
        .subscribe("machines/+/speed", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (client, mut events) =
        AsyncClient::new(MqttOptions::new("plc-sim", "127.0.0.1", mqtt.port()), 10);
    client
        .publish(
            "machines/press/speed",
            rumqttc::QoS::AtLeastOnce,
            false,
            "42",
        )
        .await
        .unwrap();
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let got = tokio::time::timeout(Duration::from_secs(5), component.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.message.payload[..], b"42");

    // And a network client hears the component.
    let (listener, mut events) =
        AsyncClient::new(MqttOptions::new("scada", "127.0.0.1", mqtt.port()), 10);
    listener
        .subscribe("machines/+/cmd", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(10);
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(p.payload).await;
            }
        }
    });
    // Publish until the subscription is in place (its SUBACK may still be in flight).
    let mut payload = None;
    for _ in 0..25 {
        component
            .publish(Message::new(
                "machines/press/cmd",
                "stop",
                QoS::AtLeastOnce,
                false,
            ))
            .await
            .unwrap();
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            payload = Some(p);
            break;
        }
    }
    let payload = payload.expect("the network client hears the component");
    assert_eq!(&payload[..], b"stop");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = settings(dir.path());
    s.tls = Tls::Mode(TlsMode::Off);
    s.mqtt.port = taken.local_addr().unwrap().port();
    let err = Gateway::start(s).await.err().expect("start fails");
    assert!(
        format!("{err:#}").contains("cannot listen for MQTT"),
        "{err:#}"
    );
}
