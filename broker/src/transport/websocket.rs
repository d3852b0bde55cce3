//! MQTT over WebSocket (subprotocol `mqtt`): an axum route, and an adapter that makes a WebSocket
//! look like a byte stream so the same connection code serves it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection;
use crate::context::Context;
use crate::metrics::Metrics;

/// The `/mqtt` route, to be merged into the gateway's HTTP router.
pub(crate) fn router(ctx: Arc<Context>) -> Router {
    Router::new().route("/mqtt", get(upgrade)).with_state(ctx)
}

async fn upgrade(State(ctx): State<Arc<Context>>, ws: WebSocketUpgrade) -> Response {
    let Some(slot) = ctx.take_connection_slot() else {
        Metrics::add(&ctx.metrics.connections_refused, 1);
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached",
        )
            .into_response();
    };
    let max = ctx.config.max_packet_size as usize;
    ws.protocols(["mqtt", "mqttv3.1"])
        .max_message_size(max + 8)
        .on_upgrade(move |socket| {
            let tracker = ctx.connections.clone();
            tracker.track_future(connection::serve(
                WsStream::new(socket),
                connection::Peer::default(),
                ctx,
                slot,
            ))
        })
}

/// A WebSocket carrying MQTT in binary frames, read and written as a byte stream.
pub(crate) struct WsStream {
    socket: WebSocket,
    chunk: Bytes,
}

impl WsStream {
    fn new(socket: WebSocket) -> WsStream {
        WsStream {
            socket,
            chunk: Bytes::new(),
        }
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                buf.put_slice(&self.chunk[..n]);
                self.chunk.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.chunk = data,
                // MQTT over WebSocket uses binary frames only (MQTT-6.0.0-1).
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(other(e))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(other)?;
        Pin::new(&mut self.socket)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx).map_err(other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_close(cx).map_err(other)
    }
}
