//! The Ironbridge gateway: reads settings, starts the broker and its listeners, serves HTTP, and
//! shuts everything down gracefully. Logic lives in the library crates; this crate wires them.

pub mod cli;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod settings;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;

use admin_api::{Admin, AdminConfig};
use anyhow::Context as _;
use broker::{Broker, BrokerHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use settings::{LogFormat, Settings};

/// A running gateway and the addresses it actually bound (ports of 0 are resolved).
pub struct Gateway {
    broker: Broker,
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
        let mut broker_config = settings.broker.clone();
        if broker_config.persistence_dir.is_none() {
            broker_config.persistence_dir = Some(settings.data_dir.join("broker"));
        }
        if settings.demo.enabled && !broker_config.allow_anonymous {
            // So the README's `mosquitto_sub -t 'services/#' -v` works without a password.
            warn!("Demo mode: anonymous MQTT clients are allowed");
            broker_config.allow_anonymous = true;
        }
        // The simulated machines start before the services are restored, so restored demo
        // services find them at once.
        let demo = match settings.demo.enabled {
            true => Some(demo::Demo::start(&settings.demo, &settings.data_dir).await?),
            false => None,
        };
        let (supervisor, statuses) =
            supervisor::Supervisor::new(&settings.data_dir, settings.forwarding.limits());
        let supervisor = Arc::new(supervisor);
        let admin = Admin::start(
            AdminConfig {
                data_dir: settings.data_dir.clone(),
                database_url: settings.database.url.clone(),
                admin_password: settings.admin.password.clone(),
                mqtt_host: "localhost".into(),
                mqtt_port: settings.mqtt.port,
                max_body_bytes: settings.admin.max_body_bytes,
            },
            supervisor.clone(),
        )
        .await
        .context("cannot start the admin API")?;
        let auth = Arc::new(admin_api::broker_auth::UserAuth {
            admin: admin.clone(),
            allow_anonymous: broker_config.allow_anonymous,
        });
        let broker = match Broker::start(broker_config, auth) {
            Ok(broker) => broker,
            Err(e) => {
                admin.shutdown().await;
                stop_demo(demo).await;
                return Err(e.into());
            }
        };
        let background = CancellationToken::new();
        tokio::spawn(supervisor::publish_statuses(
            broker.handle(),
            statuses,
            background.clone(),
        ));
        supervisor.attach(broker.handle());
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
            broker.shutdown().await;
            stop_demo(demo).await;
            return Err(e);
        }
        let tls = match &settings.tls {
            settings::Tls::Mode(settings::TlsMode::Off) => None,
            settings::Tls::Mode(settings::TlsMode::SelfSigned) => Some(
                broker::transport::tls::self_signed(&settings.data_dir.join("tls"), None)?,
            ),
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
        let result = async {
            let mqtt_addr = match settings.mqtt.enabled {
                true => Some(
                    broker
                        .listen_tcp(settings.mqtt.address())
                        .await
                        .with_context(|| {
                            format!("cannot listen for MQTT on {}", settings.mqtt.address())
                        })?,
                ),
                false => None,
            };
            let mqtts_addr = match (&tls, settings.mqtts.enabled) {
                (Some(tls), true) => Some(
                    broker
                        .listen_tls(settings.mqtts.address(), tls.clone())
                        .await
                        .with_context(|| {
                            format!(
                                "cannot listen for MQTT over TLS on {}",
                                settings.mqtts.address()
                            )
                        })?,
                ),
                _ => None,
            };
            let probe = health_probe(broker.handle(), supervisor.clone());
            let api_metrics = Arc::new(metrics::ApiMetrics::default());
            let api = admin_api::http::router(admin.clone(), probe).route_layer(
                axum::middleware::from_fn_with_state(api_metrics.clone(), metrics::track),
            );
            let app =
                broker
                    .websocket_router()
                    .merge(api)
                    .merge(metrics::router(metrics::Sources {
                        supervisor: supervisor.clone(),
                        broker: broker.handle(),
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
                broker.shutdown().await;
                stop_demo(demo).await;
                Err(e)
            }
        }
    }

    pub fn broker(&self) -> BrokerHandle {
        self.broker.handle()
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
        self.broker.shutdown().await;
        stop_demo(self.demo).await;
    }

    /// The simulated machines of `--demo`, when running.
    pub fn demo(&self) -> Option<&demo::Demo> {
        self.demo.as_ref()
    }
}

/// The parts `/api/system/health` reports besides the database and services: the broker
/// (its state decides health) and, for information, the connections and their queues.
fn health_probe(
    broker: BrokerHandle,
    supervisor: Arc<supervisor::Supervisor>,
) -> admin_api::http::HealthProbe {
    use admin_api::http::HealthPart;
    use serde_json::json;
    Arc::new(move || {
        let mut broker_part = HealthPart::up("broker", broker.is_running());
        broker_part.detail.insert(
            "connections".into(),
            broker::metrics::Metrics::get(&broker.metrics().connections_current).into(),
        );
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
                    "notConnected": not_connected,
                })),
            },
            HealthPart {
                name: "forwarding".into(),
                ok: None,
                detail: detail(json!({
                    "connections": forwarding.len(),
                    "queuedMessages": forwarding.iter().map(|f| f.queued_messages).sum::<u64>(),
                    "queuedBytes": forwarding.iter().map(|f| f.queued_bytes).sum::<u64>(),
                })),
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
