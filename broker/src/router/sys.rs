//! `$SYS` topics: broker statistics, published retained every `sys_interval_secs`.

use std::sync::Arc;

use crate::codec::QoS;
use crate::message::Message;
use crate::metrics::Metrics;

use super::Router;

impl Router {
    pub(super) fn publish_sys(&mut self) {
        let m = &self.metrics;
        let values: [(&str, String); 14] = [
            (
                "$SYS/broker/version",
                format!("ironbridge {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "$SYS/broker/uptime",
                format!("{} seconds", self.started.elapsed().as_secs()),
            ),
            (
                "$SYS/broker/clients/connected",
                self.sessions_online().to_string(),
            ),
            ("$SYS/broker/clients/total", self.sessions.len().to_string()),
            (
                "$SYS/broker/clients/refused",
                Metrics::get(&m.connections_refused).to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                Metrics::get(&m.messages_received).to_string(),
            ),
            (
                "$SYS/broker/messages/sent",
                Metrics::get(&m.messages_sent).to_string(),
            ),
            (
                "$SYS/broker/messages/dropped",
                Metrics::get(&m.messages_dropped).to_string(),
            ),
            (
                "$SYS/broker/messages/denied",
                Metrics::get(&m.publishes_denied).to_string(),
            ),
            (
                "$SYS/broker/bytes/received",
                Metrics::get(&m.bytes_received).to_string(),
            ),
            (
                "$SYS/broker/bytes/sent",
                Metrics::get(&m.bytes_sent).to_string(),
            ),
            (
                "$SYS/broker/subscriptions/count",
                self.tree.len().to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                self.retained.len().to_string(),
            ),
            (
                "$SYS/broker/protocol errors",
                Metrics::get(&m.protocol_errors).to_string(),
            ),
        ];
        // $SYS values are regenerated at start, so they never make the state worth saving.
        let dirty = self.dirty;
        for (topic, value) in values {
            self.route(Arc::new(Message::new(topic, value, QoS::AtMostOnce, true)));
        }
        self.dirty = dirty;
    }
}
