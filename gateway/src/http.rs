//! The HTTP and HTTPS entry points. Today they serve MQTT over WebSocket at `/mqtt`; the admin
//! API will be merged into the same router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::Settings;

pub struct HttpServers {
    stop: CancellationToken,
    tasks: TaskTracker,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
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
        if settings.http.enabled {
            let listener = TcpListener::bind(settings.http.address())
                .await
                .with_context(|| {
                    format!("cannot listen for HTTP on {}", settings.http.address())
                })?;
            let addr = listener.local_addr()?;
            info!(address = %addr, listener = "http", "HTTP listener started (MQTT over WebSocket at /mqtt)");
            let app = app.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
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
            tasks.spawn(serve_tls(
                listener,
                TlsAcceptor::from(tls),
                app,
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

async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        // The client's address, for login throttling, as plain HTTP's connect info gives it.
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = TowerToHyperService::new(app);
        tasks.spawn(async move {
            let stream = match tokio::time::timeout(
                Duration::from_secs(10),
                acceptor.accept(socket),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                _ => {
                    debug!(%peer, "HTTPS handshake failed");
                    return;
                }
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
