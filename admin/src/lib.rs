//! The administration of Ironbridge, without HTTP: services from commissioning files and their
//! lifecycle (`services`), users, roles and permissions (`accounts`, `access`), tokens and
//! passwords (`auth`), and the broker's authentication hook backed by the same users
//! (`broker_auth`). State lives in SQLite or PostgreSQL (`store`). The REST API (`admin-api`)
//! and the command line only call it.

pub mod access;
pub mod accounts;
pub mod agents;
pub mod auth;
pub mod broker_auth;
pub mod error;
pub mod services;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::access::Directory;
use crate::auth::credential_cache::CredentialCache;
use crate::auth::password;
use crate::auth::throttle::Throttle;
use crate::auth::token::Signer;
pub use crate::error::{AdminError, AdminResult};
use crate::services::{Installed, ResourceRuntime, ServiceState};
use crate::store::Store;

/// The administrator created on first start.
pub const ADMIN_USER: &str = "admin";
/// Where the generated first admin password is written when none was given.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; `None` is `<data_dir>/ironbridge.db`.
    pub database_url: Option<String>,
    /// The first admin's password; generated (and written to the data folder) when absent.
    pub admin_password: Option<String>,
    /// What services see as `Cybus::MqttHost` and `Cybus::MqttPort`.
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// Largest request body the API accepts (413 above).
    pub max_body_bytes: usize,
}

/// Shared by every request handler and the broker hook.
pub struct Admin {
    pub config: AdminConfig,
    store: Store,
    directory: ArcSwap<Directory>,
    /// Signalled after every change of the directory; the broker's connections then check that
    /// their user still exists unchanged.
    directory_changes: tokio::sync::watch::Sender<()>,
    signer: Signer,
    throttle: Throttle,
    credentials: CredentialCache,
    /// Revoked token ids and their expiry, mirrored from the store.
    revoked: Mutex<HashMap<String, i64>>,
    services: tokio::sync::Mutex<BTreeMap<String, Installed>>,
    service_states: RwLock<HashMap<String, ServiceState>>,
    runtime: Arc<dyn ResourceRuntime>,
    /// Which agents run part of which enabled service; the broker asks it on every packet of
    /// an agent.
    placements: agents::Placements,
    started: std::time::Instant,
    /// Verified against when a login names an unknown user, so timing does not tell.
    dummy_hash: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot prepare {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("{0}")]
    Admin(#[from] AdminError),
}

impl Admin {
    /// Opens the database (running migrations), creates the first admin if there is none and
    /// loads users. Services come back with [`Admin::restore_services`], called once whatever
    /// runs their resources (the broker, the supervisor) is up.
    pub async fn start(
        config: AdminConfig,
        runtime: Arc<dyn ResourceRuntime>,
    ) -> Result<Arc<Admin>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| StartError::File {
            path: config.data_dir.display().to_string(),
            error,
        })?;
        let url = config.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                config.data_dir.join("ironbridge.db").display()
            )
        });
        let store = Store::connect(&url).await?;
        store.assign_missing_user_ids(password::new_user_id).await?;
        let key_path = config.data_dir.join("api-token-key");
        let signer = Signer::load_or_create(&key_path).map_err(|error| StartError::File {
            path: key_path.display().to_string(),
            error,
        })?;
        let revoked = store
            .revoked_tokens(now_secs())
            .await?
            .into_iter()
            .collect();
        let admin = Arc::new(Admin {
            config,
            store,
            directory: ArcSwap::from_pointee(Directory::default()),
            directory_changes: tokio::sync::watch::Sender::new(()),
            signer,
            throttle: Throttle::default(),
            credentials: CredentialCache::default(),
            revoked: Mutex::new(revoked),
            services: tokio::sync::Mutex::new(BTreeMap::new()),
            service_states: RwLock::new(HashMap::new()),
            runtime,
            placements: agents::Placements::default(),
            started: std::time::Instant::now(),
            dummy_hash: password::hash(password::generate())
                .await
                .map_err(AdminError::Internal)?,
        });
        admin.reload().await?;
        admin.ensure_first_admin().await?;
        Ok(admin)
    }

    /// Reloads users and roles into the in-memory directory the API and broker read.
    pub(crate) async fn reload(&self) -> AdminResult<()> {
        let users = self.store.users().await?;
        let roles = self.store.roles().await?;
        self.directory
            .store(Arc::new(Directory::build(users, roles)));
        self.directory_changes.send_replace(());
        Ok(())
    }

    async fn ensure_first_admin(&self) -> Result<(), StartError> {
        if !self.store.users().await?.is_empty() {
            return Ok(());
        }
        let (password, generated) = match &self.config.admin_password {
            Some(password) => (password.clone(), false),
            None => (password::generate(), true),
        };
        let hash = password::hash(password.clone())
            .await
            .map_err(AdminError::Internal)?;
        let record = store::UserRecord {
            name: ADMIN_USER.into(),
            uid: password::new_user_id(),
            password_hash: hash,
            roles: vec![access::ADMIN_ROLE.into()],
            permissions: Vec::new(),
            service_id: None,
            token_generation: 0,
            created_at: now_secs(),
        };
        self.store.insert_user(&record).await?;
        self.reload().await?;
        if generated {
            let path = self.config.data_dir.join(INITIAL_PASSWORD_FILE);
            write_private_file(&path, format!("{password}\n").as_bytes()).map_err(|error| {
                StartError::File {
                    path: path.display().to_string(),
                    error,
                }
            })?;
            // Printed once, on first start only, so the operator can log in.
            eprintln!(
                "ironbridge: created user `admin` with password {password} (also in {})",
                path.display()
            );
            info!(file = %path.display(), "Created the first administrator `admin` with a generated password");
        } else {
            info!(
                "Created the first administrator `admin` with the password from IRONBRIDGE_ADMIN_PASSWORD"
            );
        }
        Ok(())
    }

    pub async fn database_ok(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// Signalled after every change of users, roles or permissions.
    pub fn directory_changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.directory_changes.subscribe()
    }

    /// Makes the broker's connections check their credentials again, as after a change of the
    /// directory: for credentials that end without one (a token revoked or expired).
    pub(crate) fn recheck_sessions(&self) {
        self.directory_changes.send_replace(());
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Stops the resources of every service and closes the database.
    pub async fn shutdown(&self) {
        self.stop_all_services().await;
        self.store.close().await;
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes a secret readable by the owner only (0600 on Unix), replacing any previous file.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    if let Err(e) =
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
    {
        warn!(file = %path.display(), error = %e, "Cannot restrict permissions");
    }
    Ok(())
}
