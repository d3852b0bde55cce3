//! What can go wrong in an admin operation, independent of HTTP (mapped to status codes in one
//! place, `http::error`).

use std::time::Duration;

use commissioning::Diagnostic;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("not permitted: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the commissioning file is invalid ({} problems)", .0.len())]
    InvalidFile(Vec<Diagnostic>),
    #[error("too many failed attempts; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type AdminResult<T> = Result<T, AdminError>;
