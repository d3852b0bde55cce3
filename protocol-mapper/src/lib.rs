//! The protocol mapper: connections to machines and the endpoints read from and written to them.
pub mod backoff;
pub mod driver;
pub mod envelope;
pub mod modbus;
pub mod opcua;
pub mod status;
