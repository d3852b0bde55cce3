//! The gateway's [`ExternalBroker`] (`broker.external`): each component's [`ExternalLink`] is
//! served by one rumqttc session, so components see the same face as the in-process link
//! ([`broker::bus::Link`]).
//!
//! The link keeps trying: while the broker is unreachable, publications wait in a bounded
//! buffer (the oldest are dropped beyond [`OFFLINE_BUFFER`], counted and logged) and
//! subscriptions are remembered; after every (re)connect the subscriptions are made again
//! (the session is clean: the broker keeps nothing for us) and the buffer is sent in order.
//!
//! Brokers keep `$SYS/` for themselves (Mosquitto drops clients' publications there), so the
//! gateway's own status topics, `$SYS/ironbridge/...`, travel as `ironbridge/sys/...` on an
//! external broker, both ways.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broker::bus::{ExternalBroker, ExternalLink, ExternalLinkEnd, ExternalRequest};
use broker::{Delivery, Message, QoS};
use commissioning::model::{MqttConnection, MqttScheme};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::session::{Session, SessionConfig, SessionEvent};

/// Publications kept while the external broker is unreachable.
pub const OFFLINE_BUFFER: usize = 10_000;

/// Messages received and not yet taken by the component; beyond this they are dropped.
const INBOX: usize = 4096;

const SYS_PREFIX: &str = "$SYS/ironbridge/";
const EXTERNAL_SYS_PREFIX: &str = "ironbridge/sys/";

/// A topic or filter as the external broker sees it.
fn outward(topic: &str) -> String {
    match topic.strip_prefix(SYS_PREFIX) {
        Some(rest) => format!("{EXTERNAL_SYS_PREFIX}{rest}"),
        None => topic.to_string(),
    }
}

/// A received topic as the components know it.
fn inward(topic: &str) -> Option<String> {
    topic
        .strip_prefix(EXTERNAL_SYS_PREFIX)
        .map(|rest| format!("{SYS_PREFIX}{rest}"))
}

/// Waits between connection attempts grow to this.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// The external broker every component connects to, from its URL.
pub struct ExternalMqtt {
    url: String,
    connection: MqttConnection,
    links: Arc<LinkCounts>,
}

/// How many component links exist and how many are connected now (for the health check).
#[derive(Debug, Default)]
pub struct LinkCounts {
    pub open: AtomicU64,
    pub connected: AtomicU64,
}

impl ExternalMqtt {
    /// `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS with the system's roots).
    /// MQTT 5 is spoken, so mappings can subscribe without hearing their own messages.
    pub fn from_url(url: &str) -> Result<ExternalMqtt, String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("broker.external {url:?} is not a URL: {e}"))?;
        let scheme = match parsed.scheme() {
            "mqtt" | "tcp" => "mqtt",
            "mqtts" | "ssl" => "mqtts",
            other => {
                return Err(format!(
                    "broker.external: scheme {other:?} is not supported; use mqtt:// or mqtts://"
                ));
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("broker.external {url:?} names no host"))?;
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = (!parsed.username().is_empty()).then(|| decode(parsed.username()));
        let password = parsed.password().map(decode);
        let connection: MqttConnection = serde_json::from_value(serde_json::json!({
            "host": host.trim_start_matches('[').trim_end_matches(']'),
            "port": parsed.port(),
            "scheme": scheme,
            "protocolVersion": 5,
            "username": username,
            "password": password,
            "keepalive": 30,
        }))
        .map_err(|e| format!("broker.external {url:?}: {e}"))?;
        // Checks the TLS settings once, at start.
        SessionConfig::new(&connection, "ironbridge")?;
        let mut shown = parsed.clone();
        let _ = shown.set_password(None);
        Ok(ExternalMqtt {
            url: shown.to_string(),
            connection,
            links: Arc::default(),
        })
    }

    pub fn host(&self) -> &str {
        &self.connection.host
    }

    /// The port, or MQTT's default for the scheme.
    pub fn port(&self) -> u16 {
        self.connection
            .port
            .unwrap_or(match self.connection.scheme {
                MqttScheme::Mqtts => 8883,
                _ => 1883,
            })
    }
}

