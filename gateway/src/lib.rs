//! The Ironbridge gateway: reads settings, starts the broker and its listeners, serves HTTP, and
//! shuts everything down gracefully. Logic lives in the library crates; this crate wires them.

pub mod http;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use broker::{AnonymousOnly, Broker, BrokerHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use settings::{LogFormat, Settings};

/// A running gateway and the addresses it actually bound (ports of 0 are resolved).
pub struct Gateway {
    broker: Broker,
    http: http::HttpServers,
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
        let auth = Arc::new(AnonymousOnly {
            allow_anonymous: broker_config.allow_anonymous,
        });
        let broker = Broker::start(broker_config, auth)?;
        let tls = match &settings.tls {
            settings::Tls::Mode(settings::TlsMode::Off) => None,
            settings::Tls::Mode(settings::TlsMode::SelfSigned) => Some(
                broker::transport::tls::self_signed(&settings.data_dir.join("tls"))?,
            ),
            settings::Tls::Files {
                cert_file,
                key_file,
            } => Some(broker::transport::tls::server_config_from_pem(
                cert_file, key_file,
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
            let http =
                http::HttpServers::start(&settings, tls.clone(), broker.websocket_router()).await?;
            Ok::<_, anyhow::Error>((mqtt_addr, mqtts_addr, http))
        }
        .await;
        match result {
            Ok((mqtt_addr, mqtts_addr, http)) => Ok(Gateway {
                http_addr: http.http_addr,
                https_addr: http.https_addr,
                broker,
                http,
                mqtt_addr,
                mqtts_addr,
            }),
            Err(e) => {
                broker.shutdown().await;
                Err(e)
            }
        }
    }

    pub fn broker(&self) -> BrokerHandle {
        self.broker.handle()
    }

    /// Stops HTTP, then the broker (which saves its state).
    pub async fn shutdown(self) {
        self.http.shutdown().await;
        self.broker.shutdown().await;
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
