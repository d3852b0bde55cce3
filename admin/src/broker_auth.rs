//! The broker's authentication hook backed by the admin users: MQTT clients log in with the
//! same user names and passwords as the API and get the same mqtt-context permissions.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::auth::{AuthFuture, AuthHook, Credentials, ExpiringCredential, Principal};
use broker::codec::ReasonCode;
use commissioning::model::{AccessContext, AccessOperation};
use tokio::sync::watch;

use crate::access::allows;
use crate::agents::{self, Reach};
use crate::{Admin, AdminError, now_secs};

#[derive(Debug)]
pub struct UserAuth {
    admin: Arc<Admin>,
    allow_anonymous: bool,
    /// Expiry times (Unix seconds) of API tokens in use as MQTT passwords, each with a wake-up
    /// scheduled: one task per distinct time, however often clients reconnect with a token.
    expiries: Arc<Mutex<BTreeSet<i64>>>,
}

impl UserAuth {
    pub fn new(admin: Arc<Admin>, allow_anonymous: bool) -> UserAuth {
        UserAuth {
            admin,
            allow_anonymous,
            expiries: Arc::default(),
        }
    }
}

impl AuthHook for UserAuth {
    fn authenticate<'a>(&'a self, credentials: &'a Credentials) -> AuthFuture<'a> {
        Box::pin(async move {
            let Some(name) = &credentials.username else {
                // Mutual TLS: the transport verified the certificate against the client CA, so
                // its common name identifies the user without a password.
                if let Some(cn) = &credentials.certificate_name {
                    return self.principal(cn, None).ok_or(ReasonCode::NOT_AUTHORIZED);
                }
                return match self.allow_anonymous {
                    true => Ok(Principal::Anonymous),
                    false => Err(ReasonCode::NOT_AUTHORIZED),
                };
            };
            let password = credentials.password.as_deref().unwrap_or_default();
            // The web console holds the user's API token, not their password: a token of this
            // user (valid signature, not expired, not revoked) is accepted as the password.
            // The session lasts as long as the token: it ends when the token expires or is
            // revoked (logout), as the console's own session does.
            if looks_like_token(password)
                && let Ok(caller) = self.admin.caller(&String::from_utf8_lossy(password))
                && caller.name == *name
            {
                let token = ExpiringCredential {
                    id: caller.token_id,
                    expires_at: caller.token_expires,
                };
                self.end_sessions_at(token.expires_at);
                return self
                    .principal(name, Some(token))
                    .ok_or(ReasonCode::BAD_USERNAME_OR_PASSWORD);
            }
            let address = credentials.peer.map(|p| p.ip());
            match self.admin.check_password(name, password, address).await {
                // Deleted between the password check and here: as if it never existed.
                Ok(()) => self
                    .principal(name, None)
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
            Principal::User(user) => {
                self.admin
                    .directory
                    .load()
                    .users
                    .get(&user.name)
                    .is_some_and(|current| {
                        current.uid == user.id && current.token_generation == user.generation
                    })
                    && user
                        .expiring
                        .as_ref()
                        .is_none_or(|token| self.admin.token_is_valid(&token.id, token.expires_at))
            }
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
    /// The principal of user `name` as the directory has it now, logged in with an API token
    /// instead of a password or certificate when `token` is given.
    fn principal(&self, name: &str, token: Option<ExpiringCredential>) -> Option<Principal> {
        let directory = self.admin.directory.load();
        let user = directory.users.get(name)?;
        let (id, generation) = (user.uid.clone(), user.token_generation);
        Some(match token {
            None => Principal::user(name, id, generation),
            Some(token) => Principal::user_with_expiring_credential(name, id, generation, token),
        })
    }

    /// Makes every connection check its credentials again just after `expires_at`, when
    /// those logged in with a token expiring then no longer pass [`AuthHook::is_current`].
    /// Nothing else would make them look: the directory does not change when a token expires.
    fn end_sessions_at(&self, expires_at: i64) {
        let mut expiries = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
        if !expiries.insert(expires_at) {
            return;
        }
        let admin = Arc::downgrade(&self.admin);
        let expiries = Arc::clone(&self.expiries);
        // A second past the expiry: `is_current` compares whole seconds.
        let wait = u64::try_from(expires_at - now_secs()).unwrap_or(0) + 1;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            expiries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&expires_at);
            if let Some(admin) = admin.upgrade() {
                admin.recheck_sessions();
            }
        });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use broker::auth::Credentials;
    use commissioning::{Resource, Service};

    use super::*;
    use crate::AdminConfig;
    use crate::auth::token::Claims;
    use crate::services::{
        AgentWork, BoxFuture, ResourceRuntime, ResourceState, ResourceStatus, ServiceState,
    };

    /// Runs no resources: these tests are about accounts.
    struct NoResources;

    impl ResourceRuntime for NoResources {
        fn start<'a>(
            &'a self,
            _: &'a Service,
            _: &'a Resource,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn stop<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn status(&self, _: &str, _: &str) -> ResourceStatus {
            ResourceStatus {
                state: ResourceState::Stopped,
                in_target_state: true,
                message: None,
                metrics: None,
            }
        }
        fn service_state(&self, _: &str, _: ServiceState, _: Option<&str>) {}
        fn assign_agents(&self, _: &str, _: &BTreeSet<String>, _: &AgentWork) {}
        fn service_removed(&self, _: &str) {}
    }

    const PASSWORD: &str = "alice-password-1";

    async fn admin_with_alice(dir: &std::path::Path) -> Arc<Admin> {
        let config = AdminConfig {
            data_dir: dir.to_path_buf(),
            database_url: None,
            admin_password: Some("admin-password-1".into()),
            mqtt_host: "localhost".into(),
            mqtt_port: 1883,
            max_body_bytes: 64 * 1024,
        };
        let admin = Admin::start(config, Arc::new(NoResources)).await.unwrap();
        admin
            .create_user("alice", PASSWORD, Vec::new(), Vec::new(), None)
            .await
            .unwrap();
        admin
    }

    fn login(name: &str, password: &str) -> Credentials {
        Credentials {
            client_id: "hmi".into(),
            username: Some(name.into()),
            password: Some(password.as_bytes().to_vec().into()),
            peer: None,
            certificate_name: None,
        }
    }

    #[tokio::test]
    async fn a_session_opened_with_a_token_ends_when_the_token_expires() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin_with_alice(dir.path()).await;
        // The API issues tokens for an hour at least; one that expires in seconds is signed
        // here with the gateway's key. Three of them: expiry is in whole seconds, and the
        // token must still be valid after the password check below, whatever the fraction
        // of the second the test starts at.
        let now = now_secs();
        let alice = admin.directory.load().users.get("alice").cloned().unwrap();
        let token = admin
            .signer
            .sign(&Claims {
                sub: "alice".into(),
                exp: now + 3,
                iat: now,
                jti: "short-lived".into(),
                generation: alice.token_generation,
                uid: alice.uid.clone(),
            })
            .unwrap();
        let auth = UserAuth::new(admin.clone(), false);
        let mut changes = admin.directory_changes();
        changes.mark_unchanged();

        let by_token = auth.authenticate(&login("alice", &token)).await.unwrap();
        let by_password = auth.authenticate(&login("alice", PASSWORD)).await.unwrap();
        assert!(auth.is_current(&by_token) && auth.is_current(&by_password));

        // Nothing in the directory changes when a token expires: the hook wakes the
        // connections itself, and then the token's session is no longer current.
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .expect("connections asked to check again after the expiry")
            .unwrap();
        assert!(!auth.is_current(&by_token), "the token has expired");
        assert!(auth.is_current(&by_password), "a password does not expire");
    }

    #[tokio::test]
    async fn a_session_opened_with_a_token_ends_when_the_token_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let admin = admin_with_alice(dir.path()).await;
        let login_result = admin.login("alice", PASSWORD, None, None).await.unwrap();
        let auth = UserAuth::new(admin.clone(), false);
        let by_token = auth
            .authenticate(&login("alice", &login_result.token))
            .await
            .unwrap();
        let mut changes = admin.directory_changes();
        changes.mark_unchanged();

        let caller = admin.caller(&login_result.token).unwrap();
        admin.logout(&caller).await.unwrap();
        assert!(
            changes.has_changed().unwrap(),
            "logout wakes the connections"
        );
        assert!(!auth.is_current(&by_token));
        assert_eq!(
            auth.expiries.lock().unwrap().len(),
            1,
            "one wake-up scheduled, at the token's expiry"
        );
    }
}
