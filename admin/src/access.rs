//! The permission model, shared by the REST API and the MQTT broker: who holds
//! which `{resource, operation, context}` and whether that covers a request.

use std::collections::{BTreeSet, HashMap};

use commissioning::model::{AccessContext, AccessOperation, Permission};

use crate::store::{RoleRecord, UserRecord};

pub const ADMIN_ROLE: &str = "admin";
pub const MINIMUM_ACCESS_ROLE: &str = "minimum-access";

/// The built-in roles. They are not stored and cannot be changed.
pub fn builtin_roles() -> Vec<(&'static str, Vec<Permission>)> {
    let p = |resource: &str, operation, context| Permission {
        resource: resource.into(),
        operation,
        context,
    };
    vec![
        (
            ADMIN_ROLE,
            vec![
                p("#", AccessOperation::ReadWrite, AccessContext::Http),
                p("#", AccessOperation::ReadWrite, AccessContext::Mqtt),
            ],
        ),
        (
            MINIMUM_ACCESS_ROLE,
            vec![
                p("/api/system/#", AccessOperation::Read, AccessContext::Http),
                p(
                    "/api/permissions",
                    AccessOperation::Read,
                    AccessContext::Http,
                ),
            ],
        ),
    ]
}

pub fn is_builtin_role(name: &str) -> bool {
    name == ADMIN_ROLE || name == MINIMUM_ACCESS_ROLE
}

/// Does `pattern` (with `+` and `#`) cover `target`? For MQTT publishes and HTTP paths `target`
/// is concrete; for subscriptions it is itself a filter, and then every topic it can match must
/// be covered (`a/+` covers `a/b` and `a/+`, but not `a/#`). Unlike MQTT matching, `#` and `+`
/// here also cover `$`-topics: permissions are granted deliberately, and admins need `$SYS`.
pub fn covers(pattern: &str, target: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut target = target.split('/');
    loop {
        match (pattern.next(), target.next()) {
            (Some("#"), _) => return true,
            (Some(p), Some(t)) => {
                let ok = match p {
                    "+" => t != "#",
                    literal => literal == t,
                };
                if !ok {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is a request of `operation` in `context` on `target` allowed by `permissions`?
pub fn allows(
    permissions: &[Permission],
    context: AccessContext,
    operation: AccessOperation,
    target: &str,
) -> bool {
    permissions.iter().any(|p| {
        p.context == context
            && (p.operation == operation || p.operation == AccessOperation::ReadWrite)
            && covers(&p.resource, target)
    })
}

/// Does `held` include everything `grant` gives? A readWrite grant needs both halves held. This is
/// the escalation rule for users, roles and services: nobody grants what they do not hold.
pub fn holds(held: &[Permission], grant: &Permission) -> bool {
    let operations: &[AccessOperation] = match grant.operation {
        AccessOperation::ReadWrite => &[AccessOperation::Read, AccessOperation::Write],
        AccessOperation::Read => &[AccessOperation::Read],
        AccessOperation::Write => &[AccessOperation::Write],
    };
    operations
        .iter()
        .all(|&operation| allows(held, grant.context, operation, &grant.resource))
}

/// Everything the API and the broker need to decide access, loaded from the store and replaced
/// as a whole after every change (readers never wait, see `arc_swap` in [`crate::Admin`]).
#[derive(Debug, Default)]
pub struct Directory {
    pub users: HashMap<String, DirectoryUser>,
    pub roles: HashMap<String, Vec<Permission>>,
}

#[derive(Debug, Clone)]
pub struct DirectoryUser {
    /// The account's immutable id (tokens and MQTT sessions belong to it, not to the name).
    pub uid: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    /// Direct permissions plus those of every role, deduplicated.
    pub permissions: Vec<Permission>,
    pub token_generation: i64,
    pub service_id: Option<String>,
}

impl Directory {
    pub fn build(users: Vec<UserRecord>, roles: Vec<RoleRecord>) -> Directory {
        let mut role_map: HashMap<String, Vec<Permission>> = builtin_roles()
            .into_iter()
            .map(|(name, perms)| (name.to_string(), perms))
            .collect();
        for role in roles {
            role_map.insert(role.name, role.permissions);
        }
        let users = users
            .into_iter()
            .map(|user| {
                let mut permissions: BTreeSet<Permission> = user.permissions.into_iter().collect();
                for role in &user.roles {
                    if let Some(perms) = role_map.get(role) {
                        permissions.extend(perms.iter().cloned());
                    }
                }
                (
                    user.name,
                    DirectoryUser {
                        uid: user.uid,
                        password_hash: user.password_hash,
                        roles: user.roles,
                        permissions: permissions.into_iter().collect(),
                        token_generation: user.token_generation,
                        service_id: user.service_id,
                    },
                )
            })
            .collect();
        Directory {
            users,
            roles: role_map,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_table() {
        let cases = [
            ("#", "a/b", true),
            ("#", "$SYS/broker/uptime", true),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "b", false),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/b", "a/b", true),
            ("a/b", "a/+", false),
            ("services/+/#", "services/plc/temperature", true),
            ("/api/services/#", "/api/services", true),
            ("/api/services/#", "/api/services/plc/status", true),
            ("/api/services/+", "/api/services/plc/status", false),
            ("/api/users", "/api/users/x", false),
        ];
        for (pattern, target, expected) in cases {
            assert_eq!(
                covers(pattern, target),
                expected,
                "{pattern} covers {target}"
            );
        }
    }

    #[test]
    fn holding_a_grant() {
        let p = |resource: &str, operation, context| Permission {
            resource: resource.into(),
            operation,
            context,
        };
        use AccessContext::{Http, Mqtt};
        use AccessOperation::{Read, ReadWrite, Write};
        let held = vec![
            p("plant/#", Read, Mqtt),
            p("plant/line1/#", Write, Mqtt),
            p("/api/services/#", ReadWrite, Http),
        ];
        let cases = [
            (p("plant/line2/+", Read, Mqtt), true),
            (p("plant/#", Read, Mqtt), true),
            (p("plant/line1/x", ReadWrite, Mqtt), true),
            (p("plant/line2/x", ReadWrite, Mqtt), false),
            (p("#", Read, Mqtt), false),
            (p("+/#", Read, Mqtt), false),
            (p("plant/#", Read, Http), false),
            (p("/api/services/x", Write, Http), true),
            (p("#", ReadWrite, Http), false),
        ];
        for (grant, expected) in cases {
            assert_eq!(holds(&held, &grant), expected, "{grant:?}");
        }
    }

    #[test]
    fn operations_and_contexts() {
        let perms = vec![
            Permission {
                resource: "a/#".into(),
                operation: AccessOperation::Read,
                context: AccessContext::Mqtt,
            },
            Permission {
                resource: "b/#".into(),
                operation: AccessOperation::ReadWrite,
                context: AccessContext::Mqtt,
            },
        ];
        assert!(allows(
            &perms,
            AccessContext::Mqtt,
            AccessOperation::Read,
            "a/x"
        ));
        assert!(!allows(
            &perms,
            AccessContext::Mqtt,
            AccessOperation::Write,
            "a/x"
        ));
        assert!(allows(
            &perms,
            AccessContext::Mqtt,
            AccessOperation::Write,
            "b/x"
        ));
        assert!(!allows(
            &perms,
            AccessContext::Http,
            AccessOperation::Read,
            "a/x"
        ));
    }
}
