//! Modbus TCP. The only module that talks to tokio-modbus.
pub mod batch;
pub mod codec;
pub mod connection;
pub mod simulator;
