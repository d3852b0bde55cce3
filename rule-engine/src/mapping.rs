//! Starting and stopping a `Cybus::Mapping` (one task per entry) or an endpoint's rule chain,
//! from specs whose endpoint references the supervisor has already turned into topics.

use std::sync::{Arc, Mutex};

use broker::bus::Connector;
use broker::bus::{DELIVERY_QUEUE, RemoteBroker, RemoteDelivery};
use broker::{LinkError, QoS, SubscriptionOptions};
use bytes::Bytes;
use commissioning::model::Rule;
use commissioning::topic_pattern::{NamedFilter, Template};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::chain::Chain;
use crate::task::{ChainTask, Inbox, Sink, Source, Stats, StatsSnapshot};

/// One `mappings` entry with its endpoints resolved.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub sources: Vec<SourceSpec>,
    pub publish: PublishSpec,
    pub rules: Vec<Rule>,
}

/// A subscription: an absolute topic, possibly with named wildcards, on the internal broker or
/// on a remote one (`subscribe.connection`).
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub topic: String,
    pub qos: QoS,
    pub label: Option<String>,
    pub remote: Option<RemoteBroker>,
}

/// A publish topic, possibly with `$name`/`{name}` variables, on the internal broker or on a
/// remote one (`publish.connection`, store-and-forward).
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    pub remote: Option<RemoteBroker>,
}

/// A running mapping or endpoint chain: its tasks and their counters.
pub struct RunningChains {
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<Stats>,
}

impl RunningChains {
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Whether every task still runs (a task ends early only when the broker goes away).
    pub fn is_running(&self) -> bool {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.iter().all(|task| !task.is_finished())
    }

