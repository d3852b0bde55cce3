//! Helpers shared by the binary's test files.

use std::net::TcpListener;

/// A loopback port free right now (the gateway binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
