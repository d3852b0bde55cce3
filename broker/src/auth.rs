//! The authentication and authorisation hook. The broker asks it on CONNECT, on every PUBLISH and
//! SUBSCRIBE, and for will messages; the user store of the admin API plugs in here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

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
    /// A user known to the hook; behind an `Arc` so that a connection, which keeps its
    /// principal for its whole life, carries one pointer rather than the user's names.
    User(Arc<UserPrincipal>),
    /// A gateway component on the in-process link; always authorised.
    Internal,
}

/// A user as the hook identified it at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    pub name: String,
    /// Never reused, not even by a user created later under the same name: a persistent session
    /// belongs to this id, so a new account with an old name does not inherit its sessions.
    pub id: String,
    /// The hook's version of the user's credentials (raised on a password change); the hook
    /// compares it in [`AuthHook::is_current`].
    pub generation: i64,
    /// Set when the client logged in with a credential that ends on its own (an API token as
    /// the password) rather than with the user's password. The hook checks it again in
    /// [`AuthHook::is_current`], and signals [`AuthHook::changes`] when it expires, so the
    /// connection ends with it.
    pub expiring: Option<ExpiringCredential>,
}

/// A credential that is valid until a given time, or until the hook revokes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringCredential {
    /// The hook's id of it (an API token's `jti`), to look up whether it was revoked.
    pub id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Principal {
    pub fn user(name: impl Into<String>, id: impl Into<String>, generation: i64) -> Principal {
        Principal::User(Arc::new(UserPrincipal {
            name: name.into(),
            id: id.into(),
            generation,
            expiring: None,
        }))
    }

    /// A user who logged in with `credential` instead of their password.
    pub fn user_with_expiring_credential(
        name: impl Into<String>,
        id: impl Into<String>,
        generation: i64,
        credential: ExpiringCredential,
    ) -> Principal {
        Principal::User(Arc::new(UserPrincipal {
            name: name.into(),
            id: id.into(),
            generation,
            expiring: Some(credential),
        }))
    }

    /// Who owns a session this principal opens: a session is resumed only by its owner.
    pub fn session_owner(&self) -> SessionOwner {
        match self {
            Principal::Anonymous => SessionOwner::Anonymous,
            Principal::User(user) => SessionOwner::User(user.id.clone()),
            Principal::Internal => SessionOwner::Internal,
        }
    }
}

/// The owner of a session: anonymous clients share one, users are told apart by their immutable
/// id (not their name), in-process components are their own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionOwner {
    Anonymous,
    User(String),
    Internal,
    /// A session restored from a snapshot written before owners were recorded: nobody can
    /// prove it is theirs, so nobody resumes it.
    Unknown,
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

    /// May `principal` receive a message on `topic`? Asked for every delivery, so a permission
    /// taken away stops the messages of subscriptions made before, queued ones included.
    fn authorize_receive(&self, principal: &Principal, topic: &str) -> bool {
        self.authorize_subscribe(principal, topic)
    }

    /// May `principal` receive on every topic? Asked at CONNECT and after every change; when
    /// true, deliveries skip [`AuthHook::authorize_receive`], which keeps the per-message check
    /// off the hot path for administrators and components.
    fn may_receive_everything(&self, _principal: &Principal) -> bool {
        false
    }

    /// Is `principal` still valid (the user exists, same account, same credentials, an expiring
    /// credential neither expired nor revoked)? Asked by every connection when
    /// [`AuthHook::changes`] signals; `false` disconnects it.
    fn is_current(&self, _principal: &Principal) -> bool {
        true
    }

    /// Signals that users or permissions changed. `None` when they never do.
    fn changes(&self) -> Option<watch::Receiver<()>> {
        None
    }
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

    fn may_receive_everything(&self, _principal: &Principal) -> bool {
        true
    }
}
