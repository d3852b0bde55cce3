//! Services: installed commissioning files, their lifecycle and their dependencies. Operations
//! are serialised by one lock, so two requests never enable the same service at once; the
//! current states are published separately so status reads never wait.
//!
//! Accounts (`Cybus::User`, `Cybus::Role`, the service's own broker user and default role) are
//! created here; connections, endpoints and mappings are handed to the [`ResourceRuntime`] the
//! gateway supplies.

pub mod runtime;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use commissioning::model::{AccessContext, AccessOperation, Permission, ResourceKind};
use commissioning::{Environment, OtherServices, Service};
use serde_json::{Map, Value as Json};
use tracing::{info, warn};

mod grants;

pub use runtime::{AgentWork, ResourceRuntime, ResourceState, ResourceStatus};
use state::transition;
pub use state::{Operation, ServiceState, TargetState, Transition};

use crate::auth::password;
use crate::error::{AdminError, AdminResult};
use crate::store::ServiceRecord;
use crate::{Admin, now_secs};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One installed service as the manager keeps it.
#[derive(Debug, Clone)]
pub struct Installed {
    pub record: ServiceRecord,
    pub service: Service,
    pub state: ServiceState,
    pub last_error: Option<String>,
}

impl Installed {
    /// Every secret this service holds: its broker user's password, secret parameters and
    /// secret properties (literal or substituted).
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.service.secret_values();
        secrets.push(self.record.mqtt_password.clone());
        secrets
    }

    /// `text` as it may be shown to a person: the service's secrets masked.
    pub fn masked(&self, text: &str) -> String {
        commissioning::secrets::mask(text, &self.secrets()).into_owned()
    }
}

/// A resource's state as the status route reports it.
#[derive(Debug, Clone)]
pub struct ResourceReport {
    pub id: String,
    pub kind: &'static str,
    pub state: ResourceState,
    pub in_target_state: bool,
    pub message: Option<String>,
    pub metrics: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub id: String,
    pub state: ServiceState,
    pub deviated: bool,
    pub deviations: Vec<String>,
    pub last_error: Option<String>,
    pub resources: Vec<ResourceReport>,
}

/// On whose authority a service is installed or reconfigured. A service's `Cybus::User` and
/// `Cybus::Role` resources grant permissions; nobody may grant what they do not hold themselves
/// (Kubernetes RBAC's escalation rule), so the grants are checked against the caller's.
#[derive(Debug, Clone)]
pub enum Authority {
    /// The gateway itself: restoring stored services, the demo.
    System,
    /// An API caller with these effective permissions.
    Caller(Vec<Permission>),
}

/// What install and reconfigure receive.
pub struct ServiceInput {
    pub id: Option<String>,
    pub commissioning_file: String,
    pub parameters: Map<String, Json>,
    pub target_state: Option<TargetState>,
}

/// The installed services as `!ref other::resource` sees them.
/// A reconfiguration worked out and checked, not yet applied.
struct Reconfiguration {
    old: Installed,
    file: String,
    parameters: Map<String, Json>,
    new_service: Service,
    changed: Vec<String>,
}

struct InstalledServices<'a>(&'a BTreeMap<String, Installed>);

impl OtherServices for InstalledServices<'_> {
    fn resource_type(&self, service: &str, resource: &str) -> Option<String> {
        let installed = self.0.get(service)?;
        installed
            .service
            .resources
            .get(resource)
            .map(|r| r.kind.type_name().to_string())
    }
}

impl Admin {
    /// Resolves a file for service `id` (derived from the file's name when `None`) against the
    /// other installed services; the one place the `Cybus::Mqtt*` pseudo parameters are
    /// filled in.
    fn resolve(
        &self,
        services: &BTreeMap<String, Installed>,
        file: &str,
        id: Option<&str>,
        parameters: &Map<String, Json>,
        mqtt_password: &str,
    ) -> Result<Service, Vec<commissioning::Diagnostic>> {
        let others = InstalledServices(services);
        let env = Environment {
            mqtt_host: self.config.mqtt_host.clone(),
            mqtt_port: self.config.mqtt_port,
            mqtt_password: mqtt_password.to_string(),
            other_services: Some(&others),
        };
        commissioning::load_file(file, id, parameters, &env)
    }

