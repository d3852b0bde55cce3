//! One network session with a remote broker on rumqttc, MQTT 3.1.1 or 5.0 behind one face.
//!
//! Each session is a fresh rumqttc client and event loop: when the link drops, the session is
//! thrown away and the connection opens a new one after its back-off. rumqttc's own
//! replay of unacknowledged messages therefore never runs; the store-and-forward queue decides
//! what is sent again, in order. The event loop is polled by its own task, which turns rumqttc's
//! events into [`SessionEvent`]s, so the driver never waits on the network.

use std::time::Duration;

use broker::{Message, QoS};
use bytes::Bytes;
use commissioning::model::{MqttConnection, MqttScheme, MqttVersion};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages the driver may have sent and not yet seen acknowledged; also the MQTT in-flight
/// window given to rumqttc.
pub const WINDOW: usize = 64;

/// Largest packet accepted from or sent to a remote broker.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// What happened on the session, in the order it happened.
#[derive(Debug)]
pub enum SessionEvent {
    /// The broker accepted the connection.
    Connected,
    /// A publish left for the broker with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) publish; `refused` carries
    /// an MQTT 5 reason when the broker took the packet but refused the message.
    Acked { pkid: u16, refused: Option<String> },
    /// A message from one of our subscriptions.
    Received(Message),
    /// The link is gone (or never came up); the reason is for the status.
    Lost(String),
}

/// Everything needed to open sessions; built once per connection, so a bad certificate is
/// reported before the first attempt.
#[derive(Clone)]
pub struct SessionConfig {
    pub client_id: String,
    host: String,
    port: u16,
    scheme: MqttScheme,
    websocket_path: String,
    version: MqttVersion,
    username: Option<String>,
    password: Option<String>,
    pub keepalive: Duration,
    clean: bool,
    tls: Option<TlsConfiguration>,
    /// Published by the broker when the session ends without a DISCONNECT.
    pub will: Option<Message>,
}

impl SessionConfig {
    pub fn new(connection: &MqttConnection, default_client_id: &str) -> Result<Self, String> {
        let tls = match connection.scheme {
            MqttScheme::Mqtts | MqttScheme::Wss => Some(TlsConfiguration::Rustls(
                crate::tls::client_config(connection)?,
            )),
            MqttScheme::Mqtt | MqttScheme::Ws => None,
        };
        let port = connection.port.unwrap_or(match connection.scheme {
            MqttScheme::Mqtt => 1883,
            MqttScheme::Mqtts => 8883,
            MqttScheme::Ws => 80,
            MqttScheme::Wss => 443,
        });
        Ok(SessionConfig {
            client_id: connection
                .client_id
                .clone()
                .unwrap_or_else(|| default_client_id.to_string()),
            host: connection.host.clone(),
            port,
            scheme: connection.scheme,
            websocket_path: connection
                .websocket_path
                .clone()
                .unwrap_or_else(|| "/mqtt".into()),
            version: connection.protocol_version,
            username: connection.username.clone(),
            password: connection.password.clone(),
            keepalive: Duration::from_secs(u64::from(connection.keepalive.unwrap_or(60).max(5))),
            clean: connection.clean.unwrap_or(true),
            tls,
            will: None,
        })
    }

    /// `host:port`, or the URL for WebSocket schemes, as rumqttc wants it.
    fn address(&self) -> String {
        match self.scheme {
            MqttScheme::Ws => format!("ws://{}:{}{}", self.host, self.port, self.websocket_path),
            MqttScheme::Wss => format!("wss://{}:{}{}", self.host, self.port, self.websocket_path),
            MqttScheme::Mqtt | MqttScheme::Mqtts => self.host.clone(),
        }
    }

