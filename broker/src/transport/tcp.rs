//! TCP and TLS accept loops.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::connection;
use crate::context::Context;
use crate::metrics::Metrics;

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stop` is cancelled. Connections beyond `max_connections` are
/// closed at once and counted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    loop {
        let (socket, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = ctx.take_connection_slot() else {
            Metrics::add(&ctx.metrics.connections_refused, 1);
            debug!(%peer, "Connection limit reached; closing new connection");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let ctx = ctx.clone();
        let tracker = ctx.connections.clone();
        // Two separate tasks, so a plain connection's task is not sized for a TLS stream.
        match tls.clone() {
            None => {
                let peer = connection::Peer {
                    address: Some(peer),
                    certificate_name: None,
                };
                tracker.spawn(connection::serve(socket, peer, ctx, slot));
            }
            Some(acceptor) => {
                tracker.spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await
                    {
                        Ok(Ok(stream)) => {
                            let certificate_name = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|cert| super::tls::certificate_name(cert));
                            let peer = connection::Peer {
                                address: Some(peer),
                                certificate_name,
                            };
                            connection::serve(stream, peer, ctx, slot).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}
