//! Ironbridge's MQTT broker: MQTT 3.1.1 and 5.0 over TCP, TLS and WebSocket, with retained
//! messages, persistent sessions, wills, shared subscriptions, an authentication hook and an
//! in-process link for the gateway's own components.
//!
//! Start one with [`Broker::start`], add listeners, and stop it with [`Broker::shutdown`], which
//! saves retained messages and sessions when a persistence directory is configured.

pub mod auth;
pub mod bus;
pub mod codec;
pub mod config;
mod connection;
mod context;
mod local;
pub mod message;
pub mod metrics;
pub mod persistence;
mod queue;
mod router;
pub mod topic;
pub mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use auth::{AnonymousOnly, AuthHook, Credentials, Principal, SessionOwner, UserPrincipal};
pub use codec::{QoS, ReasonCode, SubscriptionOptions};
pub use config::BrokerConfig;
pub use local::{LinkError, LocalClient};
pub use message::{Delivery, Message, MessageProperties};
pub use metrics::Metrics;

use context::Context;
use router::{Event, Router};

/// Events the router buffers; connections wait (and so slow their clients) when it is full.
const ROUTER_QUEUE: usize = 4096;
/// How long shutdown waits for connections to hand their sessions back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid broker settings: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    #[error("cannot use the persistence directory {dir}: {source}")]
    Persistence { dir: String, source: io::Error },
}

/// A running broker. Dropping it without [`Broker::shutdown`] stops nothing gracefully.
pub struct Broker {
    ctx: Arc<Context>,
    router: JoinHandle<()>,
    listeners: CancellationToken,
    listener_tasks: TaskTracker,
}

/// A cheap handle for components that need the in-process link or the counters.
#[derive(Clone)]
pub struct BrokerHandle {
    ctx: Arc<Context>,
}

impl Broker {
    /// Starts the router (restoring saved state) with no listeners yet.
    pub fn start(config: BrokerConfig, auth: Arc<dyn AuthHook>) -> Result<Broker, StartError> {
        config.validate().map_err(StartError::InvalidConfig)?;
        let store =
            match &config.persistence_dir {
                Some(dir) => Some(persistence::Store::open(dir).map_err(|source| {
                    StartError::Persistence {
                        dir: dir.display().to_string(),
                        source,
                    }
                })?),
                None => None,
            };
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel(ROUTER_QUEUE);
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let router = Router::new(config.clone(), metrics.clone(), store, started);
        let router = tokio::spawn(router.run(rx, shutdown.clone(), auth.changes()));
        let ctx = Arc::new(Context {
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            router: tx,
            auth,
            metrics,
            connections: TaskTracker::new(),
            shutdown,
            started,
        });
        Ok(Broker {
            ctx,
            router,
            listeners: CancellationToken::new(),
            listener_tasks: TaskTracker::new(),
        })
    }

    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            ctx: self.ctx.clone(),
        }
    }

    /// Listens for MQTT over TCP; returns the bound address (useful with port 0).
    pub async fn listen_tcp(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.listen(addr, None).await
    }

    /// Listens for MQTT over TLS.
    pub async fn listen_tls(
        &self,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<SocketAddr> {
        self.listen(addr, Some(TlsAcceptor::from(tls))).await
    }

    async fn listen(&self, addr: SocketAddr, tls: Option<TlsAcceptor>) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let kind = if tls.is_some() { "mqtts" } else { "mqtt" };
        info!(address = %local, listener = kind, "MQTT listener started");
        self.listener_tasks.spawn(transport::tcp::accept_loop(
            listener,
            self.ctx.clone(),
            tls,
            self.listeners.clone(),
        ));
        Ok(local)
    }

    /// The `/mqtt` WebSocket route, for the gateway to serve on its HTTP port.
    pub fn websocket_router(&self) -> axum::Router {
        transport::websocket::router(self.ctx.clone())
    }

    /// Stops accepting, closes every connection (MQTT 5 clients get DISCONNECT 0x8B), waits for
    /// their sessions to come back, publishes pending wills and saves state.
    pub async fn shutdown(self) {
        self.listeners.cancel();
        self.listener_tasks.close();
        self.listener_tasks.wait().await;
        self.ctx.shutdown.cancel();
        self.ctx.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.ctx.connections.wait())
            .await
            .is_err()
        {
            warn!("Some connections did not close in time; their in-flight state is not saved");
        }
        let (done_tx, done_rx) = oneshot::channel();
        if self.ctx.router.send(Event::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
        let _ = self.router.await;
        info!("Broker stopped");
    }
}

impl BrokerHandle {
    /// Connects an in-process client. Its client id shares the namespace of network clients, so
    /// components use a prefix of their own (e.g. `ironbridge/rule-engine`).
    pub async fn connect_local(&self, client_id: &str) -> Result<LocalClient, LinkError> {
        LocalClient::connect(self.ctx.clone(), client_id).await
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.ctx.config
    }

    /// False once the router has stopped (shutdown or a fatal error).
    pub fn is_running(&self) -> bool {
        !self.ctx.router.is_closed()
    }
}