    /// Validates without installing: every diagnostic, errors and warnings; the file is valid
    /// when none is an error.
    pub async fn validate_service(&self, input: &ServiceInput) -> Vec<commissioning::Diagnostic> {
        let services = self.services.lock().await;
        match self.resolve(
            &services,
            &input.commissioning_file,
            input.id.as_deref(),
            &input.parameters,
            "",
        ) {
            Ok(service) => service.warnings,
            Err(diagnostics) => diagnostics,
        }
    }

    pub async fn install_service(
        &self,
        input: ServiceInput,
        authority: &Authority,
    ) -> AdminResult<Installed> {
        let mut services = self.services.lock().await;
        let mqtt_password = password::generate();
        let service = self
            .resolve(
                &services,
                &input.commissioning_file,
                input.id.as_deref(),
                &input.parameters,
                &mqtt_password,
            )
            .map_err(AdminError::InvalidFile)?;
        let id = service.id.clone();
        if services.contains_key(&id) {
            return Err(AdminError::Conflict(format!(
                "service {id:?} is already installed; use PUT /api/services/{id} to reconfigure it"
            )));
        }
        for warning in &service.warnings {
            warn!(service = %id, "{warning}");
        }
        self.check_service_grants(&service, &services, authority)?;
        self.check_account_names(&service).await?;
        let target = input.target_state.unwrap_or(TargetState::Enabled);
        let now = now_secs();
        let record = ServiceRecord {
            id: id.clone(),
            commissioning_file: input.commissioning_file,
            parameters: input.parameters,
            target_state: target,
            mqtt_password,
            installed_at: now,
            updated_at: now,
        };
        self.store.save_service(&record).await?;
        let mut installed = Installed {
            record,
            service,
            state: ServiceState::Disabled,
            last_error: None,
        };
        info!(service = %id, "Service installed");
        if target == TargetState::Enabled {
            self.enable(&mut installed, &services).await;
        }
        self.publish_state(&installed);
        services.insert(id, installed.clone());
        Ok(installed)
    }

