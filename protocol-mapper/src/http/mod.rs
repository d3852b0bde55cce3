//! HTTP/REST client connections (`protocol: Http`), the only module that uses reqwest: the
//! driver (`connection.rs`) and what a body becomes in a message (`body.rs`).

mod body;
pub mod connection;
mod oauth;

use connection::chain;
