//! The broker's authentication hook backed by the admin users: MQTT clients log in with the
//! same user names and passwords as the API and get the same mqtt-context permissions.

use std::sync::Arc;

use broker::auth::{AuthFuture, AuthHook, Credentials, Principal};
use broker::codec::ReasonCode;
use commissioning::model::{AccessContext, AccessOperation};

use crate::access::allows;
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
                    return match self.admin.directory.load().users.contains_key(cn) {
                        true => Ok(Principal::User(cn.clone())),
                        false => Err(ReasonCode::NOT_AUTHORIZED),
                    };
                }
                return match self.allow_anonymous {
                    true => Ok(Principal::Anonymous),
                    false => Err(ReasonCode::NOT_AUTHORIZED),
                };
            };
            let password = credentials.password.as_deref().unwrap_or_default();
            let address = credentials.peer.map(|p| p.ip());
            match self.admin.check_password(name, password, address).await {
                Ok(()) => Ok(Principal::User(name.clone())),
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
}

impl UserAuth {
    fn allowed(&self, principal: &Principal, operation: AccessOperation, topic: &str) -> bool {
        match principal {
            Principal::Internal => true,
            // Anonymous clients exist only when the operator switched anonymous access on.
            Principal::Anonymous => self.allow_anonymous,
            // Looked up on every packet, so deleting a user or changing a role takes effect on
            // open connections at once.
            Principal::User(name) => {
                self.admin
                    .directory
                    .load()
                    .users
                    .get(name)
                    .is_some_and(|user| {
                        allows(&user.permissions, AccessContext::Mqtt, operation, topic)
                    })
            }
        }
    }
}
