//! How gateway components (connections, mappings, the supervisor) reach the broker: the
//! in-process link of the gateway's own broker, or, with `broker.external`, an MQTT session
//! with an existing broker. Components see one face either way.

use std::sync::Arc;

use broker::{BrokerHandle, Delivery, LinkError, LocalClient, Message, QoS, ReasonCode};
use broker::{SubscriptionOptions, topic};

use crate::mqtt::link::{ExternalBroker, RemoteLink};

/// Where components connect.
#[derive(Clone)]
pub enum Connector {
    Local(BrokerHandle),
    External(Arc<ExternalBroker>),
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
                .map(Link::Remote)
                .map_err(|_| LinkError::Refused(ReasonCode::UNSPECIFIED_ERROR)),
        }
    }
}

/// A component's link to the broker.
pub enum Link {
    Local(LocalClient),
    Remote(RemoteLink),
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
            Link::Remote(link) => {
                if !topic::is_valid_topic_name(&message.topic) {
                    return Err(LinkError::InvalidTopic(message.topic.to_string()));
                }
                link.publish(message)
                    .await
                    .map_err(|_| LinkError::BrokerGone)
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<ReasonCode, LinkError> {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.subscribe_with(filter, options).await
    }

    /// Subscribes with MQTT 5 options (`no_local` reaches an external broker too).
    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<ReasonCode, LinkError> {
        match self {
            Link::Local(client) => client.subscribe_with(filter, options).await,
            Link::Remote(link) => {
                if !topic::is_valid_topic_filter(filter) {
                    return Err(LinkError::InvalidFilter(filter.to_string()));
                }
                link.subscribe(filter, options)
                    .await
                    .map_err(|_| LinkError::BrokerGone)?;
                Ok(ReasonCode(options.qos as u8))
            }
        }
    }

    pub async fn unsubscribe(&mut self, filter: &str) -> Result<ReasonCode, LinkError> {
        match self {
            Link::Local(client) => client.unsubscribe(filter).await,
            Link::Remote(link) => {
                link.unsubscribe(filter)
                    .await
                    .map_err(|_| LinkError::BrokerGone)?;
                Ok(ReasonCode::SUCCESS)
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Delivery> {
        match self {
            Link::Local(client) => client.recv().await,
            Link::Remote(link) => link.recv().await,
        }
    }

    pub async fn disconnect(self) {
        match self {
            Link::Local(client) => client.disconnect().await,
            Link::Remote(link) => link.disconnect().await,
        }
    }
}
