//! Commissioning files: the YAML that declares a service, in Cybus Connectware's format.
//!
//! [`load`] takes the file text, the service id and the parameter values and returns either a
//! resolved, typed [`Service`] or every problem found, each with its YAML path and position.
//! Nothing here does I/O; the admin API and the `ironbridge validate` command call it.

pub mod connectware;
pub mod diagnostic;
pub mod discovery;
pub mod model;
pub mod opcua_address;
mod opcua_server;
pub mod params;
mod protocols;
pub mod resolve;
mod rules;
pub mod s7_address;
pub mod secrets;
pub mod service;
pub mod topic_pattern;
mod typed;
pub mod yaml;

pub use diagnostic::{Diagnostic, Pos, Severity};
pub use resolve::OtherServices;
pub use service::{
    Environment, Resource, Service, check_service_id, declared_parameter_specs, derive_service_id,
    load, load_file, service_id_for,
};
