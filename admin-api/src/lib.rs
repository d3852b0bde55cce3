//! Admin API: commissioning files, services, users, roles and permissions over REST, persisted
//! with sqlx.
//!
//! Not implemented yet (issue "Commissioning files, services and the admin API"). This crate
//! deliberately exports nothing until it does real work.
