//! Rule engine: `Cybus::Mapping` resources and the rule chains of mappings and endpoints.
//!
//! [`chain::Chain`] is the pure part: compiled rules and their state, fed messages and the
//! clock. [`mapping`] runs chains as tasks on the in-process broker link. Expressions are
//! JSONata on jsonata-core ([`expression`]).

mod burst;
pub mod chain;
mod collect;
pub mod context;
mod cov;
pub mod expression;
pub mod mapping;
mod parse;
mod payload;
mod stash;
mod task;
mod workers;

pub use chain::{Chain, Input, Output, RuleError};
pub use mapping::{
    EntrySpec, MappingError, MappingFailure, PublishSpec, RunningChains, SourceSpec,
    start_endpoint_chain, start_mapping,
};
pub use task::{LOG_INTERVAL, StatsSnapshot};
