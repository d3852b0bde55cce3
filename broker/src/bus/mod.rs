//! The bus: how the gateway's components (connections, mappings, the supervisor) reach the
//! broker. Either the in-process link of the gateway's own broker ([`LocalClient`]: no socket,
//! no encoding) or, with `broker.external`, one session per component with an existing broker
//! ([`ExternalLink`], served by an [`ExternalBroker`] implementation). Components see one face
//! either way: a [`Connector`] to make links, a [`Link`] to publish, subscribe and receive.
//!
//! A mapping reaches an MQTT connection to a remote broker (a cloud) through a
//! [`RemoteBroker`] handle: forwarding with store-and-forward, and remote subscriptions.

mod external;
mod remote;

use std::sync::Arc;

pub use external::{ExternalBroker, ExternalLink, ExternalLinkEnd, ExternalRequest};
pub use remote::{
    DELIVERY_QUEUE, ForwardingStats, LinkCounters, OUTBOX, QueueCounters, RemoteBroker,
    RemoteBrokerEnd, RemoteDelivery, SubscriptionCommand,
};

use crate::{BrokerHandle, Delivery, LinkError, LocalClient, Message, QoS, ReasonCode};
use crate::{SubscriptionOptions, topic};

/// Where components connect.
#[derive(Clone)]
pub enum Connector {
    Local(BrokerHandle),
    External(Arc<dyn ExternalBroker>),
}

impl From<BrokerHandle> for Connector {
    fn from(handle: BrokerHandle) -> Connector {
        Connector::Local(handle)
    }
}

impl From<&BrokerHandle> for Connector {
    fn from(handle: &BrokerHandle) -> Connector {
        Connector::Local(handle.clone())
    }
}

impl From<&Connector> for Connector {
    fn from(connector: &Connector) -> Connector {
        connector.clone()
    }
}

impl Connector {
    /// A link for one component. Client ids of components start with `ironbridge/`.
    pub async fn connect(&self, client_id: &str) -> Result<Link, LinkError> {
        match self {
            Connector::Local(handle) => Ok(Link::Local(handle.connect_local(client_id).await?)),
            Connector::External(broker) => broker
                .link(client_id)
                .map(Link::External)
                .map_err(|_| LinkError::Refused(ReasonCode::UNSPECIFIED_ERROR)),
        }
    }
}

/// A component's link to the broker.
pub enum Link {
    Local(LocalClient),
    External(ExternalLink),
}

impl From<LocalClient> for Link {
    fn from(client: LocalClient) -> Link {
        Link::Local(client)
    }
}

impl Link {
    pub async fn publish(&self, message: Message) -> Result<(), LinkError> {
        match self {
            Link::Local(client) => client.publish(message).await,
            Link::External(link) => {
                if !topic::is_valid_topic_name(&message.topic) {
                    return Err(LinkError::InvalidTopic(message.topic.to_string()));
                }
                link.publish(message).await
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<ReasonCode, LinkError> {
        self.subscribe_with(filter, SubscriptionOptions::at(qos))
            .await
    }

    /// Subscribes with MQTT 5 options (`no_local` reaches an external broker too).
    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<ReasonCode, LinkError> {
        match self {
            Link::Local(client) => client.subscribe_with(filter, options).await,
            Link::External(link) => {
                if !topic::is_valid_topic_filter(filter) {
                    return Err(LinkError::InvalidFilter(filter.to_string()));
                }
                link.subscribe(filter, options).await?;
                Ok(ReasonCode(options.qos as u8))
            }
        }
    }

    pub async fn unsubscribe(&mut self, filter: &str) -> Result<ReasonCode, LinkError> {
        match self {
            Link::Local(client) => client.unsubscribe(filter).await,
            Link::External(link) => {
                link.unsubscribe(filter).await?;
                Ok(ReasonCode::SUCCESS)
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        match self {
            Link::Local(client) => client.recv().await,
            Link::External(link) => link.recv().await,
        }
    }

    pub async fn disconnect(self) {
        match self {
            Link::Local(client) => client.disconnect().await,
            Link::External(link) => link.disconnect().await,
        }
    }
}
