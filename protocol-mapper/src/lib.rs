//! The protocol mapper: connections to machines (Modbus TCP, OPC UA) and to remote MQTT brokers,
//! and the endpoints read from and written to them.
pub mod backoff;
pub mod connections;
pub mod driver;
pub mod envelope;
pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod opcua;
pub mod status;
mod tls;