impl ExternalBroker for ExternalMqtt {
    fn display_url(&self) -> &str {
        &self.url
    }

    fn links(&self) -> (u64, u64) {
        (
            self.links.open.load(Ordering::Relaxed),
            self.links.connected.load(Ordering::Relaxed),
        )
    }

    fn link(&self, client_id: &str) -> Result<ExternalLink, String> {
        let mut connection = self.connection.clone();
        connection.client_id = Some(client_id.to_string());
        let config = SessionConfig::new(&connection, client_id)?;
        self.links.open.fetch_add(1, Ordering::Relaxed);
        let counts = CountGuard(self.links.clone(), false);
        Ok(ExternalLink::spawn(INBOX, move |end: ExternalLinkEnd| {
            LinkTask {
                counts,
                config,
                requests: end.requests,
                inbox: end.inbox,
                connected: end.connected,
                subscriptions: BTreeMap::new(),
                offline: VecDeque::new(),
                dropped: 0,
            }
            .run()
        }))
    }
}

/// Keeps [`LinkCounts`] true however the task ends (finished, aborted, panicked).
struct CountGuard(Arc<LinkCounts>, bool);

impl CountGuard {
    fn set_connected(&mut self, connected: bool) {
        if self.1 != connected {
            self.1 = connected;
            match connected {
                true => self.0.connected.fetch_add(1, Ordering::Relaxed),
                false => self.0.connected.fetch_sub(1, Ordering::Relaxed),
            };
        }
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.set_connected(false);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

struct LinkTask {
    counts: CountGuard,
    config: SessionConfig,
    requests: mpsc::Receiver<ExternalRequest>,
    inbox: mpsc::Sender<Delivery>,
    connected: watch::Sender<bool>,
    /// Filter to (QoS, no-local), made again after every connect.
    subscriptions: BTreeMap<String, (QoS, bool)>,
    offline: VecDeque<Message>,
    dropped: u64,
}

/// Why a session ended.
enum SessionEnd {
    Lost(String),
    Finished,
}

impl LinkTask {
    async fn run(mut self) {
        let mut retry = Duration::from_millis(250);
        loop {
            let (session, mut events) = Session::open(&self.config);
            let end = self.online(&session, &mut events, &mut retry).await;
            let _ = self.connected.send(false);
            self.counts.set_connected(false);
            session.close(events).await;
            match end {
                SessionEnd::Finished => return,
                SessionEnd::Lost(reason) => {
                    warn!(client_id = %self.config.client_id, error = %reason, "External broker unreachable; retrying");
                    if self.wait_offline(retry).await {
                        return;
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    async fn online(
        &mut self,
        session: &Session,
        events: &mut mpsc::Receiver<SessionEvent>,
        retry: &mut Duration,
    ) -> SessionEnd {
        let mut connected = false;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(SessionEvent::Connected) => {
                        connected = true;
                        *retry = Duration::from_millis(250);
                        let _ = self.connected.send(true);
                        self.counts.set_connected(true);
                        info!(client_id = %self.config.client_id, "Connected to the external broker");
                        for (filter, (qos, no_local)) in &self.subscriptions {
                            let _ = session.try_subscribe_with(filter, *qos, *no_local);
                        }
                        while let Some(message) = self.offline.pop_front() {
                            if !send(session, &message) {
                                self.offline.push_front(message);
                                break;
                            }
                        }
                    }
                    Some(SessionEvent::Received(mut message)) => {
                        if let Some(topic) = inward(&message.topic) {
                            message.topic = topic.into();
                        }
                        let delivery = Delivery {
                            qos: message.qos,
                            retain: message.retain,
                            message: Arc::new(message),
                            subscription_ids: Vec::new(),
                        };
                        // A component that stopped reading must not stall the others' link.
                        let _ = self.inbox.try_send(delivery);
                    }
                    Some(SessionEvent::Lost(reason)) => return SessionEnd::Lost(reason),
                    None => return SessionEnd::Lost("the session ended".into()),
                    Some(_) => {}
                },
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return SessionEnd::Finished;
                    };
                    if let Some(end) = self.handle(request, connected.then_some(session)) {
                        return end;
                    }
                }
            }
        }
    }

    /// Between sessions: buffers publications, remembers subscriptions. True when finished.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return false,
                request = self.requests.recv() => {
                    let Some(request) = request else { return true };
                    if self.handle(request, None).is_some() {
                        return true;
                    }
                }
            }
        }
    }

    fn handle(
        &mut self,
        request: ExternalRequest,
        session: Option<&Session>,
    ) -> Option<SessionEnd> {
        match request {
            ExternalRequest::Publish(message) => {
                let sent = session.is_some_and(|s| self.offline.is_empty() && send(s, &message));
                if !sent {
                    self.buffer(message);
                }
            }
            ExternalRequest::Subscribe {
                filter,
                options,
                done,
            } => {
                let filter = outward(&filter);
                if let Some(session) = session {
                    let _ = session.try_subscribe_with(&filter, options.qos, options.no_local);
                }
                self.subscriptions
                    .insert(filter, (options.qos, options.no_local));
                let _ = done.send(());
            }
            ExternalRequest::Unsubscribe { filter, done } => {
                let filter = outward(&filter);
                if self.subscriptions.remove(&filter).is_some()
                    && let Some(session) = session
                {
                    let _ = session.try_unsubscribe(&filter);
                }
                let _ = done.send(());
            }
            ExternalRequest::Disconnect(done) => {
                let _ = done.send(());
                return Some(SessionEnd::Finished);
            }
        }
        None
    }

    fn buffer(&mut self, message: Message) {
        if self.offline.len() >= OFFLINE_BUFFER {
            self.offline.pop_front();
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                warn!(client_id = %self.config.client_id, dropped = self.dropped, "External broker unreachable for long: oldest buffered messages dropped");
            }
        }
        self.offline.push_back(message);
    }
}

