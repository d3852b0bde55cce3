//! What installing a service may claim: the permissions its `Cybus::User` and `Cybus::Role`
//! resources grant, its topic root, and the names of the accounts it creates. Checked before
//! anything is stored, so a refused file changes nothing.

use std::collections::BTreeMap;

use commissioning::Service;
use commissioning::model::{Permission, ResourceKind};

use super::{Authority, Installed, default_role_name};
use crate::Admin;
use crate::access::holds;
use crate::error::{AdminError, AdminResult};

impl Admin {
    /// Refuses a service that grants more than the caller holds, or whose topic root overlaps
    /// another service's.
    pub(super) fn check_service_grants(
        &self,
        service: &Service,
        services: &BTreeMap<String, Installed>,
        authority: &Authority,
    ) -> AdminResult<()> {
        for other in services.values().filter(|s| s.service.id != service.id) {
            if roots_overlap(&service.mqtt_root, &other.service.mqtt_root) {
                return Err(AdminError::Conflict(format!(
                    "the topic root {:?} overlaps {:?} of service {:?}; each service needs a root of its own (set CYBUS_MQTT_ROOT)",
                    service.mqtt_root, other.service.mqtt_root, other.service.id
                )));
            }
        }
        let Authority::Caller(held) = authority else {
            return Ok(());
        };
        for (resource, grant) in self.grants_of(service) {
            if !holds(held, &grant) {
                return Err(AdminError::Forbidden(format!(
                    "resources.{resource} grants {} {} on {:?}, which you do not hold yourself; nobody may grant more than they have",
                    grant.context.as_str(),
                    grant.operation.as_str(),
                    grant.resource
                )));
            }
        }
        Ok(())
    }

    /// Every permission the service's accounts would hold beyond its own topic root, with the
    /// resource that grants it: direct permissions, the roles its users get (from the file or
    /// another service), and a `defaultRole`'s additions to the service's broker user.
    fn grants_of(&self, service: &Service) -> Vec<(String, Permission)> {
        let directory = self.directory.load();
        let mut grants = Vec::new();
        for resource in service.resources.values() {
            match &resource.kind {
                ResourceKind::Role(role) => grants.extend(
                    role.permissions
                        .iter()
                        .map(|p| (resource.id.clone(), p.clone())),
                ),
                ResourceKind::User(user) => {
                    grants.extend(
                        user.permissions
                            .iter()
                            .map(|p| (resource.id.clone(), p.clone())),
                    );
                    // Roles of this file are checked as resources of their own above.
                    for role in user.roles.iter().filter(|r| r.service != service.id) {
                        let name = format!("{}.{}", role.service, role.resource);
                        for p in directory.roles.get(&name).into_iter().flatten() {
                            grants.push((resource.id.clone(), p.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        grants
    }

    /// Refuses a service whose accounts would take the name of an account somebody else
    /// created (an administrator's user `plant.viewer` and a service `plant` with a
    /// `Cybus::User` named `viewer`): the service would fail to enable, and deleting it must
    /// never delete that account.
    pub(super) async fn check_account_names(&self, service: &Service) -> AdminResult<()> {
        let mut users = vec![service.id.clone()];
        let mut roles = vec![default_role_name(&service.id)];
        for resource in service.resources.values() {
            let name = format!("{}.{}", service.id, resource.id);
            match &resource.kind {
                ResourceKind::User(_) => users.push(name),
                ResourceKind::Role(_) if resource.id != "defaultRole" => roles.push(name),
                _ => {}
            }
        }
        let foreign = |owner: &Option<String>| owner.as_deref() != Some(service.id.as_str());
        for user in self.store.users().await? {
            if users.contains(&user.name) && foreign(&user.service_id) {
                return Err(AdminError::Conflict(format!(
                    "service {:?} needs the user name {:?}, which {}; rename the resource or the service id",
                    service.id,
                    user.name,
                    describe_owner(&user.service_id)
                )));
            }
        }
        for role in self.store.roles().await? {
            if roles.contains(&role.name) && foreign(&role.service_id) {
                return Err(AdminError::Conflict(format!(
                    "service {:?} needs the role name {:?}, which {}; rename the resource or the service id",
                    service.id,
                    role.name,
                    describe_owner(&role.service_id)
                )));
            }
        }
        Ok(())
    }
}

fn describe_owner(owner: &Option<String>) -> String {
    match owner {
        Some(service) => format!("service {service:?} already uses"),
        None => "an administrator created".into(),
    }
}

/// Do two topic roots share topics (equal, or one a level-prefix of the other)?
fn roots_overlap(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short
        || long
            .strip_prefix(short)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::roots_overlap;

    #[test]
    fn topic_roots_overlap_at_level_boundaries_only() {
        let cases = [
            ("services/a", "services/a", true),
            ("services/a", "services/a/b", true),
            ("services/a/b", "services/a", true),
            ("services/a", "services/ab", false),
            ("services/a", "services/b", false),
            ("plant/line1", "plant/line10", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(roots_overlap(a, b), expected, "{a} vs {b}");
        }
    }
}