    /// Stops the tasks, which end their broker sessions, and waits for them.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Why a mapping or an endpoint chain could not start; nothing of it runs then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", entry.map(|i| format!("mappings[{i}]: ")).unwrap_or_default())]
pub struct MappingError {
    /// The entry of `mappings` it concerns; `None` for an endpoint's chain or the whole mapping.
    pub entry: Option<usize>,
    pub reason: MappingFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingFailure {
    /// A rule, topic or template the engine cannot compile.
    #[error("{0}")]
    Invalid(String),
    /// The broker refused a link for the chain's task.
    #[error("cannot reach the broker: {0}")]
    Unreachable(LinkError),
    /// The broker refused a subscription.
    #[error("cannot subscribe: {0}")]
    Subscribe(LinkError),
    /// The MQTT connection a source goes through has stopped.
    #[error("{0}")]
    RemoteStopped(String),
}

impl MappingError {
    fn whole(reason: MappingFailure) -> MappingError {
        MappingError {
            entry: None,
            reason,
        }
    }
}

/// Compiles every entry, then subscribes and starts one task per entry. Nothing runs unless
/// everything compiles and subscribes.
pub async fn start_mapping(
    name: &str,
    entries: Vec<EntrySpec>,
    broker: impl Into<Connector>,
) -> Result<RunningChains, MappingError> {
    let broker = broker.into();
    let stats = Arc::new(Stats::default());
    let mut prepared: Vec<ChainTask> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |reason: MappingFailure| MappingError {
            entry: Some(i),
            reason,
        };
        let invalid = |e: String| at(MappingFailure::Invalid(e));
        let chain = Chain::new(&entry.rules).map_err(invalid)?;
        let sink = sink(&entry.publish).map_err(invalid)?;
        let mut sources = Vec::with_capacity(entry.sources.len());
        for source in &entry.sources {
            sources.push(Source {
                filter: NamedFilter::parse(&source.topic).map_err(invalid)?,
                qos: source.qos,
                label: source
                    .label
                    .as_deref()
                    .map(Template::parse)
                    .transpose()
                    .map_err(invalid)?,
                remote: source.remote.is_some(),
            });
        }
        let link = broker
            .connect(&format!("ironbridge/mapping/{name}/{i}"))
            .await
            .map_err(|e| MappingError::whole(MappingFailure::Unreachable(e)))?;
        let mut task = ChainTask {
            name: name.to_string(),
            link,
            inbox: Inbox::Subscriptions {
                sources: Vec::new(),
                remote: None,
            },
            chain,
            sink,
            stats: stats.clone(),
            remote_subscriptions: Vec::new(),
        };
        let subscribed = subscribe(&mut task, sources, &entry.sources).await;
        // Dropping the prepared tasks would leave remote subscriptions registered.
        if let Err(e) = subscribed {
            task.unsubscribe_remote().await;
            for task in prepared {
                task.unsubscribe_remote().await;
            }
            return Err(at(e));
        }
        prepared.push(task);
    }
    Ok(spawn(prepared, stats))
}

/// Subscribes an entry's task to its sources: local ones on its broker link (no-local),
/// remote ones through their MQTT connection, delivered into one queue tagged by source index.
async fn subscribe(
    task: &mut ChainTask,
    sources: Vec<Source>,
    specs: &[SourceSpec],
) -> Result<(), MappingFailure> {
    let remote_inbox = specs.iter().any(|s| s.remote.is_some()).then(|| {
        let (tx, rx) = mpsc::channel::<RemoteDelivery>(DELIVERY_QUEUE);
        task.set_remote_inbox(rx);
        tx
    });
    for (index, (source, spec)) in sources.iter().zip(specs).enumerate() {
        match (&spec.remote, &remote_inbox) {
            (Some(remote), Some(deliver)) => {
                let id = remote
                    .subscribe(source.filter.filter(), source.qos, index, deliver.clone())
                    .await
                    .map_err(MappingFailure::RemoteStopped)?;
                task.remote_subscriptions.push((remote.clone(), id));
            }
            _ => {
                let options = SubscriptionOptions {
                    qos: source.qos,
                    no_local: true,
                    ..SubscriptionOptions::default()
                };
                task.link
                    .subscribe_with(source.filter.filter(), options)
                    .await
                    .map_err(MappingFailure::Subscribe)?;
            }
        }
    }
    task.set_sources(sources);
    Ok(())
}

/// Runs an endpoint's rules on the data its connection hands over on `data`, publishing the
/// result on the endpoint's topic.
pub async fn start_endpoint_chain(
    name: &str,
    rules: &[Rule],
    publish: PublishSpec,
    data: mpsc::Receiver<Bytes>,
    broker: impl Into<Connector>,
) -> Result<RunningChains, MappingError> {
    let broker = broker.into();
    let stats = Arc::new(Stats::default());
    let invalid = |e: String| MappingError::whole(MappingFailure::Invalid(e));
    let chain = Chain::new(rules).map_err(invalid)?;
    let sink = sink(&publish).map_err(invalid)?;
    let link = broker
        .connect(&format!("ironbridge/endpoint-rules/{name}"))
        .await
        .map_err(|e| MappingError::whole(MappingFailure::Unreachable(e)))?;
    let task = ChainTask {
        name: name.to_string(),
        link,
        inbox: Inbox::Endpoint {
            topic: publish.topic.clone(),
            data,
        },
        chain,
        sink,
        stats: stats.clone(),
        remote_subscriptions: Vec::new(),
    };
    Ok(spawn(vec![task], stats))
}

fn sink(publish: &PublishSpec) -> Result<Sink, String> {
    Ok(Sink {
        topic: Template::parse(&publish.topic)?,
        qos: publish.qos,
        retain: publish.retain,
        remote: publish.remote.clone(),
    })
}

fn spawn(tasks: Vec<ChainTask>, stats: Arc<Stats>) -> RunningChains {
    let stop = CancellationToken::new();
    let workers = crate::workers::handle();
    let handles = tasks
        .into_iter()
        .map(|task| workers.spawn(task.run(stop.clone())))
        .collect();
    RunningChains {
        stop,
        tasks: Mutex::new(handles),
        stats,
    }
}
