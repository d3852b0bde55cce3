//! Sessions and permissions across users on the real broker with the admin user directory, each
//! reproducing an attack that worked before it was fixed: taking over another user's persistent
//! session by its client id (MQTT 3.1.1 and 5.0), and permissions or users removed while their
//! connections stay open.

use std::net::SocketAddr;
use std::time::Duration;

use admin::accounts::UserChange;
use broker::{LocalClient, Message, QoS};
use commissioning::model::{AccessContext, AccessOperation, Permission};
use gateway::Gateway;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use tokio::sync::mpsc;

use crate::common::settings;

const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password-1");

fn mqtt(resource: &str, operation: AccessOperation) -> Permission {
    Permission {
        resource: resource.into(),
        operation,
        context: AccessContext::Mqtt,
    }
}

/// A gateway with `alice` (readWrite on `secret/#`) and `bob` (readWrite on `public/#` only).
async fn gateway_with_users(dir: &std::path::Path) -> Gateway {
    let gw = Gateway::start(settings(dir, "admin-password-1"))
        .await
        .unwrap();
    let admin = gw.admin();
    for ((name, password), resource) in [(ALICE, "secret/#"), (BOB, "public/#")] {
        admin
            .create_user(
                name,
                password,
                Vec::new(),
                vec![mqtt(resource, AccessOperation::ReadWrite)],
                None,
            )
            .await
            .unwrap();
    }
    gw
}

async fn publisher(gw: &Gateway) -> LocalClient {
    gw.broker()
        .unwrap()
        .connect_local("ironbridge/test-publisher")
        .await
        .unwrap()
}

