//! Authentication: password hashing, tokens and login throttling.
pub mod credential_cache;
pub mod password;
pub mod throttle;
pub mod token;
