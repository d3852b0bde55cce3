//! Whole-system tests: the gateway in-process (`gateway::Gateway`) against real clients, real
//! devices and Debian's Mosquitto.
//!
//! One test binary with a module per subject, rather than a binary per file under `tests/`: each
//! of those would link the whole gateway again, which costs minutes of linking and gigabytes of
//! disk in CI for nothing. Run one subject with `cargo test -p tests --test system forwarding::`.
#![allow(clippy::unwrap_used)]

mod common;

mod broker_security;
mod discovery;
mod external_broker;
mod forwarding;
mod gateway_in_process;
mod http_server;
mod mappings;
mod modbus_service;
mod mutual_tls;
mod observability;
mod opcua_server;
mod rule_isolation;
