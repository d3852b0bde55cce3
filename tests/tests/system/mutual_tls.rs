//! Mutual TLS on the MQTT listener: a client certificate signed by the
//! configured client CA logs the client in as the user named by the certificate's common name,
//! with that user's permissions; clients without a certificate still use user name and password.

use crate::common::pki::Pki;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use broker::QoS;
use commissioning::model::{AccessContext, AccessOperation, Permission};
use gateway::Gateway;
use gateway::settings::{Settings, Tls};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};

fn settings(dir: &Path, pki: &Pki) -> Settings {
    let (cert, key) = pki.issue("ironbridge", vec!["localhost".into()]);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    std::fs::write(dir.join("clients-ca.pem"), &pki.ca_pem).unwrap();
    let mut s = Settings {
        data_dir: dir.join("data"),
        tls: Tls::Files {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: Some(dir.join("clients-ca.pem")),
        },
        ..Settings::default()
    };
    s.admin.password = Some("mutual-tls-admin".into());
    for listener in [&mut s.mqtt, &mut s.mqtts, &mut s.http, &mut s.https] {
        listener.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        listener.port = 0;
    }
    s
}

/// Connects over TLS; `Ok(client)` once the CONNACK accepted it.
async fn connect(
    port: u16,
    ca: &str,
    identity: Option<(String, String)>,
    login: Option<(&str, &str)>,
) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    let mut options = MqttOptions::new(format!("mtls-{}", rand_id()), "localhost", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: identity.map(|(cert, key)| (cert.into_bytes(), key.into_bytes())),
    }));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut events) = AsyncClient::new(options, 10);
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .map_err(|_| "timeout".to_string())??;
    Ok((client, events))
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn a_client_certificate_logs_in_as_its_common_name() {
    // rumqttc builds its client configuration with the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clients = Pki::new("Plant client CA");
    let gw = Gateway::start(settings(dir.path(), &clients))
        .await
        .unwrap();
    let port = gw.mqtts_addr.unwrap().port();
    let server_ca = clients.ca_pem.clone();
    gw.admin()
        .create_user(
            "press-01",
            "press-01-password",
            Vec::new(),
            vec![Permission {
                resource: "machines/press-01/#".into(),
                operation: AccessOperation::Write,
                context: AccessContext::Mqtt,
            }],
            None,
        )
        .await
        .unwrap();
    let mut watcher = gw
        .broker()
        .unwrap()
        .connect_local("ironbridge/test-watcher")
        .await
        .unwrap();
    watcher
        .subscribe("machines/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    let (client, mut events) = connect(
        port,
        &server_ca,
        Some(clients.issue("press-01", vec![])),
        None,
    )
    .await
    .expect("certificate login");
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
        .publish(
            "machines/press-02/speed",
            rumqttc::QoS::AtLeastOnce,
            false,
            "not mine",
        )
        .await
        .unwrap();
    client
        .publish(
            "machines/press-01/speed",
            rumqttc::QoS::AtLeastOnce,
            false,
            "1200",
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &delivery.message.topic[..],
        "machines/press-01/speed",
        "only the permitted topic arrives"
    );

    let stranger = connect(
        port,
        &server_ca,
        Some(clients.issue("nobody-we-know", vec![])),
        None,
    )
    .await;
    assert!(
        stranger.is_err(),
        "a valid certificate for an unknown user is refused"
    );
    let rogue_ca = Pki::new("Rogue CA");
    let rogue = connect(
        port,
        &server_ca,
        Some(rogue_ca.issue("press-01", vec![])),
        None,
    )
    .await;
    assert!(rogue.is_err(), "a certificate from another CA is refused");
    let anonymous = connect(port, &server_ca, None, None).await;
    assert!(
        anonymous.is_err(),
        "no certificate and no user name: refused (anonymous is off)"
    );
    let password = connect(
        port,
        &server_ca,
        None,
        Some(("press-01", "press-01-password")),
    )
    .await;
    assert!(
        password.is_ok(),
        "user name and password still work on the same listener"
    );
    gw.shutdown().await;
}
