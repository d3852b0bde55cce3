//! What the driver tests share: a real broker and helpers to talk through it.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use broker::{AnonymousOnly, Broker, BrokerConfig, LocalClient, Message, QoS};
use serde_json::Value;

pub async fn broker() -> Broker {
    let config = BrokerConfig {
        allow_anonymous: true,
        ..BrokerConfig::default()
    };
    Broker::start(
        config,
        Arc::new(AnonymousOnly {
            allow_anonymous: true,
        }),
    )
    .unwrap()
}

/// The next message on `topic`, skipping others; its payload as JSON.
pub async fn next_on(client: &mut LocalClient, topic: &str) -> Value {
    let wait = async {
        loop {
            let delivery = client.recv().await.expect("broker link open");
            if &delivery.message.topic[..] == topic {
                return serde_json::from_slice(&delivery.message.payload).unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("nothing on {topic}"))
}

pub async fn send(client: &LocalClient, topic: &str, payload: &'static [u8]) {
    client
        .publish(Message::new(topic, payload, QoS::AtLeastOnce, false))
        .await
        .unwrap();
}
