//! Protocol mapper: connections and endpoints for Modbus TCP, OPC UA and external MQTT brokers.
//!
//! Not implemented yet (issue "Protocol mapper"). This crate deliberately exports nothing, so no
//! part of the gateway can appear to read a device before it really does.
