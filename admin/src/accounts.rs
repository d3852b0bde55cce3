//! Users, roles, logins and tokens: the operations behind `/api/login`, `/api/users` and
//! `/api/roles`, and the checks the broker runs on MQTT CONNECT.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use commissioning::model::{AccessContext, AccessOperation, Permission};

use crate::access::{self, DirectoryUser, is_builtin_role};
use crate::auth::password::{self, MIN_PASSWORD_LENGTH};
use crate::auth::token::Claims;
use crate::error::{AdminError, AdminResult};
use crate::store::{RoleRecord, UserRecord};
use crate::{Admin, now_secs};

/// The longest a token may live, whatever `expireTimeInHours` asks for.
pub const MAX_TOKEN_HOURS: u64 = 24 * 30;
pub const DEFAULT_TOKEN_HOURS: u64 = 24;

/// Who made a request, once their token checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub token_id: String,
    pub token_expires: i64,
}

pub struct Login {
    pub token: String,
    pub expires_at: i64,
    pub permissions: Vec<Permission>,
}

/// A user as the API shows it.
#[derive(Debug, Clone)]
pub struct UserView {
    pub name: String,
    pub roles: Vec<String>,
    pub permissions: Vec<Permission>,
    pub service_id: Option<String>,
    pub created_at: i64,
}

impl From<UserRecord> for UserView {
    fn from(user: UserRecord) -> UserView {
        UserView {
            name: user.name,
            roles: user.roles,
            permissions: user.permissions,
            service_id: user.service_id,
            created_at: user.created_at,
        }
    }
}

pub struct UserChange {
    pub password: Option<String>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<Permission>>,
}

impl Admin {
    /// Checks a password, throttled per user name *and* address, and per address. Throttling a
    /// user name alone would let anybody lock the administrator out by failing on purpose
    /// (OWASP's authentication guidance); failures from one address slow down only that
    /// address. Without a known address (in-process callers) the user name alone counts.
    pub async fn check_password(
        &self,
        name: &str,
        password: &[u8],
        address: Option<IpAddr>,
    ) -> AdminResult<()> {
        let keys = match address {
            Some(address) => vec![format!("user:{name}@{address}"), format!("addr:{address}")],
            None => vec![format!("user:{name}")],
        };
        if let Some(wait) = self.throttle.retry_after(&keys, Instant::now()) {
            return Err(AdminError::Throttled(wait));
        }
        let hash = self
            .directory
            .load()
            .users
            .get(name)
            .map(|u| u.password_hash.clone());
        let ok = match hash {
            Some(hash)
                if self
                    .credentials
                    .matches(name, password, &hash, Instant::now()) =>
            {
                true
            }
            Some(hash) => {
                let ok = password::verify(password.to_vec(), hash.clone()).await;
                if ok {
                    self.credentials
                        .remember(name, password, &hash, Instant::now());
                }
                ok
            }
            None => {
                // Same work for unknown users, so timing does not reveal which names exist.
                let _ = password::verify(password.to_vec(), self.dummy_hash.clone()).await;
                false
            }
        };
        if ok {
            self.throttle.succeeded(&keys[0]);
            Ok(())
        } else {
            self.throttle.failed(&keys, Instant::now());
            Err(AdminError::Unauthenticated(
                "wrong user name or password".into(),
            ))
        }
    }

    pub async fn login(
        &self,
        name: &str,
        password: &str,
        hours: Option<u64>,
        address: Option<IpAddr>,
    ) -> AdminResult<Login> {
        let user = self.user_by_password(name, password, address).await?;
        let hours = hours.unwrap_or(DEFAULT_TOKEN_HOURS);
        if hours == 0 || hours > MAX_TOKEN_HOURS {
            return Err(AdminError::Invalid(format!(
                "expireTimeInHours must be 1-{MAX_TOKEN_HOURS}"
            )));
        }
        let now = now_secs();
        let claims = Claims {
            sub: name.to_string(),
            iat: now,
            exp: now + (hours * 3600) as i64,
            jti: password::generate(),
            generation: user.token_generation,
            uid: user.uid.clone(),
        };
        let token = self.signer.sign(&claims).map_err(AdminError::Internal)?;
        Ok(Login {
            token,
            expires_at: claims.exp,
            permissions: user.permissions.clone(),
        })
    }