    /// Every installed service's state as last published: read without waiting for a running
    /// operation (health must answer while a large service installs).
    pub fn service_states(&self) -> Vec<(String, ServiceState)> {
        let states = self
            .service_states
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut states: Vec<(String, ServiceState)> = states
            .iter()
            .map(|(id, state)| (id.clone(), *state))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    pub async fn services_list(&self) -> Vec<Installed> {
        self.services.lock().await.values().cloned().collect()
    }

    pub async fn service(&self, id: &str) -> AdminResult<Installed> {
        self.services
            .lock()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Enables or disables; `Ok(false)` when it already was in that state.
    pub async fn operate(&self, id: &str, operation: Operation) -> AdminResult<(bool, Installed)> {
        let mut services = self.services.lock().await;
        let mut installed = services.get(id).cloned().ok_or_else(|| not_found(id))?;
        if transition(installed.state, operation) == Transition::Unchanged {
            return Ok((false, installed));
        }
        match operation {
            Operation::Enable => {
                installed.record.target_state = TargetState::Enabled;
                self.store.save_service(&installed.record).await?;
                self.enable(&mut installed, &services).await;
            }
            Operation::Disable => {
                installed.record.target_state = TargetState::Disabled;
                self.store.save_service(&installed.record).await?;
                self.disable(&mut installed).await;
            }
        }
        self.publish_state(&installed);
        services.insert(id.to_string(), installed.clone());
        if let (Operation::Enable, Some(error)) = (operation, &installed.last_error)
            && installed.state == ServiceState::Failed
        {
            return Err(AdminError::Conflict(format!(
                "enabling {id:?} failed and was rolled back: {error}"
            )));
        }
        Ok((true, installed))
    }

    /// Applies a new file and/or parameters; only resources whose resolved properties changed
    /// are restarted. Returns the ids of the resources that were (re)started or removed.
    pub async fn reconfigure_service(
        &self,
        id: &str,
        file: Option<String>,
        parameters: Option<Map<String, Json>>,
        authority: &Authority,
    ) -> AdminResult<(Installed, Vec<String>)> {
        let mut services = self.services.lock().await;
        let plan = self
            .plan_reconfigure(&services, id, file, parameters, authority)
            .await?;
        let Reconfiguration {
            old,
            file,
            parameters,
            new_service,
            changed,
        } = plan;
        let mut installed = old.clone();
        installed.record.commissioning_file = file;
        installed.record.parameters = parameters;
        installed.record.updated_at = now_secs();
        self.store.save_service(&installed.record).await?;
        if old.state == ServiceState::Enabled {
            let changed_set: BTreeSet<&String> = changed.iter().collect();
            for rid in old
                .service
                .start_order
                .iter()
                .rev()
                .filter(|r| changed_set.contains(r))
            {
                self.stop_resource(&old.service, rid).await;
            }
            installed.service = new_service;
            if let Err(e) = self.sync_default_role(&installed).await {
                warn!(service = %id, error = %e, "Cannot update the service's default role");
            }
            let mut started = Vec::new();
            let order = installed.service.start_order.clone();
            for rid in order.iter().filter(|r| changed_set.contains(r)) {
                match self.start_resource(&installed, rid).await {
                    Ok(()) => started.push(rid.clone()),
                    Err(e) => {
                        warn!(service = %id, resource = %rid, error = %e, "Reconfigured resource failed to start");
                        installed.state = ServiceState::Failed;
                        installed.last_error = Some(installed.masked(&format!("{rid}: {e}")));
                        break;
                    }
                }
            }
        } else {
            installed.service = new_service;
        }
        info!(service = %id, changed = ?changed, "Service reconfigured");
        self.publish_state(&installed);
        services.insert(id.to_string(), installed.clone());
        Ok((installed, changed))
    }

    /// What a reconfiguration would do, without doing it: the file and parameters it would
    /// keep, and the resources it would restart or remove. Refused for the same reasons as the
    /// reconfiguration itself.
    pub async fn preview_reconfigure(
        &self,
        id: &str,
        file: Option<String>,
        parameters: Option<Map<String, Json>>,
        authority: &Authority,
    ) -> AdminResult<(Installed, Vec<String>)> {
        let services = self.services.lock().await;
        let plan = self
            .plan_reconfigure(&services, id, file, parameters, authority)
            .await?;
        Ok((plan.old, plan.changed))
    }

    async fn plan_reconfigure(
        &self,
        services: &BTreeMap<String, Installed>,
        id: &str,
        file: Option<String>,
        parameters: Option<Map<String, Json>>,
        authority: &Authority,
    ) -> AdminResult<Reconfiguration> {
        let old = services.get(id).cloned().ok_or_else(|| not_found(id))?;
        let file = unmask_file(&old, file)?;
        let parameters = unmask_parameters(&old, parameters);
        let new_service = self
            .resolve(
                services,
                &file,
                Some(id),
                &parameters,
                &old.record.mqtt_password,
            )
            .map_err(AdminError::InvalidFile)?;
        self.check_service_grants(&new_service, services, authority)?;
        self.check_account_names(&new_service).await?;
        // Another service must not lose a resource it references.
        for other in services
            .values()
            .filter(|s| s.service.depends_on.contains(id))
        {
            for target in references_into(&other.service, id) {
                if !new_service.resources.contains_key(&target) {
                    return Err(AdminError::Conflict(format!(
                        "service {:?} references {id}::{target}, which the new file removes",
                        other.service.id
                    )));
                }
            }
        }
        let changed = changed_resources(&old.service, &new_service);
        Ok(Reconfiguration {
            old,
            file,
            parameters,
            new_service,
            changed,
        })
    }

    pub async fn delete_service(&self, id: &str) -> AdminResult<()> {
        let mut services = self.services.lock().await;
        let mut installed = services.get(id).cloned().ok_or_else(|| not_found(id))?;
        let dependents: Vec<&str> = services
            .values()
            .filter(|s| s.service.depends_on.contains(id))
            .map(|s| s.service.id.as_str())
            .collect();
        if !dependents.is_empty() {
            return Err(AdminError::Conflict(format!(
                "service {id:?} is referenced by {}; delete or reconfigure those first",
                dependents.join(", ")
            )));
        }
        if installed.state != ServiceState::Disabled {
            self.disable(&mut installed).await;
        }
        self.store.delete_service(id).await?;
        services.remove(id);
        self.service_states
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.runtime.service_removed(id);
        info!(service = %id, "Service deleted");
        Ok(())
    }

    /// Services this one references, and services that reference it.
    pub async fn dependencies(&self, id: &str) -> AdminResult<(Vec<String>, Vec<String>)> {
        let services = self.services.lock().await;
        let installed = services.get(id).ok_or_else(|| not_found(id))?;
        let depends_on = installed.service.depends_on.iter().cloned().collect();
        let depended_on_by = services
            .values()
            .filter(|s| s.service.depends_on.contains(id))
            .map(|s| s.service.id.clone())
            .collect();
        Ok((depends_on, depended_on_by))
    }

    pub async fn status(&self, id: &str) -> AdminResult<StatusReport> {
        let installed = self.service(id).await?;
        Ok(self.report(&installed))
    }

    pub fn report(&self, installed: &Installed) -> StatusReport {
        let enabled = installed.state == ServiceState::Enabled;
        // Gathered once: a service of 10,000 resources would otherwise walk all of them for the
        // message of each.
        let secrets = installed.secrets();
        let resources: Vec<ResourceReport> = installed
            .service
            .start_order
            .iter()
            .filter_map(|rid| installed.service.resources.get(rid))
            .map(|resource| {
                let kind = resource.kind.type_name();
                let (state, in_target_state, message, metrics) = match (&resource.kind, enabled) {
                    (ResourceKind::User(_) | ResourceKind::Role(_), true) => {
                        (ResourceState::Created, true, None, None)
                    }
                    (_, false) => (ResourceState::Stopped, true, None, None),
                    (_, true) => {
                        let status = self.runtime.status(&installed.service.id, &resource.id);
                        (
                            status.state,
                            status.in_target_state,
                            status
                                .message
                                .map(|m| commissioning::secrets::mask(&m, &secrets).into_owned()),
                            status.metrics,
                        )
                    }
                };
                ResourceReport {
                    id: resource.id.clone(),
                    kind,
                    state,
                    in_target_state,
                    message,
                    metrics,
                }
            })
            .collect();
        let deviations: Vec<String> = resources
            .iter()
            .filter(|r| !r.in_target_state)
            .map(|r| r.id.clone())
            .collect();
        StatusReport {
            id: installed.service.id.clone(),
            state: installed.state,
            deviated: enabled && !deviations.is_empty(),
            deviations,
            last_error: installed
                .last_error
                .as_deref()
                .map(|error| commissioning::secrets::mask(error, &secrets).into_owned()),
            resources,
        }
    }

    /// Brings back every service from the store; those enabled before are enabled again, each
    /// after the services it depends on.
    pub async fn restore_services(&self) -> AdminResult<()> {
        let mut services = self.services.lock().await;
        let records = self.store.services().await?;
        let mut pending: Vec<ServiceRecord> = records;
        // Resolve in rounds: a service resolves once everything it references is loaded.
        while !pending.is_empty() {
            let before = pending.len();
            let mut next = Vec::new();
            for record in pending {
                let loaded = self.resolve(
                    &services,
                    &record.commissioning_file,
                    Some(&record.id),
                    &record.parameters,
                    &record.mqtt_password,
                );
                match loaded {
                    Ok(service) => {
                        let mut installed = Installed {
                            record,
                            service,
                            state: ServiceState::Disabled,
                            last_error: None,
                        };
                        if installed.record.target_state == TargetState::Enabled {
                            self.enable(&mut installed, &services).await;
                        }
                        self.publish_state(&installed);
                        services.insert(installed.service.id.clone(), installed);
                    }
                    Err(diagnostics) => next.push((record, diagnostics)),
                }
            }
            if next.len() == before {
                for (record, diagnostics) in next {
                    let error = diagnostics
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    warn!(service = %record.id, error = %error, "Stored service no longer validates; it stays failed until reconfigured");
                    let service = Service {
                        id: record.id.clone(),
                        warnings: Vec::new(),
                        description: None,
                        metadata: commissioning::service::Metadata {
                            name: record.id.clone(),
                            version: None,
                            icon: None,
                            provider: None,
                            homepage: None,
                        },
                        mqtt_root: format!("services/{}", record.id),
                        parameters: BTreeMap::new(),
                        secret_parameters: BTreeSet::new(),
                        resources: BTreeMap::new(),
                        start_order: Vec::new(),
                        depends_on: BTreeSet::new(),
                    };
                    let installed = Installed {
                        record,
                        service,
                        state: ServiceState::Failed,
                        last_error: Some(error),
                    };
                    self.publish_state(&installed);
                    services.insert(installed.service.id.clone(), installed);
                }
                break;
            }
            pending = next.into_iter().map(|(r, _)| r).collect();
        }
        Ok(())
    }

    /// Starts everything in dependency order; on the first failure stops what was started, in
    /// reverse, and leaves the service `failed` with the reason.
    async fn enable(&self, installed: &mut Installed, services: &BTreeMap<String, Installed>) {
        let id = installed.service.id.clone();
        self.set_state(installed, ServiceState::Enabling);
        let result = async {
            for dependency in &installed.service.depends_on {
                match services.get(dependency).map(|s| s.state) {
                    Some(ServiceState::Enabled) => {}
                    _ => {
                        return Err((
                            Vec::new(),
                            format!("it depends on service {dependency:?}, which is not enabled"),
                        ));
                    }
                }
            }
            self.create_service_accounts(installed)
                .await
                .map_err(|e| (Vec::new(), e.to_string()))?;
            let mut started = Vec::new();
            for rid in runtime_resources(&installed.service) {
                if let Err(e) = self.start_resource(installed, &rid).await {
                    return Err((started, format!("{rid}: {e}")));
                }
                started.push(rid);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                installed.last_error = None;
                self.set_state(installed, ServiceState::Enabled);
                info!(service = %id, "Service enabled");
            }
            Err((started, error)) => {
                let error = installed.masked(&error);
                warn!(service = %id, error = %error, "Enabling failed; rolling back");
                for rid in started.iter().rev() {
                    self.stop_resource(&installed.service, rid).await;
                }
                self.remove_service_accounts(&installed.service).await;
                installed.last_error = Some(error);
                self.set_state(installed, ServiceState::Failed);
            }
        }
    }

    async fn disable(&self, installed: &mut Installed) {
        self.set_state(installed, ServiceState::Disabling);
        for rid in runtime_resources(&installed.service).iter().rev() {
            self.stop_resource(&installed.service, rid).await;
        }
        self.remove_service_accounts(&installed.service).await;
        installed.last_error = None;
        self.set_state(installed, ServiceState::Disabled);
        info!(service = %installed.service.id, "Service disabled");
    }

    async fn start_resource(&self, installed: &Installed, rid: &str) -> AdminResult<()> {
        let service = &installed.service;
        let Some(resource) = service.resources.get(rid) else {
            return Ok(());
        };
        match &resource.kind {
            ResourceKind::Role(_) if rid == "defaultRole" => {
                self.sync_default_role(installed).await
            }
            ResourceKind::Role(role) => self
                .create_role(
                    &format!("{}.{rid}", service.id),
                    role.permissions.clone(),
                    Some(service.id.clone()),
                )
                .await
                .map(|_| ()),
            ResourceKind::User(user) => {
                let roles = user
                    .roles
                    .iter()
                    .map(|r| format!("{}.{}", r.service, r.resource))
                    .collect();
                self.create_user(
                    &format!("{}.{rid}", service.id),
                    &user.password,
                    roles,
                    user.permissions.clone(),
                    Some(service.id.clone()),
                )
                .await
                .map(|_| ())
            }
            _ => self
                .runtime
                .start(service, resource)
                .await
                .map_err(AdminError::Conflict),
        }
    }

    async fn stop_resource(&self, service: &Service, rid: &str) {
        let Some(resource) = service.resources.get(rid) else {
            return;
        };
        let result = match &resource.kind {
            ResourceKind::Role(_) if rid == "defaultRole" => Ok(()),
            ResourceKind::Role(_) => {
                self.delete_owned_role(&format!("{}.{rid}", service.id), &service.id)
                    .await
            }
            ResourceKind::User(_) => {
                self.delete_owned_user(&format!("{}.{rid}", service.id), &service.id)
                    .await
            }
            _ => {
                self.runtime.stop(&service.id, rid).await;
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(service = %service.id, resource = %rid, error = %e, "Cannot remove resource");
        }
    }

    /// Every account of the service in one batch, with one directory reload at the end (a file
    /// with thousands of roles costs linear time): its default role (readWrite on the service
    /// root, plus a `defaultRole` resource's grants), its `Cybus::Role`s, its broker user (named
    /// after the service, password `Cybus::MqttPassword`) and its `Cybus::User`s.
    async fn create_service_accounts(&self, installed: &Installed) -> AdminResult<()> {
        let service = &installed.service;
        // Accounts are stored, so after a restart (or a crash while enabling) they may still be
        // there; enabling starts from a clean slate.
        self.store.delete_owned_accounts(&service.id).await?;
        let owner = Some(service.id.clone());
        let mut roles = BTreeSet::new();
        let default_role = default_role_name(&service.id);
        self.insert_role(&default_role, default_permissions(service), owner.clone())
            .await?;
        roles.insert(default_role.clone());
        for resource in service.resources.values() {
            if let ResourceKind::Role(role) = &resource.kind
                && resource.id != "defaultRole"
            {
                let name = format!("{}.{}", service.id, resource.id);
                self.insert_role(&name, role.permissions.clone(), owner.clone())
                    .await?;
                roles.insert(name);
            }
        }
        self.insert_user(
            &service.id,
            &installed.record.mqtt_password,
            vec![default_role],
            Vec::new(),
            owner.clone(),
            &roles,
        )
        .await?;
        for resource in service.resources.values() {
            if let ResourceKind::User(user) = &resource.kind {
                let user_roles = user
                    .roles
                    .iter()
                    .map(|r| format!("{}.{}", r.service, r.resource))
                    .collect();
                self.insert_user(
                    &format!("{}.{}", service.id, resource.id),
                    &user.password,
                    user_roles,
                    user.permissions.clone(),
                    owner.clone(),
                    &roles,
                )
                .await?;
            }
        }
        self.reload().await
    }

    async fn sync_default_role(&self, installed: &Installed) -> AdminResult<()> {
        let role = crate::store::RoleRecord {
            name: default_role_name(&installed.service.id),
            permissions: default_permissions(&installed.service),
            service_id: Some(installed.service.id.clone()),
            created_at: now_secs(),
        };
        self.store.update_role(&role).await?;
        self.reload().await
    }

    /// Removes every account the service created (none that anybody else created), with one
    /// directory reload.
    async fn remove_service_accounts(&self, service: &Service) {
        if let Err(e) = self.store.delete_owned_accounts(&service.id).await {
            warn!(service = %service.id, error = %e, "Cannot remove the service's accounts");
        }
        if let Err(e) = self.reload().await {
            warn!(service = %service.id, error = %e, "Cannot reload users and roles");
        }
    }

    /// Removes a user the service created; one of the same name that somebody else created
    /// stays untouched.
    async fn delete_owned_user(&self, name: &str, service_id: &str) -> AdminResult<()> {
        self.store.delete_user_owned_by(name, service_id).await?;
        self.reload().await
    }

    async fn delete_owned_role(&self, name: &str, service_id: &str) -> AdminResult<()> {
        self.store.delete_role_owned_by(name, service_id).await?;
        self.reload().await
    }

    fn set_state(&self, installed: &mut Installed, state: ServiceState) {
        installed.state = state;
        self.publish_state(installed);
    }

    fn publish_state(&self, installed: &Installed) {
        self.service_states
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(installed.service.id.clone(), installed.state);
        self.runtime.service_state(
            &installed.service.id,
            installed.state,
            installed.last_error.as_deref(),
        );
        self.place_on_agents(installed);
    }

    /// Hands the agents of an enabled service their work, and takes it back from the others.
    fn place_on_agents(&self, installed: &Installed) {
        let agents = match installed.state {
            ServiceState::Enabled => installed.service.agents(),
            _ => BTreeSet::new(),
        };
        self.placements.place(&installed.service.id, &agents);
        let work = AgentWork {
            service: installed.service.id.clone(),
            commissioning_file: installed.record.commissioning_file.clone(),
            parameters: installed.record.parameters.clone(),
            mqtt_host: self.config.mqtt_host.clone(),
            mqtt_port: self.config.mqtt_port,
            mqtt_password: installed.record.mqtt_password.clone(),
        };
        self.runtime
            .assign_agents(&installed.service.id, &agents, &work);
    }

    /// Shuts every running resource down (gateway shutdown); the desired states stay stored.
    pub async fn stop_all_services(&self) {
        let services = self.services.lock().await;
        for installed in services
            .values()
            .filter(|s| s.state == ServiceState::Enabled)
        {
            for rid in installed.service.start_order.iter().rev() {
                if let Some(resource) = installed.service.resources.get(rid)
                    && !matches!(resource.kind, ResourceKind::User(_) | ResourceKind::Role(_))
                {
                    self.runtime.stop(&installed.service.id, rid).await;
                }
            }
        }
    }
}

/// The file for a reconfigure: a new one, or the stored one when none was given or when what
/// came back is the stored file as the API showed it (secrets masked). A file with masked
/// secrets in other places cannot be restored and is refused.
fn unmask_file(old: &Installed, file: Option<String>) -> AdminResult<String> {
    let stored = &old.record.commissioning_file;
    match file {
        None => Ok(stored.clone()),
        Some(file) if file == old.masked(stored) => Ok(stored.clone()),
        Some(file) if file.contains(commissioning::secrets::MASK) => {
            Err(AdminError::Invalid(format!(
                "the file contains {} where the API masked a secret, and differs from the stored file elsewhere too; put the secret values back (or use parameters for them)",
                commissioning::secrets::MASK
            )))
        }
        Some(file) => Ok(file),
    }
}

/// Parameters for a reconfigure: a secret that comes back masked keeps its stored value.
fn unmask_parameters(old: &Installed, parameters: Option<Map<String, Json>>) -> Map<String, Json> {
    let stored = &old.record.parameters;
    let Some(mut parameters) = parameters else {
        return stored.clone();
    };
    for (name, value) in parameters.iter_mut() {
        if value.as_str() == Some(commissioning::secrets::MASK)
            && let Some(previous) = stored.get(name)
        {
            *value = previous.clone();
        }
    }
    parameters
}

fn not_found(id: &str) -> AdminError {
    AdminError::NotFound(format!("no service with id {id:?}"))
}

fn default_role_name(service_id: &str) -> String {
    format!("{service_id}.defaultRole")
}

fn default_permissions(service: &Service) -> Vec<Permission> {
    let mut permissions = vec![Permission {
        resource: format!("{}/#", service.mqtt_root),
        operation: AccessOperation::ReadWrite,
        context: AccessContext::Mqtt,
    }];
    if let Some(resource) = service.resources.get("defaultRole")
        && let ResourceKind::Role(role) = &resource.kind
    {
        permissions.extend(role.permissions.iter().cloned());
    }
    permissions
}

/// The resources that run on the gateway's runtime (connections, endpoints, mappings), in start
/// order; accounts are created and removed as a batch.
fn runtime_resources(service: &Service) -> Vec<String> {
    service
        .start_order
        .iter()
        .filter(|rid| {
            service
                .resources
                .get(*rid)
                .is_some_and(|r| !matches!(r.kind, ResourceKind::User(_) | ResourceKind::Role(_)))
        })
        .cloned()
        .collect()
}

/// Resources to restart on reconfigure: those added, removed or with different resolved
/// properties, plus everything that references one of them (an endpoint runs on its connection,
/// so a new connection means a new endpoint task too).
fn changed_resources(old: &Service, new: &Service) -> Vec<String> {
    let mut changed: BTreeSet<String> = old
        .resources
        .keys()
        .chain(new.resources.keys())
        .filter(|rid| old.resources.get(*rid) != new.resources.get(*rid))
        .cloned()
        .collect();
    loop {
        let dependents: Vec<String> = new
            .resources
            .values()
            .chain(old.resources.values())
            .filter(|r| {
                !changed.contains(&r.id) && r.depends_on.iter().any(|d| changed.contains(d))
            })
            .map(|r| r.id.clone())
            .collect();
        if dependents.is_empty() {
            return changed.into_iter().collect();
        }
        changed.extend(dependents);
    }
}

/// Resource ids of `target` that `service` references.
fn references_into(service: &Service, target: &str) -> BTreeSet<String> {
    fn walk(value: &Json, target: &str, out: &mut BTreeSet<String>) {
        match value {
            Json::Object(map) => {
                if let Some(Json::String(r)) = map.get(commissioning::resolve::REF_KEY)
                    && let Some((service, resource)) = r.split_once("::")
                    && service == target
                {
                    out.insert(resource.to_string());
                }
                map.values().for_each(|v| walk(v, target, out));
            }
            Json::Array(items) => items.iter().for_each(|v| walk(v, target, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for resource in service.resources.values() {
        walk(&resource.properties, target, &mut out);
    }
    out
}
