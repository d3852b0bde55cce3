//! Authentication: password hashing, tokens and login throttling.
pub mod password;
pub mod throttle;
pub mod token;