    /// The caller behind a token: valid signature, not expired, not revoked, user still exists
    /// and has not changed password since.
    pub fn caller(&self, token: &str) -> AdminResult<Caller> {
        let claims = self.signer.verify(token).ok_or_else(|| {
            AdminError::Unauthenticated("the token is invalid or expired; log in again".into())
        })?;
        if self.is_revoked(&claims.jti) {
            return Err(AdminError::Unauthenticated(
                "the token was revoked; log in again".into(),
            ));
        }
        let directory = self.directory.load();
        let user = directory
            .users
            .get(&claims.sub)
            .filter(|u| u.uid == claims.uid && u.token_generation == claims.generation)
            .ok_or_else(|| {
                AdminError::Unauthenticated("the token is no longer valid; log in again".into())
            })?;
        Ok(Caller {
            name: claims.sub,
            permissions: user.permissions.clone(),
            token_id: claims.jti,
            token_expires: claims.exp,
        })
    }

    /// The caller behind a user name and password sent with a request (HTTP basic
    /// authentication, for machines that post to HTTP nodes without logging in first): the
    /// same check and throttling as a login, without a token.
    pub async fn check_basic_credentials(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> AdminResult<Caller> {
        let user = self.user_by_password(name, password, address).await?;
        Ok(Caller {
            name: name.to_string(),
            permissions: user.permissions,
            token_id: String::new(),
            token_expires: 0,
        })
    }

    /// The account behind a user name and password, after the throttled check.
    async fn user_by_password(
        &self,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> AdminResult<DirectoryUser> {
        self.check_password(name, password.as_bytes(), address)
            .await?;
        self.directory
            .load()
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| AdminError::Unauthenticated("wrong user name or password".into()))
    }

    pub async fn logout(&self, caller: &Caller) -> AdminResult<()> {
        self.store
            .revoke_token(&caller.token_id, caller.token_expires)
            .await?;
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(caller.token_id.clone(), caller.token_expires);
        // MQTT sessions opened with this token as the password end now.
        self.recheck_sessions();
        Ok(())
    }

    /// Whether user `name` may publish on `topic`, by their mqtt permissions: what another
    /// protocol's client (an OPC UA client writing a variable) needs to have its write
    /// published there in that user's name.
    pub fn may_publish(&self, name: &str, topic: &str) -> bool {
        self.directory.load().users.get(name).is_some_and(|user| {
            access::allows(
                &user.permissions,
                AccessContext::Mqtt,
                AccessOperation::Write,
                topic,
            )
        })
    }

    /// Whether a token seen valid before still is: not expired and not revoked since.
    pub(crate) fn token_is_valid(&self, token_id: &str, expires_at: i64) -> bool {
        expires_at > now_secs() && !self.is_revoked(token_id)
    }

    fn is_revoked(&self, token_id: &str) -> bool {
        let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_secs();
        revoked.retain(|_, expires| *expires >= now);
        revoked.contains_key(token_id)
    }

    pub async fn users(&self) -> AdminResult<Vec<UserView>> {
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .map(UserView::from)
            .collect())
    }

