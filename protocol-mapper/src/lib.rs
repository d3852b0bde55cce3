//! The protocol mapper: connections to machines (Modbus, OPC UA, HTTP, S7) and to remote MQTT brokers,
//! and the endpoints read from and written to them.
pub mod backoff;
pub mod connections;
pub mod driver;
pub mod envelope;
pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod s7;
pub mod status;
mod tls;