    fn transport(&self) -> Transport {
        match (self.scheme, &self.tls) {
            (MqttScheme::Mqtts, Some(tls)) => Transport::Tls(tls.clone()),
            (MqttScheme::Wss, Some(tls)) => Transport::Wss(tls.clone()),
            (MqttScheme::Ws, _) => Transport::Ws,
            _ => Transport::Tcp,
        }
    }
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The request channel of rumqttc is full; try again after the next event.
#[derive(Debug)]
pub struct Busy;

pub struct Session {
    client: Client,
    poller: JoinHandle<()>,
}

impl Session {
    /// Starts connecting; [`SessionEvent::Connected`] or [`SessionEvent::Lost`] follows on the
    /// returned receiver.
    pub fn open(config: &SessionConfig) -> (Session, mpsc::Receiver<SessionEvent>) {
        let (tx, events) = mpsc::channel(4 * WINDOW);
        let capacity = 2 * WINDOW + 16;
        let (client, poller) = match config.version {
            MqttVersion::V311 => {
                let mut options =
                    rumqttc::MqttOptions::new(&config.client_id, config.address(), config.port);
                options
                    .set_transport(config.transport())
                    .set_keep_alive(config.keepalive)
                    .set_clean_session(config.clean)
                    .set_inflight(WINDOW as u16)
                    .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                    .set_request_channel_capacity(capacity);
                if let Some(user) = &config.username {
                    options.set_credentials(user, config.password.clone().unwrap_or_default());
                }
                if let Some(will) = &config.will {
                    options.set_last_will(rumqttc::LastWill::new(
                        &*will.topic,
                        will.payload.to_vec(),
                        v4_qos(will.qos),
                        will.retain,
                    ));
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(options, capacity);
                (Client::V4(client), tokio::spawn(poll_v4(eventloop, tx)))
            }
            MqttVersion::V5 => {
                let mut options =
                    rumqttc::v5::MqttOptions::new(&config.client_id, config.address(), config.port);
                options
                    .set_transport(config.transport())
                    .set_keep_alive(config.keepalive)
                    .set_clean_start(config.clean)
                    .set_outgoing_inflight_upper_limit(WINDOW as u16)
                    .set_max_packet_size(Some(MAX_PACKET as u32))
                    .set_request_channel_capacity(capacity);
                if !config.clean {
                    // A persistent session must outlive the connection for the broker to keep
                    // our subscriptions' messages; a day covers any realistic outage.
                    options.set_session_expiry_interval(Some(24 * 3600));
                }
                if let Some(user) = &config.username {
                    options.set_credentials(user, config.password.clone().unwrap_or_default());
                }
                if let Some(will) = &config.will {
                    options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        &*will.topic,
                        will.payload.to_vec(),
                        v5_qos(will.qos),
                        will.retain,
                        None,
                    ));
                }
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, capacity);
                (Client::V5(client), tokio::spawn(poll_v5(eventloop, tx)))
            }
        };
        (Session { client, poller }, events)
    }

    pub fn try_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
    ) -> Result<(), Busy> {
        match &self.client {
            Client::V4(c) => c
                .try_publish(topic, v4_qos(qos), retain, payload)
                .map_err(|_| Busy),
            Client::V5(c) => c
                .try_publish(topic, v5_qos(qos), retain, payload)
                .map_err(|_| Busy),
        }
    }

    pub fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<(), Busy> {
        self.try_subscribe_with(filter, qos, false)
    }

    /// `no_local`: the broker does not send back what this session publishes (MQTT 5; a 3.1.1
    /// session cannot ask for it).
    pub fn try_subscribe_with(&self, filter: &str, qos: QoS, no_local: bool) -> Result<(), Busy> {
        match &self.client {
            Client::V4(c) => c.try_subscribe(filter, v4_qos(qos)).map_err(|_| Busy),
            Client::V5(c) => {
                let mut filter = rumqttc::v5::mqttbytes::v5::Filter::new(filter, v5_qos(qos));
                filter.nolocal = no_local;
                c.try_subscribe_many([filter]).map_err(|_| Busy)
            }
        }
    }

    pub fn try_unsubscribe(&self, filter: &str) -> Result<(), Busy> {
        match &self.client {
            Client::V4(c) => c.try_unsubscribe(filter).map_err(|_| Busy),
            Client::V5(c) => c.try_unsubscribe(filter).map_err(|_| Busy),
        }
    }

    /// Says goodbye (DISCONNECT, so the broker does not publish a will) when the link is up,
    /// and ends the poller.
    pub async fn close(self, mut events: mpsc::Receiver<SessionEvent>) {
        match &self.client {
            Client::V4(c) => drop(c.try_disconnect()),
            Client::V5(c) => drop(c.try_disconnect()),
        }
        // Give the poller a moment to write the DISCONNECT; a dead link ends it at once.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while events.recv().await.is_some() {}
        })
        .await;
        self.poller.abort();
    }
}

