//! The broker's authentication hook backed by the admin users: MQTT clients log in with the
//! same user names and passwords as the API and get the same mqtt-context permissions.

use std::sync::Arc;

use broker::auth::{AuthFuture, AuthHook, Credentials, Principal};
use broker::codec::ReasonCode;
use commissioning::model::{AccessContext, AccessOperation};
use tokio::sync::watch;

use crate::access::allows;
use crate::agents::{self, Reach};
use crate::{Admin, AdminError};

#[derive(Debug)]
pub struct UserAuth {
    pub admin: Arc<Admin>,
    pub allow_anonymous: bool,
}

impl AuthHook for UserAuth {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(async move {
            let Some(name) = &credentials.username else {
                // Mutual TLS: the transport verified the certificate against the client CA, so
                // its common name identifies the user without a password.
                if let Some(cn) = &credentials.certificate_name {
                    return self.principal(cn).ok_or(ReasonCode::NOT_AUTHORIZED);
                }
                return match self.allow_anonymous {
                    true => Ok(Principal::Anonymous),
                    false => Err(ReasonCode::NOT_AUTHORIZED),
                };
            };
            let password = credentials.password.as_deref().unwrap_or_default();
            // The web console holds the user's API token, not their password: a token of this
            // user (valid signature, not expired, not revoked) is accepted as the password.
            if looks_like_token(password)
                && let Ok(caller) = self.admin.caller(&String::from_utf8_lossy(password))
                && caller.name == *name
            {
                return self
                    .principal(name)
                    .ok_or(ReasonCode::BAD_USERNAME_OR_PASSWORD);
            }
            let address = credentials.peer.map(|p| p.ip());
            match self.admin.check_password(name, password, address).await {
                // Deleted between the password check and here: as if it never existed.
                Ok(()) => self
                    .principal(name)
                    .ok_or(ReasonCode::BAD_USERNAME_OR_PASSWORD),
                Err(AdminError::Throttled(_)) => Err(ReasonCode::SERVER_BUSY),
                Err(_) => Err(ReasonCode::BAD_USERNAME_OR_PASSWORD),
            }
        })
    }

    fn authorize_publish(&self, principal: &Principal, topic: &str) -> bool {
        self.allowed(principal, AccessOperation::Write, topic)
    }

    fn authorize_subscribe(&self, principal: &Principal, filter: &str) -> bool {
        self.allowed(principal, AccessOperation::Read, filter)
    }

    fn may_receive_everything(&self, principal: &Principal) -> bool {
        self.allowed(principal, AccessOperation::Read, "#")
    }

    fn is_current(&self, principal: &Principal) -> bool {
        match principal {
            Principal::User(user) => self
                .admin
                .directory
                .load()
                .users
                .get(&user.name)
                .is_some_and(|current| {
                    current.uid == user.id && current.token_generation == user.generation
                }),
            Principal::Anonymous | Principal::Internal => true,
        }
    }

    fn changes(&self) -> Option<watch::Receiver<()>> {
        Some(self.admin.directory_changes())
    }
}

/// A JWT as the API issues it: `eyJ` (a base64url JSON header) and three dot-separated parts.
/// Anything else skips the token check; something of that shape that is not a valid token of
/// the user is still tried as a password.
fn looks_like_token(password: &[u8]) -> bool {
    password.starts_with(b"eyJ") && password.iter().filter(|&&b| b == b'.').count() == 2
}

impl UserAuth {
    /// The principal of user `name` as the directory has it now.
    fn principal(&self, name: &str) -> Option<Principal> {
        let directory = self.admin.directory.load();
        let user = directory.users.get(name)?;
        Some(Principal::user(
            name,
            user.uid.clone(),
            user.token_generation,
        ))
    }

    fn allowed(&self, principal: &Principal, operation: AccessOperation, topic: &str) -> bool {
        let reach = agents::reach(topic);
        match principal {
            Principal::Internal => true,
            // Anonymous clients exist only when the operator switched anonymous access on.
            Principal::Anonymous => self.allow_anonymous && reach == Reach::None,
            // Looked up on every packet, so deleting a user or changing a role takes effect on
            // open connections at once.
            Principal::User(principal) => {
                let directory = self.admin.directory.load();
                // The same account, not merely the same name: a user recreated under an old
                // name does not act for connections of the old one.
                let Some(user) = directory
                    .users
                    .get(&principal.name)
                    .filter(|user| user.uid == principal.id)
                else {
                    return false;
                };
                match reach {
                    Reach::None => {}
                    // An agent's work holds device passwords: its own, nobody else's.
                    Reach::One(agent) => return agent == principal.name,
                    Reach::Every => return false,
                }
                allows(&user.permissions, AccessContext::Mqtt, operation, topic)
                    || self
                        .admin
                        .placements
                        .allows(&directory, &principal.name, operation, topic)
            }
        }
    }
}
