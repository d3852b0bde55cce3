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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use broker::bus::{ExternalBroker, ExternalLink, ExternalLinkEnd, ExternalRequest};
use broker::{Delivery, Message, QoS};
use commissioning::model::{MqttConnection, MqttScheme};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::queue::QueueLimits;
use super::session::{Session, SessionConfig, SessionEvent};
use super::spool::Spool;

/// Publications kept while the external broker is unreachable.
pub const OFFLINE_BUFFER: usize = 10_000;

/// Messages received and not yet taken by the component; beyond this they are dropped.
const INBOX: usize = 4096;

const SYS_PREFIX: &str = "$SYS/ironbridge/";
const EXTERNAL_SYS_PREFIX: &str = "ironbridge/sys/";

/// How `$SYS/ironbridge/` topics travel: as `ironbridge/sys/` on other brokers, which keep
/// `$SYS` to themselves; unchanged on an Ironbridge gateway (an agent's broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysTopics {
    Translated,
    AsTheyAre,
}

impl SysTopics {
    /// A topic or filter as the external broker sees it.
    fn outward(self, topic: &str) -> String {
        match (self, topic.strip_prefix(SYS_PREFIX)) {
            (SysTopics::Translated, Some(rest)) => format!("{EXTERNAL_SYS_PREFIX}{rest}"),
            _ => topic.to_string(),
        }
    }

    /// A received topic as the components know it, when it differs.
    fn inward(self, topic: &str) -> Option<String> {
        match self {
            SysTopics::Translated => topic
                .strip_prefix(EXTERNAL_SYS_PREFIX)
                .map(|rest| format!("{SYS_PREFIX}{rest}")),
            SysTopics::AsTheyAre => None,
        }
    }
}

/// Waits between connection attempts grow to this.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// The external broker every component connects to, from its URL.
pub struct ExternalMqtt {
    url: String,
    connection: MqttConnection,
    links: Arc<LinkCounts>,
    sys_topics: SysTopics,
    /// Put before every component's client id (an agent's), so its sessions never take over
    /// another process's.
    client_prefix: String,
    /// Where each link keeps a store-and-forward queue of its QoS 1/2 publications (agents);
    /// without, publications wait in memory while the broker is away.
    spool: Option<(PathBuf, QueueLimits)>,
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
            sys_topics: SysTopics::Translated,
            client_prefix: String::new(),
            spool: None,
        })
    }

    /// For a protocol-mapper agent and its gateway: `$SYS/ironbridge/` topics stay as they are,
    /// client ids start with `agent/<name>/`, the agent logs in as `username` unless the URL
    /// names a user, and every link queues its QoS 1/2 publications on disk below `spool_dir`
    /// (one SQLite file per link) until the gateway acknowledges them.
    pub fn for_agent(
        mut self,
        name: &str,
        username: &str,
        password: Option<String>,
        spool_dir: PathBuf,
        limits: QueueLimits,
    ) -> ExternalMqtt {
        self.sys_topics = SysTopics::AsTheyAre;
        self.client_prefix = format!("agent/{name}/");
        if self.connection.username.is_none() {
            self.connection.username = Some(username.to_string());
        }
        if self.connection.password.is_none() {
            self.connection.password = password;
        }
        self.spool = Some((spool_dir, limits));
        self
    }

    /// A link that announces itself: the broker publishes `will` when the link is lost without
    /// saying goodbye, and the link publishes `birth` on every connect. Its keep-alive is
    /// `keepalive` (at least 5 s), so a vanished process is noticed within 1.5 times that. It
    /// queues nothing on disk: what it says is current state, superseded by the next birth.
    pub fn announcing_link(
        &self,
        client_id: &str,
        birth: Message,
        will: Message,
        keepalive: Duration,
    ) -> Result<ExternalLink, String> {
        let mut config = self.session_config(client_id)?;
        config.keepalive = keepalive.max(Duration::from_secs(5));
        config.will = Some(will);
        Ok(self.spawn_link(config, Some(birth), None))
    }

    fn session_config(&self, client_id: &str) -> Result<SessionConfig, String> {
        let client_id = format!("{}{client_id}", self.client_prefix);
        let mut connection = self.connection.clone();
        connection.client_id = Some(client_id.clone());
        SessionConfig::new(&connection, &client_id)
    }

    fn spawn_link(
        &self,
        config: SessionConfig,
        birth: Option<Message>,
        spool: Option<(PathBuf, QueueLimits)>,
    ) -> ExternalLink {
        self.links.open.fetch_add(1, Ordering::Relaxed);
        let counts = CountGuard(self.links.clone(), false);
        let sys_topics = self.sys_topics;
        ExternalLink::spawn(INBOX, move |end: ExternalLinkEnd| {
            LinkTask {
                counts,
                config,
                sys_topics,
                birth,
                spool: None,
                requests: end.requests,
                inbox: end.inbox,
                connected: end.connected,
                subscriptions: BTreeMap::new(),
                offline: VecDeque::new(),
                dropped: 0,
            }
            .run(spool)
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
        let config = self.session_config(client_id)?;
        let spool = self.spool.as_ref().map(|(dir, limits)| {
            let file: String = config
                .client_id
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                    _ => '_',
                })
                .collect();
            (dir.join(format!("{file}.sqlite")), *limits)
        });
        Ok(self.spawn_link(config, None, spool))
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
    sys_topics: SysTopics,
    /// Published on every connect (see [`ExternalMqtt::announcing_link`]).
    birth: Option<Message>,
    /// QoS 1/2 publications on disk until acknowledged (agents); opened when the task starts.
    spool: Option<Spool>,
    requests: mpsc::Receiver<ExternalRequest>,
    inbox: mpsc::Sender<Delivery>,
    connected: watch::Sender<bool>,
    /// Filter to (QoS, no-local), made again after every connect.
    subscriptions: BTreeMap<String, (QoS, bool)>,
    /// Publications waiting for the broker in memory: all of them without a spool, QoS 0 ones
    /// with one.
    offline: VecDeque<Message>,
    dropped: u64,
}

