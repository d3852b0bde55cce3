//! What the driver tests share: a real broker and helpers to talk through it.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use broker::{AnonymousOnly, Broker, BrokerConfig, LocalClient, Message, QoS};
use protocol_mapper::driver::ConnectionHandle;
use protocol_mapper::status::ConnectionState;
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

/// A client of the broker subscribed to `filter`, to watch what a connection publishes.
pub async fn observer(broker: &Broker, filter: &str) -> LocalClient {
    let mut client = broker
        .handle()
        .connect_local("test/observer")
        .await
        .unwrap();
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    client
}

/// Waits up to 10 s for the connection to be in `state`.
pub async fn wait_for_state(handle: &ConnectionHandle, state: ConnectionState) {
    for _ in 0..200 {
        if handle.status().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "still {:?} ({:?}), expected {state:?}",
        handle.status().state,
        handle.status().last_error
    );
}

/// Waits up to 10 s for an error on endpoint `id`.
pub async fn endpoint_error(handle: &ConnectionHandle, id: &str) -> String {
    for _ in 0..200 {
        if let Some(error) = handle.endpoint_error(id) {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no error on {id}");
}
