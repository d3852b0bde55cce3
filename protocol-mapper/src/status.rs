//! Connection states, published retained on
//! `$SYS/ironbridge/services/<service>/connections/<resource>/status`.

use serde::Serialize;

use broker::bus::ForwardingStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    Connecting,
    Connected,
    Reconnecting,
    Disconnected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    /// Unix milliseconds of the last state change.
    pub since: i64,
    pub last_error: Option<String>,
    /// MQTT connections only: the store-and-forward queue and message counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<ForwardingStats>,
}

impl ConnectionStatus {
    pub fn new(state: ConnectionState) -> ConnectionStatus {
        ConnectionStatus {
            state,
            since: crate::envelope::now_millis(),
            last_error: None,
            forwarding: None,
        }
    }
}

pub fn connection_status_topic(service: &str, resource: &str) -> String {
    format!("$SYS/ironbridge/services/{service}/connections/{resource}/status")
}
