//! Modbus TCP, RTU over TCP and RTU on a serial line. The only module that talks to
//! tokio-modbus and tokio-serial.
pub mod batch;
pub mod codec;
pub mod connection;
mod serial;
pub mod simulator;
