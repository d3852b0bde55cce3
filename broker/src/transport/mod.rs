//! Listeners: plain TCP, TLS over TCP, and WebSocket (mounted on the gateway's HTTP port).
//! Each turns a client into a byte stream and hands it to [`crate::connection::serve`].

pub mod tcp;
pub mod tls;
pub mod websocket;
