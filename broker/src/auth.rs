//! The authentication and authorisation hook. The broker asks it on CONNECT, on every PUBLISH and
//! SUBSCRIBE, and for will messages; the user store of the admin API plugs in here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;

use crate::codec::ReasonCode;

/// What a client presented when it connected.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub peer: Option<SocketAddr>,
    /// The common name of the client certificate, when the listener asks for client certificates
    /// (mutual TLS) and the client presented one that chains to the configured client CA.
    pub certificate_name: Option<String>,
}

/// Who a connection belongs to once authenticated; handed back on every authorisation question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A client without a user name, admitted because anonymous access is allowed.
    Anonymous,
    /// A user known to the hook.
    User(String),
    /// A gateway component on the in-process link; always authorised.
    Internal,
}

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, ReasonCode>> + Send + 'a>>;

/// Plugged into the broker to decide who may connect and what they may do.
///
/// `authenticate` may be slow (password hashing); the authorisation checks run on every packet and
/// must answer from memory.
pub trait AuthHook: Send + Sync + 'static {
    /// Admits a client (`Ok`) or refuses it with a CONNACK reason code, typically
    /// [`ReasonCode::BAD_USERNAME_OR_PASSWORD`] or [`ReasonCode::NOT_AUTHORIZED`].
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a>;

    /// May `principal` publish to `topic` (also asked for a will topic at CONNECT)?
    fn authorize_publish(&self, principal: &Principal, topic: &str) -> bool;

    /// May `principal` subscribe to `filter` (the filter without any `$share/group/` prefix)?
    fn authorize_subscribe(&self, principal: &Principal, filter: &str) -> bool;
}

/// The hook used until a user store is plugged in: anonymous clients are admitted when
/// `allow_anonymous` is on and may do everything; clients presenting a user name are refused,
/// because there is no user store to check them against.
#[derive(Debug, Clone)]
pub struct AnonymousOnly {
    pub allow_anonymous: bool,
}

impl AuthHook for AnonymousOnly {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(async move {
            match &credentials.username {
                None if self.allow_anonymous => Ok(Principal::Anonymous),
                None => Err(ReasonCode::NOT_AUTHORIZED),
                Some(_) => Err(ReasonCode::BAD_USERNAME_OR_PASSWORD),
            }
        })
    }

    fn authorize_publish(&self, _principal: &Principal, _topic: &str) -> bool {
        true
    }

    fn authorize_subscribe(&self, _principal: &Principal, _filter: &str) -> bool {
        true
    }
}
