//! The Ironbridge gateway: reads settings, starts the broker and its listeners, serves HTTP, and
//! shuts everything down gracefully. Logic lives in the library crates; this crate wires them.

pub mod agent;
pub mod agent_board;
pub mod cli;
pub mod data_dir;
pub mod demo;
pub mod discovery;
pub mod http;
pub mod http_nodes;
pub mod logging;
pub mod metrics;
pub mod opcua_server;
pub mod settings;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;

use admin::{Admin, AdminConfig};
use anyhow::Context as _;
use broker::bus::{Connector, ExternalBroker};
use broker::{Broker, BrokerHandle};
use protocol_mapper::mqtt::link::ExternalMqtt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use settings::{LogFormat, Settings};

/// A running gateway and the addresses it actually bound (ports of 0 are resolved).
pub struct Gateway {
    /// `None` with `broker.external`: the components use that broker instead.
    broker: Option<Broker>,
    admin: Arc<Admin>,
    background: CancellationToken,
    http: http::HttpServers,
    demo: Option<demo::Demo>,
    pub mqtt_addr: Option<SocketAddr>,
    pub mqtts_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Starts every enabled part; fails without leaving anything running.
    pub async fn start(settings: Settings) -> anyhow::Result<Gateway> {
        data_dir::prepare(&settings.data_dir, settings.allow_insecure_data_dir)?;
        announce_open_listeners(&settings);
        let mut broker_config = settings.broker.clone();
        if broker_config.persistence_dir.is_none() {
            broker_config.persistence_dir = Some(settings.data_dir.join("broker"));
        }
        if settings.demo.enabled && !broker_config.allow_anonymous {
            // So the README's `mosquitto_sub -t 'services/#' -v` works without a password.
            warn!("Demo mode: anonymous MQTT clients are allowed");
            broker_config.allow_anonymous = true;
        }
        let external = match &broker_config.external {
            Some(url) => Some(ExternalMqtt::from_url(url).map_err(anyhow::Error::msg)?),
            None => None,
        };
        // `Cybus::MqttHost`/`MqttPort` in commissioning files name the broker components use.
        let (mqtt_host, mqtt_port) = match &external {
            Some(external) => (external.host().to_string(), external.port()),
            None => ("localhost".to_string(), settings.mqtt.port),
        };
        // The simulated machines start before the services are restored, so restored demo
        // services find them at once.
        let demo = match settings.demo.enabled {
            true => Some(demo::Demo::start(&settings.demo, &settings.data_dir).await?),
            false => None,
        };
        let (supervisor, statuses) = supervisor::Supervisor::new(
            &settings.data_dir,
            settings.forwarding.limits(),
            supervisor::Place::Gateway,
        );
        let supervisor = Arc::new(supervisor);
        let admin = match Admin::start(
            AdminConfig {
                data_dir: settings.data_dir.clone(),
                database_url: settings.database.url.clone(),
                admin_password: settings.admin.password.clone(),
                mqtt_host,
                mqtt_port,
                max_body_bytes: settings.admin.max_body_bytes,
            },
            supervisor.clone(),
        )
        .await
        {
            Ok(admin) => admin,
            Err(e) => {
                stop_demo(demo).await;
                return Err(anyhow::Error::new(e).context("cannot start the admin API"));
            }
        };
        supervisor
            .opcua_server
            .check_users_with(Arc::downgrade(&admin));
        let (broker, connector) = match start_broker(&broker_config, external, &admin) {
            Ok(started) => started,
            Err(e) => {
                admin.shutdown().await;
                stop_demo(demo).await;
                return Err(e);
            }
        };
        let background = CancellationToken::new();
        tokio::spawn(supervisor::publish_statuses(
            connector.clone(),
            statuses,
            background.clone(),
        ));
        tokio::spawn(agent_board::watch(
            supervisor.agents.clone(),
            connector.clone(),
            background.clone(),
        ));
        supervisor.attach(connector.clone());
        let restored = async {
            admin
                .restore_services()
                .await
                .context("cannot restore the installed services")?;
            if let Some(demo) = &demo {
                demo.install_services(&admin).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = restored {
            background.cancel();
            admin.shutdown().await;
            stop_broker(broker).await;
            stop_demo(demo).await;
            return Err(e);
        }
        let result = async {
            let tls = match &settings.tls {
                settings::Tls::Mode(settings::TlsMode::Off) => None,
                settings::Tls::Mode(settings::TlsMode::SelfSigned) => {
                    // The certificate names this machine too, as its environment calls it.
                    let host_names: Vec<String> = std::env::var("HOSTNAME").into_iter().collect();
                    let dir = settings.data_dir.join("tls");
                    Some(broker::transport::tls::self_signed(
                        &dir,
                        &host_names,
                        None,
                    )?)
                }
                settings::Tls::Files {
                    cert_file,
                    key_file,
                    client_ca_file,
                } => Some(broker::transport::tls::server_config_from_pem(
                    cert_file,
                    key_file,
                    client_ca_file.as_deref(),
                )?),
            };
            // With an external broker there is no broker here to listen for.
            let (mut mqtt_addr, mut mqtts_addr) = (None, None);
            if let Some(broker) = &broker {
                if settings.mqtt.enabled {
                    let address = settings.mqtt.address();
                    mqtt_addr = Some(
                        broker
                            .listen_tcp(address)
                            .await
                            .with_context(|| format!("cannot listen for MQTT on {address}"))?,
                    );
                }
                if let (Some(tls), true) = (&tls, settings.mqtts.enabled) {
                    let address = settings.mqtts.address();
                    mqtts_addr = Some(broker.listen_tls(address, tls.clone()).await.with_context(
                        || format!("cannot listen for MQTT over TLS on {address}"),
                    )?);
                }
            }
            let handle = broker.as_ref().map(Broker::handle);
            let probe = health_probe(handle.clone(), connector.clone(), supervisor.clone());
            let api_metrics = Arc::new(metrics::ApiMetrics::default());
            let discovery = Arc::new(discovery::GatewayDiscovery::new(&settings.data_dir));
            let api =
                admin_api::router_with_discovery(admin.clone(), probe, discovery).route_layer(
                    axum::middleware::from_fn_with_state(api_metrics.clone(), metrics::track),
                );
            let websocket = match &broker {
                Some(broker) => broker.websocket_router(),
                None => axum::Router::new(),
            };
            let data = admin_api::data::router(admin.clone(), supervisor.http_nodes.clone());
            let app = websocket
                .merge(api)
                .merge(data)
                .merge(web_console::router())
                .merge(metrics::router(metrics::Sources {
                    supervisor: supervisor.clone(),
                    broker: handle,
                    api: api_metrics,
                    started: std::time::Instant::now(),
                }));
            let http = http::HttpServers::start(&settings, tls.clone(), app).await?;
            Ok::<_, anyhow::Error>((mqtt_addr, mqtts_addr, http))
        }
        .await;
        match result {
            Ok((mqtt_addr, mqtts_addr, http)) => Ok(Gateway {
                http_addr: http.http_addr,
                https_addr: http.https_addr,
                broker,
                admin,
                background,
                http,
                demo,
                mqtt_addr,
                mqtts_addr,
            }),
            Err(e) => {
                background.cancel();
                admin.shutdown().await;
                stop_broker(broker).await;
                stop_demo(demo).await;
                Err(e)
            }
        }
    }

    /// The gateway's own broker; `None` with `broker.external`.
    pub fn broker(&self) -> Option<BrokerHandle> {
        self.broker.as_ref().map(Broker::handle)
    }

    pub fn admin(&self) -> Arc<Admin> {
        self.admin.clone()
    }

    /// Stops HTTP, then the services' resources and the database, then the broker (which saves
    /// its state).
    pub async fn shutdown(self) {
        self.http.shutdown().await;
        self.admin.shutdown().await;
        self.background.cancel();
        stop_broker(self.broker).await;
        stop_demo(self.demo).await;
    }

    /// The simulated machines of `--demo`, when running.
    pub fn demo(&self) -> Option<&demo::Demo> {
        self.demo.as_ref()
    }
}

/// Starts the gateway's broker, or with `broker.external` only checks that broker's URL: the
/// components then connect there. Returns the broker (if ours) and where components connect.
fn start_broker(
    config: &broker::BrokerConfig,
    external: Option<ExternalMqtt>,
    admin: &Arc<Admin>,
) -> anyhow::Result<(Option<Broker>, Connector)> {
    if let Some(external) = external {
        info!(broker = %external.display_url(), "Using the external broker; the built-in broker is off");
        return Ok((None, Connector::External(Arc::new(external))));
    }
    let auth = Arc::new(admin::broker_auth::UserAuth::new(
        admin.clone(),
        config.allow_anonymous,
    ));
    let broker = Broker::start(config.clone(), auth)?;
    let connector = Connector::Local(broker.handle());
    Ok((Some(broker), connector))
}

/// Listeners on every interface are the default (a gateway is reached from the plant network),
/// but the operator should know it.
fn announce_open_listeners(settings: &Settings) {
    let everywhere: Vec<&str> = [
        ("mqtt", &settings.mqtt),
        ("mqtts", &settings.mqtts),
        ("http", &settings.http),
        ("https", &settings.https),
    ]
    .into_iter()
    .filter(|(_, listener)| listener.bind.is_unspecified())
    .map(|(name, _)| name)
    .collect();
    if !everywhere.is_empty() {
        info!(
            listeners = ?everywhere,
            "Listening on every network interface: the gateway is reachable from the network; \
             restrict a listener with its bind setting (e.g. IRONBRIDGE_HTTP_BIND=127.0.0.1)"
        );
    }
}

async fn stop_broker(broker: Option<Broker>) {
    if let Some(broker) = broker {
        broker.shutdown().await;
    }
}

/// The parts `/api/system/health` reports besides the database and services: the broker
/// (its state decides health) and, for information, the connections and their queues.
fn health_probe(
    broker: Option<BrokerHandle>,
    connector: Connector,
    supervisor: Arc<supervisor::Supervisor>,
) -> admin_api::HealthProbe {
    use admin_api::HealthPart;
    use serde_json::json;
    Arc::new(move || {
        let broker_part = match (&broker, &connector) {
            (Some(broker), _) => {
                let mut part = HealthPart::up("broker", broker.is_running());
                part.detail.insert(
                    "connections".into(),
                    broker::metrics::Metrics::get(&broker.metrics().connections_current).into(),
                );
                part
            }
            (None, Connector::External(external)) => {
                // Reachable when any component is connected to it (or none needs it yet).
                let (open, connected) = external.links();
                let mut part = HealthPart::up("broker", open == 0 || connected > 0);
                part.names
                    .insert("external".into(), external.display_url().into());
                part.detail.insert("links".into(), open.into());
                part.detail
                    .insert("linksConnected".into(), connected.into());
                part
            }
            (None, Connector::Local(_)) => HealthPart::up("broker", false),
        };
        let resources = supervisor.metrics();
        let connections: Vec<_> = resources
            .iter()
            .filter_map(|r| Some((format!("{}::{}", r.service, r.resource), r.connected?)))
            .collect();
        let not_connected: Vec<&String> = connections
            .iter()
            .filter(|(_, up)| !up)
            .map(|(id, _)| id)
            .collect();
        let forwarding: Vec<_> = resources
            .iter()
            .filter_map(|r| r.forwarding.as_ref())
            .collect();
        let detail = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
        vec![
            broker_part,
            HealthPart {
                name: "connections".into(),
                ok: None,
                detail: detail(json!({
                    "total": connections.len(),
                    "connected": connections.len() - not_connected.len(),
                })),
                names: detail(json!({ "notConnected": not_connected })),
            },
            HealthPart {
                name: "forwarding".into(),
                ok: None,
                detail: detail(json!({
                    "connections": forwarding.len(),
                    "queuedMessages": forwarding.iter().map(|f| f.queued_messages).sum::<u64>(),
                    "queuedBytes": forwarding.iter().map(|f| f.queued_bytes).sum::<u64>(),
                })),
                names: serde_json::Map::new(),
            },
        ]
    })
}

async fn stop_demo(demo: Option<demo::Demo>) {
    if let Some(demo) = demo {
        demo.stop().await;
    }
}

/// Runs the gateway until `stop` is cancelled (by SIGINT/SIGTERM in the binary).
pub async fn run(settings: Settings, stop: CancellationToken) -> anyhow::Result<()> {
    let gateway = Gateway::start(settings).await?;
    info!("Ironbridge is running");
    stop.cancelled().await;
    info!("Shutting down");
    gateway.shutdown().await;
    Ok(())
}
