//! MQTT client connections to remote brokers (cloud, other plants): forwarding with
//! store-and-forward, subscriptions that bring remote messages in, and the components' link to
//! an external broker (`broker.external`). The only module that uses rumqttc.

pub mod connection;
pub mod link;
pub mod queue;
mod session;
mod spool;

pub use connection::QueueSettings;
pub use queue::{Durability, QueueLimits};
