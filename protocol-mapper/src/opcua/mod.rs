//! OPC UA client connections. The only module that talks to async-opcua.
pub mod connection;
pub mod convert;
pub mod discover;
pub mod pki;
pub mod simulator;
