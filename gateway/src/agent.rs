//! `ironbridge agent`: a protocol-mapper agent. It runs the connections, endpoints and mappings
//! that enabled services place on it (`agentName`), next to the machines, and talks to its
//! gateway over outbound MQTT only: it logs in as the user named like the agent, takes its work
//! from `$ironbridge/agents/<name>/services/+` and reports back (see `agent_board`).
//!
//! What it has accepted survives it: every QoS 1/2 message its parts publish is in a queue file
//! below `<data dir>/spool/` before it is sent, and leaves only when the gateway's broker
//! acknowledges it. Its work is kept below `<data dir>/work/`, so after a restart it polls again
//! at once, whether or not the gateway is there.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use admin::services::{AgentWork, ResourceRuntime};
use broker::bus::{Connector, ExternalBroker, ExternalLink};
use broker::{Message, QoS, SubscriptionOptions};
use commissioning::{Environment, Service};
use protocol_mapper::mqtt::QueueLimits;
use protocol_mapper::mqtt::link::ExternalMqtt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent_board::{Presence, Report, resource_topic, status_topic, work_topic};
use crate::supervisor::{Place, Supervisor, publish_statuses};

/// How often the resources' states are compared with what was last reported.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Counters change with every value, states seldom: a resource whose state is as reported is
/// reported again for its counters only every this many report intervals, so an agent of a
/// thousand endpoints does not send a thousand messages a second over its uplink.
const METRICS_EVERY_REPORTS: u64 = 10;
/// The control link's keep-alive: the broker publishes the agent's will within 1.5 times this.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// What `agentName` says, and the agent's user on the gateway.
    pub name: String,
    /// `mqtt://[user[:password]@]host[:port]` or `mqtts://...`: the gateway's broker.
    pub broker: String,
    /// The agent user's password when the URL has none.
    pub password: Option<String>,
    pub data_dir: PathBuf,
    pub allow_insecure_data_dir: bool,
    /// Bounds of the queue files.
    pub queue_limits: QueueLimits,
}

/// Runs the agent until `stop`.
pub async fn run(options: AgentOptions, stop: CancellationToken) -> anyhow::Result<()> {
    if !commissioning::service::is_valid_agent_name(&options.name) {
        anyhow::bail!(
            "agent name {:?}: use 1-64 letters, digits, `-`, `_` or `.`, as in the services' agentName",
            options.name
        );
    }
    crate::data_dir::prepare(&options.data_dir, options.allow_insecure_data_dir)?;
    let name = options.name.clone();
    let external = Arc::new(
        ExternalMqtt::from_url(&options.broker)
            .map_err(anyhow::Error::msg)?
            .for_agent(
                &name,
                &name,
                options.password.clone(),
                options.data_dir.join("spool"),
                options.queue_limits,
            ),
    );
    let connector = Connector::External(external.clone());
    let (supervisor, statuses) = Supervisor::new(
        &options.data_dir,
        options.queue_limits,
        Place::Agent(name.clone()),
    );
    let supervisor = Arc::new(supervisor);
    supervisor.attach(connector.clone());
    let background = CancellationToken::new();
    tokio::spawn(publish_statuses(
        connector.clone(),
        statuses,
        background.clone(),
    ));

    let presence = |online: bool| {
        Message::new(
            status_topic(&name),
            Presence::new(online).to_json(),
            QoS::AtLeastOnce,
            true,
        )
    };
    let mut control = external
        .announcing_link("control", presence(true), presence(false), KEEP_ALIVE)
        .map_err(anyhow::Error::msg)?;
    control
        .subscribe(
            &work_topic(&name, "+"),
            SubscriptionOptions::at(QoS::AtLeastOnce),
        )
        .await?;

    let mut agent = Agent {
        name: name.clone(),
        supervisor,
        work_dir: options.data_dir.join("work"),
        applied: BTreeMap::new(),
        failed: HashMap::new(),
        reported: HashMap::new(),
        was_connected: false,
        reports: 0,
    };
    agent.resume().await;
    info!(agent = %name, broker = %external.display_url(), "Agent started");
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            delivery = control.recv() => match delivery {
                Some(delivery) => agent.take(&delivery.message.topic, &delivery.message.payload).await,
                None => break,
            },
            _ = ticker.tick() => agent.report(&control).await,
        }
    }
    agent.stop_all().await;
    // A clean goodbye sends no will, so the agent says it is going.
    let _ = control.publish(presence(false)).await;
    control.disconnect().await;
    background.cancel();
    info!(agent = %name, "Agent stopped");
    Ok(())
}

struct Agent {
    name: String,
    supervisor: Arc<Supervisor>,
    /// The work of each service, as last received (secrets included: owner-only files).
    work_dir: PathBuf,
    /// Service id to the work it runs and the service resolved from it.
    applied: BTreeMap<String, (AgentWork, Service)>,
    /// Resources that could not start, with why.
    failed: HashMap<(String, String), String>,
    /// What was last reported of each resource, per (service, resource).
    reported: HashMap<(String, String), Report>,
    /// Whether the control link was up at the last report.
    was_connected: bool,
    /// Reports made, to send counters every [`METRICS_EVERY_REPORTS`].
    reports: u64,
}