async fn publish(component: &mut LocalClient, topic: &str, payload: &str) {
    component
        .publish(Message::new(
            topic,
            payload.to_string(),
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .unwrap();
}

/// What a test client saw: CONNACKs (session present?), messages, and the end of its connection.
#[derive(Debug)]
enum Seen {
    ConnAck { session_present: bool },
    Message { topic: String, payload: String },
    Closed,
}

/// An MQTT 3.1.1 or 5.0 client (rumqttc) that reports what it sees and does not reconnect.
struct TestClient {
    v4: Option<rumqttc::AsyncClient>,
    v5: Option<rumqttc::v5::AsyncClient>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestClient {
    async fn connect(
        addr: SocketAddr,
        v5: bool,
        client_id: &str,
        (user, password): (&str, &str),
        will_topic: Option<&str>,
    ) -> (TestClient, bool) {
        let (tx, seen) = mpsc::unbounded_channel();
        let client = if v5 {
            let mut options =
                rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
            options
                .set_credentials(user, password)
                .set_clean_start(false)
                .set_session_expiry_interval(Some(3600));
            if let Some(topic) = will_topic {
                options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                    topic,
                    "gone",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    None,
                ));
            }
            let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 100);
            tokio::spawn(async move {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::Packet;
                loop {
                    let seen = match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => Seen::ConnAck {
                            session_present: ack.session_present,
                        },
                        Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message {
                            topic: String::from_utf8_lossy(&p.topic).into(),
                            payload: String::from_utf8_lossy(&p.payload).into(),
                        },
                        Ok(Event::Incoming(Packet::Disconnect(_))) | Err(_) => {
                            let _ = tx.send(Seen::Closed);
                            return;
                        }
                        Ok(_) => continue,
                    };
                    let _ = tx.send(seen);
                }
            });
            TestClient {
                v4: None,
                v5: Some(client),
                seen,
            }
        } else {
            let mut options =
                rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
            options
                .set_credentials(user, password)
                .set_clean_session(false);
            if let Some(topic) = will_topic {
                options.set_last_will(rumqttc::LastWill::new(
                    topic,
                    "gone",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                ));
            }
            let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
            tokio::spawn(async move {
                use rumqttc::{Event, Packet};
                loop {
                    let seen = match events.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => Seen::ConnAck {
                            session_present: ack.session_present,
                        },
                        Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message {
                            topic: p.topic,
                            payload: String::from_utf8_lossy(&p.payload).into(),
                        },
                        Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => {
                            let _ = tx.send(Seen::Closed);
                            return;
                        }
                        Ok(_) => continue,
                    };
                    let _ = tx.send(seen);
                }
            });
            TestClient {
                v4: Some(client),
                v5: None,
                seen,
            }
        };
        let mut client = client;
        let session_present = match client.next(Duration::from_secs(5)).await {
            Some(Seen::ConnAck { session_present }) => session_present,
            other => panic!("{client_id}: expected a CONNACK, got {other:?}"),
        };
        (client, session_present)
    }

    async fn subscribe(&self, filter: &str) {
        if let Some(c) = &self.v4 {
            c.subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        if let Some(c) = &self.v5 {
            c.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        // The SUBACK is not reported; give the broker a moment to have the subscription.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn disconnect(self) {
        if let Some(c) = &self.v4 {
            c.disconnect().await.unwrap();
        }
        if let Some(c) = &self.v5 {
            c.disconnect().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn next(&mut self, within: Duration) -> Option<Seen> {
        tokio::time::timeout(within, self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    /// The messages that arrive within `within`.
    async fn messages(&mut self, within: Duration) -> Vec<String> {
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + within;
        while let Ok(Some(seen)) = tokio::time::timeout_at(until, self.seen.recv()).await {
            if let Seen::Message { topic, payload } = seen {
                got.push(format!("{topic} {payload}"));
            }
        }
        got
    }
}

/// Scenario: alice (may read `secret/#`) leaves a persistent session with client id X; bob (may
/// not) connects as X with clean=false, got session-present and alice's queued and live
/// `secret/#` messages.
async fn session_of_another_user_is_not_resumed(v5: bool) {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_users(dir.path()).await;
    let addr = gw.mqtt_addr.unwrap();
    let mut component = publisher(&gw).await;

    let (alice, _) = TestClient::connect(addr, v5, "line-hmi", ALICE, None).await;
    alice.subscribe("secret/#").await;
    alice.disconnect().await;
    // The owner gets her session back with what was queued meanwhile.
    publish(&mut component, "secret/recipe", "queued-for-alice").await;
    let (mut alice, present) = TestClient::connect(addr, v5, "line-hmi", ALICE, None).await;
    assert!(present, "alice resumes her own session");
    assert_eq!(
        alice.messages(Duration::from_secs(1)).await,
        ["secret/recipe queued-for-alice"]
    );
    alice.disconnect().await;

    publish(&mut component, "secret/recipe", "queued-again").await;
    let (mut bob, present) = TestClient::connect(addr, v5, "line-hmi", BOB, None).await;
    assert!(!present, "bob must not get alice's session");
    publish(&mut component, "secret/recipe", "live").await;
    assert_eq!(
        bob.messages(Duration::from_secs(1)).await,
        Vec::<String>::new(),
        "neither queued nor live messages of alice's subscription reach bob"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn another_users_persistent_session_is_not_resumed_mqtt_311() {
    session_of_another_user_is_not_resumed(false).await;
}

#[tokio::test]
async fn another_users_persistent_session_is_not_resumed_mqtt_5() {
    session_of_another_user_is_not_resumed(true).await;
}

/// Scenario: after alice's permissions were removed her subscription kept delivering; after she
/// was deleted her connection stayed open and her will was published.
#[tokio::test]
async fn permission_changes_and_deletions_reach_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_users(dir.path()).await;
    let addr = gw.mqtt_addr.unwrap();
    let mut component = publisher(&gw).await;
    let mut will_watcher = gw
        .broker()
        .unwrap()
        .connect_local("ironbridge/test-will-watcher")
        .await
        .unwrap();
    will_watcher
        .subscribe("secret/will", QoS::AtLeastOnce)
        .await
        .unwrap();

    let (mut alice, _) =
        TestClient::connect(addr, false, "alice-hmi", ALICE, Some("secret/will")).await;
    alice.subscribe("secret/#").await;
    publish(&mut component, "secret/a", "before").await;
    assert_eq!(
        alice.messages(Duration::from_secs(1)).await,
        ["secret/a before"]
    );

    // Read taken away (write kept, so the will would still be allowed): deliveries stop at once.
    gw.admin()
        .update_user(
            "alice",
            UserChange {
                password: None,
                roles: None,
                permissions: Some(vec![mqtt("secret/#", AccessOperation::Write)]),
            },
        )
        .await
        .unwrap();
    publish(&mut component, "secret/a", "after").await;
    assert_eq!(
        alice.messages(Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
    let denied = gw
        .broker()
        .unwrap()
        .metrics()
        .deliveries_denied
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(denied >= 1, "the dropped delivery is counted");

    // Deleted: the connection is closed and its will is not published.
    gw.admin().delete_user("alice").await.unwrap();
    let mut closed = false;
    while let Some(seen) = alice.next(Duration::from_secs(5)).await {
        if matches!(seen, Seen::Closed) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a deleted user's connection is closed");
    let will = tokio::time::timeout(Duration::from_secs(1), will_watcher.recv()).await;
    assert!(
        will.is_err(),
        "a deleted user's will is not published: {will:?}"
    );

    // Deleted and created again under the same name: a new account, with no old sessions.
    gw.admin()
        .create_user(
            "alice",
            ALICE.1,
            Vec::new(),
            vec![mqtt("secret/#", AccessOperation::ReadWrite)],
            None,
        )
        .await
        .unwrap();
    let (_, present) = TestClient::connect(addr, false, "alice-hmi", ALICE, None).await;
    assert!(
        !present,
        "a new account with an old name does not inherit sessions"
    );
    gw.shutdown().await;
}

/// Whether the broker accepts an MQTT 5 CONNECT with these credentials.
async fn accepts(addr: SocketAddr, user: &str, password: &str) -> bool {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    use rumqttc::v5::{Event, MqttOptions};
    let mut options = MqttOptions::new("token-test", addr.ip().to_string(), addr.port());
    options.set_credentials(user, password);
    let (_client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return ack.code == ConnectReturnCode::Success;
            }
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => return false,
            Err(_) => panic!("no CONNACK within 5 s"),
        }
    }
}

/// Scenario: the web console holds the user's API token, not the password, and logs into the
/// broker (MQTT over WebSocket) with it. The token stands for its own user only, and not once it
/// is revoked: logging out ends the sessions it opened. (Its expiry does the same; tokens live
/// an hour at least, so the admin crate tests that with a short one.)
#[tokio::test]
async fn an_api_token_is_accepted_as_its_users_mqtt_password_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_users(dir.path()).await;
    let addr = gw.mqtt_addr.unwrap();
    let admin = gw.admin();
    let alice = admin.login(ALICE.0, ALICE.1, None, None).await.unwrap();
    let bob = admin.login(BOB.0, BOB.1, None, None).await.unwrap();

    assert!(accepts(addr, "alice", &alice.token).await);
    assert!(
        accepts(addr, "alice", ALICE.1).await,
        "the password still works"
    );
    assert!(
        !accepts(addr, "alice", &bob.token).await,
        "bob's token is not alice's"
    );
    assert!(!accepts(addr, "bob", &alice.token).await);
    // A token with a changed signature, and something merely shaped like one.
    let forged = format!("{}AAAA", &alice.token[..alice.token.len() - 4]);
    assert!(!accepts(addr, "alice", &forged).await);
    assert!(!accepts(addr, "alice", "eyJhbGciOiJub25lIn0.e30.").await);

    // Logging out ends the sessions opened with the token, not those opened with the password.
    let (_console, mut by_token) = connected(addr, "alice-console", "alice", &alice.token).await;
    let (_hmi, mut by_password) = connected(addr, "alice-hmi", "alice", ALICE.1).await;
    let caller = admin.caller(&alice.token).unwrap();
    admin.logout(&caller).await.unwrap();
    assert_eq!(
        disconnect_reason(&mut by_token).await,
        Some(DisconnectReasonCode::NotAuthorized)
    );
    assert!(
        !accepts(addr, "alice", &alice.token).await,
        "a revoked token"
    );
    let still_open = tokio::time::timeout(Duration::from_secs(1), by_password.poll()).await;
    assert!(
        still_open.is_err() || still_open.unwrap().is_ok(),
        "the password's session goes on"
    );
    gw.shutdown().await;
}

/// An MQTT 5 client connected (CONNACK received) with these credentials; its event loop runs
/// while the client is kept.
async fn connected(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    use rumqttc::v5::{Event, MqttOptions};
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(user, password);
    let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                return (client, events);
            }
            Ok(Ok(_)) => continue,
            other => panic!("{user} not connected: {other:?}"),
        }
    }
}

/// The reason of the DISCONNECT the broker sends within 5 s (`None`: it closed the connection
/// without one).
async fn disconnect_reason(events: &mut rumqttc::v5::EventLoop) -> Option<DisconnectReasonCode> {
    use rumqttc::v5::{ConnectionError, StateError};
    let wait = async {
        loop {
            match events.poll().await {
                Ok(_) => continue,
                // rumqttc reports the server's DISCONNECT as the error that ends its loop.
                Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                    reason_code,
                    ..
                })) => return Some(reason_code),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the broker ends the session within 5 s")
}