    pub async fn user(&self, name: &str) -> AdminResult<UserView> {
        self.store
            .user(name)
            .await?
            .map(UserView::from)
            .ok_or_else(|| AdminError::NotFound(format!("no user named {name:?}")))
    }

    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        roles: Vec<String>,
        permissions: Vec<Permission>,
        service_id: Option<String>,
    ) -> AdminResult<UserView> {
        let record = self
            .insert_user(
                name,
                password,
                roles,
                permissions,
                service_id,
                &BTreeSet::new(),
            )
            .await?;
        self.reload().await?;
        Ok(record.into())
    }

    /// Checks and stores a user without reloading the directory (see
    /// [`Admin::create_user`]); `new_roles` are roles stored in the same batch, not yet in the
    /// directory.
    pub(crate) async fn insert_user(
        &self,
        name: &str,
        password: &str,
        roles: Vec<String>,
        permissions: Vec<Permission>,
        service_id: Option<String>,
        new_roles: &BTreeSet<String>,
    ) -> AdminResult<UserRecord> {
        check_name("user", name)?;
        if service_id.is_none() {
            check_password_strength(password)?;
        }
        let unknown: Vec<String> = roles
            .iter()
            .filter(|r| !new_roles.contains(*r))
            .cloned()
            .collect();
        self.check_roles_exist(&unknown)?;
        check_permissions(&permissions)?;
        let record = UserRecord {
            name: name.to_string(),
            uid: password::new_user_id(),
            password_hash: password::hash(password.to_string())
                .await
                .map_err(AdminError::Internal)?,
            roles,
            permissions,
            service_id,
            token_generation: 0,
            created_at: now_secs(),
        };
        if !self.store.insert_user(&record).await? {
            return Err(AdminError::Conflict(format!(
                "a user named {name:?} already exists"
            )));
        }
        Ok(record)
    }

    pub async fn update_user(&self, name: &str, change: UserChange) -> AdminResult<UserView> {
        let mut user = self.editable_user(name).await?;
        if let Some(roles) = change.roles {
            self.check_roles_exist(&roles)?;
            user.roles = roles;
        }
        if let Some(permissions) = change.permissions {
            check_permissions(&permissions)?;
            user.permissions = permissions;
        }
        if let Some(password) = change.password {
            check_password_strength(&password)?;
            user.password_hash = password::hash(password)
                .await
                .map_err(AdminError::Internal)?;
            user.token_generation += 1;
        }
        if !self.store.update_user(&user).await? {
            return Err(AdminError::NotFound(format!("no user named {name:?}")));
        }
        self.reload().await?;
        Ok(user.into())
    }

    pub async fn change_own_password(
        &self,
        caller: &Caller,
        old: &str,
        new: &str,
    ) -> AdminResult<()> {
        self.check_password(&caller.name, old.as_bytes(), None)
            .await
            .map_err(|e| match e {
                AdminError::Unauthenticated(_) => {
                    AdminError::Forbidden("the current password is wrong".into())
                }
                other => other,
            })?;
        self.update_user(
            &caller.name,
            UserChange {
                password: Some(new.to_string()),
                roles: None,
                permissions: None,
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_user(&self, name: &str) -> AdminResult<()> {
        self.editable_user(name).await?;
        if name == crate::ADMIN_USER && self.count_admins().await? <= 1 {
            return Err(AdminError::Conflict(
                "the last administrator cannot be deleted".into(),
            ));
        }
        self.store.delete_user(name).await?;
        self.reload().await
    }

    async fn count_admins(&self) -> AdminResult<usize> {
        Ok(self
            .store
            .users()
            .await?
            .iter()
            .filter(|u| u.roles.iter().any(|r| r == access::ADMIN_ROLE))
            .count())
    }

    async fn editable_user(&self, name: &str) -> AdminResult<UserRecord> {
        let user = self
            .store
            .user(name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no user named {name:?}")))?;
        if let Some(service) = &user.service_id {
            return Err(AdminError::Conflict(format!(
                "user {name:?} belongs to service {service:?}; change it through the service's commissioning file"
            )));
        }
        Ok(user)
    }

    /// Refuses to give `roles` and `permissions` to anybody unless `caller` holds all of it:
    /// whoever may edit users must not be able to make themselves (or a friend) admin
    /// (Kubernetes RBAC's escalation rule). Unknown roles are left to the later existence check.
    pub fn check_grantable(
        &self,
        caller: &Caller,
        roles: &[String],
        permissions: &[Permission],
    ) -> AdminResult<()> {
        let directory = self.directory.load();
        let role_grants = roles.iter().flat_map(|role| {
            directory
                .roles
                .get(role)
                .into_iter()
                .flatten()
                .map(move |p| (Some(role), p))
        });
        let grants = permissions.iter().map(|p| (None, p)).chain(role_grants);
        for (role, grant) in grants {
            if !access::holds(&caller.permissions, grant) {
                let via = role
                    .map(|r| format!(" (through role {r:?})"))
                    .unwrap_or_default();
                return Err(AdminError::Forbidden(format!(
                    "{} {} on {:?}{via} is more than you hold yourself; nobody may grant more than they have",
                    grant.context.as_str(),
                    grant.operation.as_str(),
                    grant.resource
                )));
            }
        }
        Ok(())
    }

    fn check_roles_exist(&self, roles: &[String]) -> AdminResult<()> {
        let directory = self.directory.load();
        match roles.iter().find(|r| !directory.roles.contains_key(*r)) {
            Some(missing) => Err(AdminError::Invalid(format!("no role named {missing:?}"))),
            None => Ok(()),
        }
    }

    // Roles

    pub async fn roles(&self) -> AdminResult<Vec<RoleRecord>> {
        let mut roles: Vec<RoleRecord> = access::builtin_roles()
            .into_iter()
            .map(|(name, permissions)| RoleRecord {
                name: name.into(),
                permissions,
                service_id: None,
                created_at: 0,
            })
            .collect();
        roles.extend(self.store.roles().await?);
        Ok(roles)
    }

    pub async fn role(&self, name: &str) -> AdminResult<RoleRecord> {
        self.roles()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| AdminError::NotFound(format!("no role named {name:?}")))
    }

    pub async fn create_role(
        &self,
        name: &str,
        permissions: Vec<Permission>,
        service_id: Option<String>,
    ) -> AdminResult<RoleRecord> {
        let role = self.insert_role(name, permissions, service_id).await?;
        self.reload().await?;
        Ok(role)
    }

    /// Checks and stores a role without reloading the directory, for services that create many
    /// accounts at once and reload once (see [`Admin::create_role`]).
    pub(crate) async fn insert_role(
        &self,
        name: &str,
        permissions: Vec<Permission>,
        service_id: Option<String>,
    ) -> AdminResult<RoleRecord> {
        check_name("role", name)?;
        check_permissions(&permissions)?;
        if is_builtin_role(name) {
            return Err(AdminError::Conflict(format!("{name:?} is a built-in role")));
        }
        let role = RoleRecord {
            name: name.into(),
            permissions,
            service_id,
            created_at: now_secs(),
        };
        if !self.store.insert_role(&role).await? {
            return Err(AdminError::Conflict(format!(
                "a role named {name:?} already exists"
            )));
        }
        Ok(role)
    }

    pub async fn update_role(
        &self,
        name: &str,
        permissions: Vec<Permission>,
    ) -> AdminResult<RoleRecord> {
        let mut role = self.editable_role(name).await?;
        check_permissions(&permissions)?;
        role.permissions = permissions;
        self.store.update_role(&role).await?;
        self.reload().await?;
        Ok(role)
    }

    pub async fn delete_role(&self, name: &str) -> AdminResult<()> {
        self.editable_role(name).await?;
        let holders: Vec<String> = self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| u.roles.iter().any(|r| r == name))
            .map(|u| u.name)
            .collect();
        if !holders.is_empty() {
            return Err(AdminError::Conflict(format!(
                "role {name:?} is held by {}; take it away first",
                holders.join(", ")
            )));
        }
        self.store.delete_role(name).await?;
        self.reload().await
    }

    async fn editable_role(&self, name: &str) -> AdminResult<RoleRecord> {
        if is_builtin_role(name) {
            return Err(AdminError::Conflict(format!(
                "{name:?} is a built-in role and cannot be changed"
            )));
        }
        let role = self.role(name).await?;
        if let Some(service) = &role.service_id {
            return Err(AdminError::Conflict(format!(
                "role {name:?} belongs to service {service:?}; change it through the service's commissioning file"
            )));
        }
        Ok(role)
    }
}

/// User and role names: 1-128 characters of letters, digits, `_`, `-`, `.` and `@`.
fn check_name(what: &str, name: &str) -> AdminResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "{what} name {name:?} must be 1-128 characters of letters, digits, `_`, `-`, `.` and `@`"
        )))
    }
}

fn check_password_strength(password: &str) -> AdminResult<()> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(AdminError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_LENGTH} characters"
        )));
    }
    Ok(())
}

fn check_permissions(permissions: &[Permission]) -> AdminResult<()> {
    for p in permissions {
        let levels: Vec<&str> = p.resource.split('/').collect();
        let bad = p.resource.is_empty()
            || levels.iter().enumerate().any(|(i, l)| {
                (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
                    || (l.contains('+') && *l != "+")
            });
        if bad {
            return Err(AdminError::Invalid(format!(
                "permission resource {:?} is not a valid pattern (`+` is a whole level, `#` only the last)",
                p.resource
            )));
        }
    }
    Ok(())
}