/// Why a session ended.
enum SessionEnd {
    Lost(String),
    Finished,
}

impl LinkTask {
    async fn run(mut self, spool: Option<(PathBuf, QueueLimits)>) {
        if let Some((path, limits)) = spool {
            match Spool::open(&path, limits, Arc::default()).await {
                Ok(spool) => {
                    if spool.len() > 0 {
                        info!(client_id = %self.config.client_id, messages = spool.len(), "Messages queued for the broker in an earlier run are sent first");
                    }
                    self.spool = Some(spool);
                }
                // Publications then wait in memory, as without a spool.
                Err(e) => {
                    warn!(client_id = %self.config.client_id, error = %e, "Cannot open the link's queue file; publications wait in memory")
                }
            }
        }
        let mut retry = Duration::from_millis(250);
        loop {
            let (session, mut events) = Session::open(&self.config);
            let end = self.online(&session, &mut events, &mut retry).await;
            let _ = self.connected.send(false);
            self.counts.set_connected(false);
            session.close(events).await;
            self.session_ended().await;
            match end {
                SessionEnd::Finished => break,
                SessionEnd::Lost(reason) => {
                    warn!(client_id = %self.config.client_id, error = %reason, "External broker unreachable; retrying");
                    if self.wait_offline(retry).await {
                        break;
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
        if let Some(spool) = self.spool.take() {
            spool.close().await;
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
                        if let Some(birth) = self.birth.clone() {
                            let _ = self.send(session, &birth);
                        }
                        while let Some(message) = self.offline.pop_front() {
                            if !self.send(session, &message) {
                                self.offline.push_front(message);
                                break;
                            }
                        }
                    }
                    Some(SessionEvent::Received(mut message)) => {
                        if let Some(topic) = self.sys_topics.inward(&message.topic) {
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
                    Some(SessionEvent::Sent(pkid)) => {
                        if let Some(spool) = self.spool.as_mut() {
                            spool.sent(pkid);
                        }
                    }
                    Some(SessionEvent::Acked { pkid, .. }) => {
                        if let Some(spool) = self.spool.as_mut()
                            && spool.acknowledged(pkid)
                            && let Err(e) = spool.flush_acknowledged().await
                        {
                            warn!(client_id = %self.config.client_id, error = %e, "Cannot remove delivered messages from the link's queue; they may be sent again");
                        }
                    }
                    Some(SessionEvent::Lost(reason)) => return SessionEnd::Lost(reason),
                    None => return SessionEnd::Lost("the session ended".into()),
                },
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return SessionEnd::Finished;
                    };
                    if let Some(end) = self.handle(request, connected.then_some(session)).await {
                        return end;
                    }
                }
            }
            if connected && let Err(e) = self.fill_window(session).await {
                return SessionEnd::Lost(e);
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
                    if self.handle(request, None).await.is_some() {
                        return true;
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        request: ExternalRequest,
        session: Option<&Session>,
    ) -> Option<SessionEnd> {
        match request {
            ExternalRequest::Publish(message) => {
                if message.qos != QoS::AtMostOnce
                    && let Some(spool) = self.spool.as_mut()
                {
                    // On disk before anything else happens to it; sent by `fill_window`.
                    if let Err(e) = spool.store(std::slice::from_ref(&message)).await {
                        warn!(client_id = %self.config.client_id, error = %e, "Cannot queue a publication on disk; it waits in memory");
                        self.buffer(message);
                    }
                    return None;
                }
                let sent =
                    session.is_some_and(|s| self.offline.is_empty() && self.send(s, &message));
                if !sent {
                    self.buffer(message);
                }
            }
            ExternalRequest::Subscribe {
                filter,
                options,
                done,
            } => {
                let filter = self.sys_topics.outward(&filter);
                if let Some(session) = session {
                    let _ = session.try_subscribe_with(&filter, options.qos, options.no_local);
                }
                self.subscriptions
                    .insert(filter, (options.qos, options.no_local));
                let _ = done.send(());
            }
            ExternalRequest::Unsubscribe { filter, done } => {
                let filter = self.sys_topics.outward(&filter);
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

    /// Sends one publication now; false when the session cannot take it.
    fn send(&mut self, session: &Session, message: &Message) -> bool {
        let topic = self.sys_topics.outward(&message.topic);
        match self.spool.as_mut() {
            // The spool counts what the session reports sent, so it must see every publish.
            Some(spool) => spool.send_direct(session, &topic, message),
            None => session
                .try_publish(&topic, message.qos, message.retain, message.payload.clone())
                .is_ok(),
        }
    }

    /// Sends what the spool holds, oldest first, as far as the window allows.
    async fn fill_window(&mut self, session: &Session) -> Result<(), String> {
        let sys_topics = self.sys_topics;
        match self.spool.as_mut() {
            Some(spool) => spool.fill_window(session, |t| sys_topics.outward(t)).await,
            None => Ok(()),
        }
    }

    /// What was in flight is sent again by the next session.
    async fn session_ended(&mut self) {
        if let Some(spool) = self.spool.as_mut() {
            if let Err(e) = spool.flush_acknowledged().await {
                warn!(client_id = %self.config.client_id, error = %e, "Cannot remove delivered messages from the link's queue; they may be sent again");
            }
            spool.session_ended();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_topics_leave_sys_on_external_brokers() {
        let sys = SysTopics::Translated;
        let topic = "$SYS/ironbridge/services/plc/status";
        assert_eq!(sys.outward(topic), "ironbridge/sys/services/plc/status");
        assert_eq!(sys.inward(&sys.outward(topic)).as_deref(), Some(topic));
        assert_eq!(sys.outward("services/plc/temp"), "services/plc/temp");
        assert_eq!(sys.inward("services/plc/temp"), None);
        assert_eq!(sys.outward("$SYS/broker/uptime"), "$SYS/broker/uptime");
    }

    #[test]
    fn an_agent_keeps_sys_topics_for_its_gateway() {
        let sys = SysTopics::AsTheyAre;
        let topic = "$SYS/ironbridge/services/line/connections/press/status";
        assert_eq!(sys.outward(topic), topic);
        assert_eq!(sys.inward(topic), None);
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