async fn poll_v4(mut eventloop: rumqttc::EventLoop, tx: mpsc::Sender<SessionEvent>) {
    use rumqttc::{ConnectReturnCode, Event, Packet};
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => match ack.code {
                ConnectReturnCode::Success => SessionEvent::Connected,
                code => SessionEvent::Lost(format!("the broker refused the connection: {code:?}")),
            },
            Ok(Event::Incoming(Packet::Publish(p))) => SessionEvent::Received(Message::new(
                p.topic,
                p.payload,
                broker_qos(p.qos as u8),
                p.retain,
            )),
            Ok(Event::Incoming(Packet::PubAck(ack))) => SessionEvent::Acked {
                pkid: ack.pkid,
                refused: None,
            },
            Ok(Event::Incoming(Packet::PubComp(ack))) => SessionEvent::Acked {
                pkid: ack.pkid,
                refused: None,
            },
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => SessionEvent::Sent(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => SessionEvent::Lost("disconnected".into()),
            Ok(_) => continue,
            Err(e) => SessionEvent::Lost(e.to_string()),
        };
        let last = matches!(event, SessionEvent::Lost(_));
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}

async fn poll_v5(mut eventloop: rumqttc::v5::EventLoop, tx: mpsc::Sender<SessionEvent>) {
    use rumqttc::v5::Event;
    use rumqttc::v5::mqttbytes::v5::{
        ConnectReturnCode, Packet, PubAckReason, PubCompReason, PubRecReason,
    };
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => match ack.code {
                ConnectReturnCode::Success => SessionEvent::Connected,
                code => SessionEvent::Lost(format!("the broker refused the connection: {code:?}")),
            },
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(topic) = String::from_utf8(p.topic.to_vec()) else {
                    continue;
                };
                SessionEvent::Received(Message::new(
                    topic,
                    p.payload,
                    broker_qos(p.qos as u8),
                    p.retain,
                ))
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => SessionEvent::Acked {
                pkid: ack.pkid,
                refused: match ack.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                    reason => Some(format!("{reason:?}")),
                },
            },
            // A QoS 2 publish refused at PUBREC ends there; rumqttc still completes it.
            Ok(Event::Incoming(Packet::PubRec(rec)))
                if !matches!(
                    rec.reason,
                    PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                ) =>
            {
                SessionEvent::Acked {
                    pkid: rec.pkid,
                    refused: Some(format!("{:?}", rec.reason)),
                }
            }
            Ok(Event::Incoming(Packet::PubComp(ack))) => SessionEvent::Acked {
                pkid: ack.pkid,
                refused: match ack.reason {
                    PubCompReason::Success => None,
                    reason => Some(format!("{reason:?}")),
                },
            },
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => SessionEvent::Sent(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => SessionEvent::Lost("disconnected".into()),
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                SessionEvent::Lost(format!("the broker disconnected us: {:?}", d.reason_code))
            }
            Ok(_) => continue,
            Err(e) => SessionEvent::Lost(e.to_string()),
        };
        let last = matches!(event, SessionEvent::Lost(_));
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}

fn broker_qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn v4_qos(qos: QoS) -> rumqttc::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

fn v5_qos(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as V5;
    match qos {
        QoS::AtMostOnce => V5::AtMostOnce,
        QoS::AtLeastOnce => V5::AtLeastOnce,
        QoS::ExactlyOnce => V5::ExactlyOnce,
    }
}
