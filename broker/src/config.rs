//! Broker settings: limits that protect the process and the knobs MQTT 5 announces in CONNACK.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings for one broker instance. Every field has a default suited to a plant's edge gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Accept clients that send no user name. The gateway turns this off once users exist.
    pub allow_anonymous: bool,
    /// Largest packet accepted or sent, in bytes (announced to MQTT 5 clients).
    pub max_packet_size: u32,
    /// Concurrent network connections; more are refused at accept.
    pub max_connections: usize,
    /// Sessions kept, online and offline; a client needing a new one beyond this is refused
    /// (CONNACK 0x97 quota exceeded / 3.1.1 server unavailable).
    pub max_sessions: usize,
    /// Unacknowledged QoS 1/2 messages towards one client (capped by the client's receive maximum).
    pub max_inflight: u16,
    /// QoS 2 messages from one client awaiting PUBREL (announced as receive maximum).
    pub receive_maximum: u16,
    /// Messages waiting for one session, online or offline; further ones are dropped and counted.
    pub max_queued_messages: usize,
    /// Bytes (topics and payloads) waiting for one session; further messages are dropped and
    /// counted, like Mosquitto's `max_queued_bytes`.
    pub max_queued_bytes: usize,
    /// Highest keep alive accepted; a client asking for more (or for none) is told this one.
    pub max_keep_alive: u16,
    /// Topic aliases a client may use towards the broker (MQTT 5).
    pub topic_alias_maximum: u16,
    /// Retained messages kept at most; new retained topics beyond this are not stored.
    pub max_retained_messages: usize,
    /// Bytes (topics and payloads) of all retained messages; a new or larger retained message
    /// beyond it is delivered but not kept, and counted.
    pub max_retained_bytes: usize,
    /// Session expiry for 3.1.1 clients that connect with clean session off, in seconds
    /// (`None`: they never expire, as the 3.1.1 standard says).
    pub persistent_session_expiry: Option<u32>,
    /// Time a new connection has to send CONNECT, in seconds.
    pub connect_timeout_secs: u64,
    /// How often `$SYS` topics are published, in seconds (0 turns them off).
    pub sys_interval_secs: u64,
    /// Where retained messages and sessions are saved; `None` keeps everything in memory.
    pub persistence_dir: Option<PathBuf>,
    /// How often changed state is saved, in seconds; everything is saved on shutdown as well.
    /// Each save rewrites the whole snapshot, so the interval bounds both the loss window after a
    /// crash and the write load on the storage (flash wears).
    pub autosave_interval_secs: u64,
    /// Read by the gateway, not by this broker: `mqtt(s)://[user:password@]host[:port]` of an
    /// existing broker that every gateway component connects to instead, with this broker not
    /// started at all.
    pub external: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            allow_anonymous: false,
            max_packet_size: 1024 * 1024,
            max_connections: 100_000,
            max_sessions: 200_000,
            max_inflight: 1024,
            receive_maximum: 1024,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_keep_alive: 3600,
            topic_alias_maximum: 64,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 256 * 1024 * 1024,
            persistent_session_expiry: None,
            connect_timeout_secs: 10,
            sys_interval_secs: 10,
            persistence_dir: None,
            autosave_interval_secs: 60,
            external: None,
        }
    }
}

impl BrokerConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    /// Every problem with the settings, so an operator can fix them in one go.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.max_packet_size < 64 {
            problems.push(format!(
                "broker.max_packet_size: {} is below 64 bytes",
                self.max_packet_size
            ));
        }
        if self.max_packet_size > 268_435_455 {
            problems.push("broker.max_packet_size: MQTT allows at most 268435455 bytes".into());
        }
        if self.max_inflight == 0 {
            problems.push("broker.max_inflight: must be at least 1".into());
        }
        if self.receive_maximum == 0 {
            problems.push("broker.receive_maximum: must be at least 1".into());
        }
        if self.max_queued_messages == 0 {
            problems.push("broker.max_queued_messages: must be at least 1".into());
        }
        if self.max_queued_bytes < self.max_packet_size as usize {
            problems.push(
                "broker.max_queued_bytes: must be at least broker.max_packet_size, or the largest messages could never be queued".into(),
            );
        }
        if u32::try_from(self.max_queued_bytes).is_err() {
            problems.push(
                "broker.max_queued_bytes: must be at most 4294967295 (4 GiB) per session".into(),
            );
        }
        if self.max_sessions == 0 {
            problems.push("broker.max_sessions: must be at least 1".into());
        }
        if self.max_connections == 0 {
            problems.push("broker.max_connections: must be at least 1".into());
        }
        if self.autosave_interval_secs == 0 {
            problems.push("broker.autosave_interval_secs: must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