fn send(session: &Session, message: &Message) -> bool {
    session
        .try_publish(
            &outward(&message.topic),
            message.qos,
            message.retain,
            message.payload.clone(),
        )
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_topics_leave_sys_on_external_brokers() {
        let topic = "$SYS/ironbridge/services/plc/status";
        assert_eq!(outward(topic), "ironbridge/sys/services/plc/status");
        assert_eq!(inward(&outward(topic)).as_deref(), Some(topic));
        assert_eq!(outward("services/plc/temp"), "services/plc/temp");
        assert_eq!(inward("services/plc/temp"), None);
        assert_eq!(outward("$SYS/broker/uptime"), "$SYS/broker/uptime");
    }

    #[test]
    fn urls_name_scheme_host_port_and_credentials() {
        let broker =
            ExternalMqtt::from_url("mqtt://gw%40plant:s3cr%2Ft@broker.local:1884").expect("valid");
        assert_eq!(broker.connection.host, "broker.local");
        assert_eq!(broker.connection.port, Some(1884));
        assert_eq!(broker.connection.username.as_deref(), Some("gw@plant"));
        assert_eq!(broker.connection.password.as_deref(), Some("s3cr/t"));
        assert!(
            !broker.display_url().contains("s3cr"),
            "{}",
            broker.display_url()
        );
        let plain = ExternalMqtt::from_url("mqtt://10.0.0.7").expect("valid");
        assert_eq!(plain.connection.port, None);
        assert!(plain.connection.username.is_none());
        for bad in ["http://x", "mqtt://", "not a url"] {
            assert!(ExternalMqtt::from_url(bad).is_err(), "{bad}");
        }
    }
}
