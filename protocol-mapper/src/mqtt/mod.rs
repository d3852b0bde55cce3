//! MQTT client connections to remote brokers (cloud, other plants): forwarding with
//! store-and-forward, and subscriptions that bring remote messages in. The only module that
//! uses rumqttc.

pub mod connection;
pub mod queue;
pub mod remote;
mod session;
mod tls;

pub use connection::{DELIVERY_QUEUE, QueueSettings};
pub use queue::{Durability, QueueLimits};
pub use remote::{Delivery, ForwardingStats, RemoteBroker};
