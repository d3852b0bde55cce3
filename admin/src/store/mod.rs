//! Persistence: users, roles, installed services and revoked tokens, in SQLite (default) or
//! PostgreSQL through sqlx's Any driver. The only module that runs SQL.
//!
//! Placeholders are `$1, $2, ...`, which both databases accept, and the schema uses only TEXT and
//! BIGINT (see the migration), so one set of queries and migrations serves both.

use crate::services::TargetState;
use std::path::Path;
use std::time::Duration;

use commissioning::model::Permission;
use serde_json::{Map, Value as Json};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} is unreadable: {error}")]
    Corrupt {
        what: String,
        error: serde_json::Error,
    },
    #[error("stored {what} is {value:?}, which this version does not know")]
    Unknown { what: String, value: String },
    #[error("cannot create the database folder {path}: {error}")]
    Folder { path: String, error: std::io::Error },
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    /// Immutable and never reused (see the 0002 migration); tokens and MQTT sessions belong to it.
    pub uid: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub permissions: Vec<Permission>,
    /// The service that created this user (its broker user or a `Cybus::User`); such users
    /// disappear with the service and cannot be edited through the API.
    pub service_id: Option<String>,
    /// Raised on password change; tokens carrying an older generation are no longer accepted.
    pub token_generation: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleRecord {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub service_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    pub id: String,
    pub commissioning_file: String,
    pub parameters: Map<String, Json>,
    /// `enabled` or `disabled`: what the administrator asked for, restored after a restart.
    pub target_state: TargetState,
    pub mqtt_password: String,
    pub installed_at: i64,
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects (creating an SQLite file and its folder if needed) and runs the embedded
    /// migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        if is_sqlite && let Some(parent) = sqlite_path(url).and_then(Path::parent) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Folder {
                path: parent.display().to_string(),
                error,
            })?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // Users

    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, uid, password_hash, roles, permissions, service_id, token_generation, created_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, uid, password_hash, roles, permissions, service_id, token_generation, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Inserts a user; false when the name is taken.
    pub async fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (name, password_hash, roles, permissions, service_id, token_generation, created_at, uid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(to_json(&user.roles))
        .bind(to_json(&user.permissions))
        .bind(user.service_id.clone())
        .bind(user.token_generation)
        .bind(user.created_at)
        .bind(&user.uid)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn update_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE users SET password_hash = $2, roles = $3, permissions = $4, token_generation = $5 WHERE name = $1",
        )
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(to_json(&user.roles))
        .bind(to_json(&user.permissions))
        .bind(user.token_generation)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes a user only if `service_id` created it: a service never removes an account an
    /// administrator (or another service) made under a colliding name.
    pub async fn delete_user_owned_by(
        &self,
        name: &str,
        service_id: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM users WHERE name = $1 AND service_id = $2")
            .bind(name)
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives an id to users stored before ids existed (see the 0002 migration).
    pub async fn assign_missing_user_ids(
        &self,
        new_id: impl Fn() -> String,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT name FROM users WHERE uid = ''")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let name: String = row.try_get("name")?;
            sqlx::query("UPDATE users SET uid = $2 WHERE name = $1 AND uid = ''")
                .bind(name)
                .bind(new_id())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    // Roles

    pub async fn roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, permissions, service_id, created_at FROM roles ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(role_from_row).collect()
    }

    pub async fn insert_role(&self, role: &RoleRecord) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO roles (name, permissions, service_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&role.name)
        .bind(to_json(&role.permissions))
        .bind(role.service_id.clone())
        .bind(role.created_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn update_role(&self, role: &RoleRecord) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE roles SET permissions = $2 WHERE name = $1")
            .bind(&role.name)
            .bind(to_json(&role.permissions))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn delete_role(&self, name: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes a role only if `service_id` created it (see [`Store::delete_user_owned_by`]).
    pub async fn delete_role_owned_by(
        &self,
        name: &str,
        service_id: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM roles WHERE name = $1 AND service_id = $2")
            .bind(name)
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes every user and role a service created.
    pub async fn delete_owned_accounts(&self, service_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM users WHERE service_id = $1")
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM roles WHERE service_id = $1")
            .bind(service_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // Services

    pub async fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, commissioning_file, parameters, target_state, mqtt_password, installed_at, updated_at FROM services ORDER BY installed_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    /// Inserts or replaces a service record.
    pub async fn save_service(&self, service: &ServiceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO services (id, commissioning_file, parameters, target_state, mqtt_password, installed_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET commissioning_file = excluded.commissioning_file, parameters = excluded.parameters, \
             target_state = excluded.target_state, mqtt_password = excluded.mqtt_password, updated_at = excluded.updated_at",
        )
        .bind(&service.id)
        .bind(&service.commissioning_file)
        .bind(Json::Object(service.parameters.clone()).to_string())
        .bind(service.target_state.as_str())
        .bind(&service.mqtt_password)
        .bind(service.installed_at)
        .bind(service.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // Revoked tokens

    pub async fn revoke_token(&self, token_id: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO revoked_tokens (token_id, expires_at) VALUES ($1, $2) ON CONFLICT (token_id) DO NOTHING")
            .bind(token_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revoked tokens that have not expired yet; expired ones are deleted on the way.
    pub async fn revoked_tokens(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT token_id, expires_at FROM revoked_tokens")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("token_id")?, row.try_get("expires_at")?)))
            .collect()
    }
}

fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data (strings, enums) to JSON cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        what: what.to_string(),
        error,
    })
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let name: String = row.try_get("name")?;
    Ok(UserRecord {
        roles: from_json(
            &format!("roles of user {name}"),
            &row.try_get::<String, _>("roles")?,
        )?,
        permissions: from_json(
            &format!("permissions of user {name}"),
            &row.try_get::<String, _>("permissions")?,
        )?,
        uid: row.try_get("uid")?,
        password_hash: row.try_get("password_hash")?,
        service_id: row.try_get("service_id")?,
        token_generation: row.try_get("token_generation")?,
        created_at: row.try_get("created_at")?,
        name,
    })
}

fn role_from_row(row: &AnyRow) -> Result<RoleRecord, StoreError> {
    let name: String = row.try_get("name")?;
    Ok(RoleRecord {
        permissions: from_json(
            &format!("permissions of role {name}"),
            &row.try_get::<String, _>("permissions")?,
        )?,
        service_id: row.try_get("service_id")?,
        created_at: row.try_get("created_at")?,
        name,
    })
}

fn service_from_row(row: &AnyRow) -> Result<ServiceRecord, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(ServiceRecord {
        commissioning_file: row.try_get("commissioning_file")?,
        parameters: from_json(
            &format!("parameters of service {id}"),
            &row.try_get::<String, _>("parameters")?,
        )?,
        target_state: {
            let stored: String = row.try_get("target_state")?;
            TargetState::parse(&stored).ok_or_else(|| StoreError::Unknown {
                what: format!("target state of service {id}"),
                value: stored,
            })?
        },
        mqtt_password: row.try_get("mqtt_password")?,
        installed_at: row.try_get("installed_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}