impl Agent {
    /// Starts the work kept from the last run, so a restarted agent polls at once even
    /// without its gateway. What the gateway sends later replaces it.
    async fn resume(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.work_dir) else {
            return;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.extension().is_none_or(|extension| extension != "json") {
                continue;
            }
            let work = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<AgentWork>(&bytes).ok());
            match work {
                Some(work) => self.apply(work).await,
                None => {
                    warn!(file = %path.display(), "Kept work is unreadable; waiting for the gateway to send it again")
                }
            }
        }
    }

    /// A message on the work topic: a service's work, or (empty) its withdrawal.
    async fn take(&mut self, topic: &str, payload: &[u8]) {
        let Some(service) = topic.rsplit('/').next() else {
            return;
        };
        if payload.is_empty() {
            self.remove(service).await;
            return;
        }
        match serde_json::from_slice::<AgentWork>(payload) {
            Ok(work) if work.service == service => self.apply(work).await,
            Ok(_) | Err(_) => {
                warn!(topic = %topic, "Unreadable work from the gateway; ignored")
            }
        }
    }

    /// Runs the agent's part of a service: resolves the file as the gateway did and starts
    /// every resource in order (the supervisor keeps those of other places as references, so
    /// mappings here can name endpoints elsewhere). The same work again changes nothing.
    async fn apply(&mut self, work: AgentWork) {
        if self
            .applied
            .get(&work.service)
            .is_some_and(|(current, _)| *current == work)
        {
            return;
        }
        self.stop_service(&work.service).await;
        if let Err(e) = self.keep(&work) {
            warn!(service = %work.service, error = %e, "Cannot keep the work on disk; after a restart the agent waits for the gateway");
        }
        let environment = Environment {
            mqtt_host: work.mqtt_host.clone(),
            mqtt_port: work.mqtt_port,
            mqtt_password: work.mqtt_password.clone(),
            other_services: None,
        };
        let service = match commissioning::load(
            &work.commissioning_file,
            &work.service,
            &work.parameters,
            &environment,
        ) {
            Ok(service) => service,
            Err(diagnostics) => {
                let problems: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                warn!(service = %work.service, problems = %problems.join("; "), "The service does not load on this agent (a different version from the gateway?)");
                return;
            }
        };
        let mut started = 0;
        for id in &service.start_order {
            let Some(resource) = service.resources.get(id) else {
                continue;
            };
            match self.supervisor.start(&service, resource).await {
                Ok(()) if service.agent_of(resource) == Some(self.name.as_str()) => started += 1,
                Ok(()) => {}
                Err(error) => {
                    warn!(service = %service.id, resource = %id, error = %error, "Resource failed to start");
                    self.failed.insert((service.id.clone(), id.clone()), error);
                }
            }
        }
        info!(service = %service.id, resources = started, "Running this agent's part of the service");
        self.applied.insert(work.service.clone(), (work, service));
    }

    async fn stop_service(&mut self, id: &str) {
        let Some((_, service)) = self.applied.remove(id) else {
            return;
        };
        for resource in service.start_order.iter().rev() {
            self.supervisor.stop(id, resource).await;
        }
        self.failed.retain(|(service, _), _| service != id);
    }

    /// The gateway took the service back (disabled, deleted, or no longer placed here).
    /// Queue files and certificates stay: the agent cannot tell a disable, after which the
    /// gateway keeps them, from a delete, and what is still queued must not be lost.
    async fn remove(&mut self, id: &str) {
        let running = self.applied.contains_key(id);
        self.stop_service(id).await;
        let _ = std::fs::remove_file(self.work_file(id));
        if running {
            info!(service = %id, "The gateway took the service's work back");
        }
    }

    async fn stop_all(&mut self) {
        let ids: Vec<String> = self.applied.keys().cloned().collect();
        for id in ids {
            self.stop_service(&id).await;
        }
    }

    fn work_file(&self, service: &str) -> PathBuf {
        self.work_dir.join(format!("{service}.json"))
    }

    fn keep(&self, work: &AgentWork) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.work_dir)?;
        let path = self.work_file(&work.service);
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(work).unwrap_or_default())?;
        std::fs::rename(&partial, &path)
    }

    /// Publishes (retained) the state of every resource this agent runs, when it changed. The
    /// gateway's broker keeps no retained `$` message across its restarts, so after every reconnect
    /// everything is reported again.
    async fn report(&mut self, control: &ExternalLink) {
        if !control.is_connected() {
            self.was_connected = false;
            return;
        }
        if !self.was_connected {
            self.reported.clear();
            self.was_connected = true;
        }
        let mut current = HashMap::new();
        for (id, (_, service)) in &self.applied {
            for (rid, resource) in &service.resources {
                if service.agent_of(resource) != Some(self.name.as_str()) {
                    continue;
                }
                let key = (id.clone(), rid.clone());
                let report = match self.failed.get(&key) {
                    Some(error) => Report {
                        state: "error".into(),
                        in_target_state: false,
                        message: Some(error.clone()),
                        metrics: None,
                    },
                    None => Report::from(&self.supervisor.status(id, rid)),
                };
                current.insert(key, report);
            }
        }
        let with_metrics = self.reports % METRICS_EVERY_REPORTS == 0;
        self.reports += 1;
        for (key, report) in current.iter_mut() {
            if !report.is_due(self.reported.get(key), with_metrics) {
                // What the gateway has is what was sent, not these newer counters.
                if let Some(last) = self.reported.get(key) {
                    *report = last.clone();
                }
                continue;
            }
            let (service, resource) = key;
            let payload = serde_json::to_vec(report).unwrap_or_default();
            let message = Message::new(
                resource_topic(&self.name, service, resource),
                payload,
                QoS::AtLeastOnce,
                true,
            );
            let _ = control.publish(message).await;
        }
        for (service, resource) in self.reported.keys() {
            if !current.contains_key(&(service.clone(), resource.clone())) {
                let topic = resource_topic(&self.name, service, resource);
                let _ = control
                    .publish(Message::new(topic, Vec::new(), QoS::AtLeastOnce, true))
                    .await;
            }
        }
        self.reported = current;
    }
}
