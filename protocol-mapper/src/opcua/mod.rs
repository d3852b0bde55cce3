//! OPC UA: client connections, discovery and the gateway's own server. The only module that
//! talks to async-opcua.
pub mod connection;
pub mod convert;
pub mod discover;
pub mod pki;
pub mod server;
pub mod simulator;
