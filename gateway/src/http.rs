//! The HTTP and HTTPS entry points: the web console at `/`, the admin API, `/metrics` and MQTT
//! over WebSocket at `/mqtt` on one router, served with a connection limit and a header-read
//! timeout so that clients that connect and say nothing cannot use up the gateway's file
//! descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::Settings;

pub struct HttpServers {
    stop: CancellationToken,
    tasks: TaskTracker,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
}

/// How each HTTP(S) connection is served.
#[derive(Clone)]
struct Limits {
    slots: Arc<Semaphore>,
    header_read_timeout: Duration,
}

impl HttpServers {
    pub async fn start(
        settings: &Settings,
        tls: Option<Arc<rustls::ServerConfig>>,
        app: Router,
    ) -> anyhow::Result<HttpServers> {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut servers = HttpServers {
            stop: stop.clone(),
            tasks: tasks.clone(),
            http_addr: None,
            https_addr: None,
        };
        let limits = || Limits {
            slots: Arc::new(Semaphore::new(settings.admin.max_connections.max(1))),
            header_read_timeout: Duration::from_secs(
                settings.admin.header_read_timeout_secs.max(1),
            ),
        };
        if settings.http.enabled {
            let listener = TcpListener::bind(settings.http.address())
                .await
                .with_context(|| {
                    format!("cannot listen for HTTP on {}", settings.http.address())
                })?;
            let addr = listener.local_addr()?;
            info!(address = %addr, listener = "http", "HTTP listener started (MQTT over WebSocket at /mqtt)");
            tasks.spawn(serve(
                listener,
                None,
                app.clone(),
                limits(),
                stop.clone(),
                tasks.clone(),
            ));
            servers.http_addr = Some(addr);
        }
        if let (Some(tls), true) = (tls, settings.https.enabled) {
            let listener = TcpListener::bind(settings.https.address())
                .await
                .with_context(|| {
                    format!("cannot listen for HTTPS on {}", settings.https.address())
                })?;
            let addr = listener.local_addr()?;
            info!(address = %addr, listener = "https", "HTTPS listener started (MQTT over WebSocket at /mqtt)");
            tasks.spawn(serve(
                listener,
                Some(TlsAcceptor::from(tls)),
                app,
                limits(),
                stop.clone(),
                tasks.clone(),
            ));
            servers.https_addr = Some(addr);
        }
        Ok(servers)
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        // Open WebSocket connections are closed by the broker's own shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }
}

/// Accepts until `stop`: every connection holds one of `limits.slots` (beyond them new ones are
/// closed at once, as the MQTT listeners do), and a client that is slow to send its headers, or
/// idle between requests, is closed after `limits.header_read_timeout`. A failing accept (out of
/// file descriptors) backs off and tries again, so the listener outlives any flood.
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    // HTTP/1.1 only: browsers speak HTTP/2 only over TLS with ALPN, which these listeners do not
    // offer, and HTTP/1.1 lets the header time-out start at the connection's first moment
    // (an HTTP version sniffer would wait for the first bytes without one).
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "Accepting an HTTP connection failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = limits.slots.clone().try_acquire_owned() else {
            debug!(%peer, "HTTP connection limit reached; closing new connection");
            continue;
        };
        // The client's address, for login throttling.
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = TowerToHyperService::new(app);
        let (tls, http, handshake_timeout) =
            (tls.clone(), http.clone(), limits.header_read_timeout);
        tasks.spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    let _ = http
                        .serve_connection(TokioIo::new(socket), service)
                        .with_upgrades()
                        .await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(socket)).await
                    else {
                        debug!(%peer, "HTTPS handshake failed or timed out");
                        return;
                    };
                    let _ = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                }
            }
        });
    }
}
