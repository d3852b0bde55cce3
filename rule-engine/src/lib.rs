//! Rule engine: `Cybus::Mapping` resources and rule chains (JSONata transform, filter, cov, burst,
//! collect, stash, setContextVars, parse).
//!
//! Not implemented yet (issue "Mappings and the rule engine"). This crate deliberately exports
//! nothing until it does real work.
