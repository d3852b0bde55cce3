//! `$SYS` topics: broker statistics, published retained every `sys_interval_secs`.

use std::sync::Arc;

use crate::codec::QoS;
use crate::message::Message;
use crate::metrics::Metrics;

use super::Router;

impl Router {
    pub(super) fn publish_sys(&mut self) {
        let m = &self.metrics;
        let counters = [
            ("clients/refused", &m.connections_refused),
            ("connections/total", &m.connections_total),
            ("messages/received", &m.messages_received),
            ("messages/sent", &m.messages_sent),
            ("messages/internal", &m.messages_internal),
            ("messages/dropped", &m.messages_dropped),
            ("messages/denied", &m.publishes_denied),
            ("bytes/received", &m.bytes_received),
            ("bytes/sent", &m.bytes_sent),
            ("subscriptions/denied", &m.subscriptions_denied),
            (
                "messages/dropped/queue bytes",
                &m.messages_dropped_queue_bytes,
            ),
            ("retained messages/dropped", &m.retained_dropped),
            ("deliveries/denied", &m.deliveries_denied),
            ("protocol errors", &m.protocol_errors),
        ];
        let mut values: Vec<(&str, String)> = vec![
            (
                "version",
                format!("ironbridge {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "uptime",
                format!("{} seconds", self.started.elapsed().as_secs()),
            ),
            ("clients/connected", self.sessions_online().to_string()),
            ("clients/total", self.sessions.len().to_string()),
            ("subscriptions/count", self.tree.len().to_string()),
            ("retained messages/count", self.retained.len().to_string()),
            ("retained messages/bytes", self.retained.bytes().to_string()),
        ];
        values.extend(
            counters
                .iter()
                .map(|(name, c)| (*name, Metrics::get(c).to_string())),
        );
        // $SYS values are regenerated at start, so they never make the state worth saving.
        let dirty = self.dirty;
        for (name, value) in values {
            let topic = format!("$SYS/broker/{name}");
            self.route(Arc::new(Message::new(topic, value, QoS::AtMostOnce, true)));
        }
        self.dirty = dirty;
    }
}
