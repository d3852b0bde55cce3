//! A real `Admin` on a fresh database (SQLite in a temp dir, or a fresh PostgreSQL database when
//! IRONBRIDGE_TEST_DATABASE_URL names a server), driven through the real axum router.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use admin::services::{BoxFuture, ResourceRuntime, ResourceState, ResourceStatus, ServiceState};
use admin::{Admin, AdminConfig};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use commissioning::{Resource, Service};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// Records what the service manager asks of the runtime, the way the gateway's supervisor
/// would run connections, endpoints and mappings.
#[derive(Default)]
pub struct RecordingRuntime {
    pub events: Mutex<Vec<String>>,
    pub running: Mutex<HashMap<(String, String), ()>>,
}

impl RecordingRuntime {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl ResourceRuntime for RecordingRuntime {
    fn start<'a>(
        &'a self,
        service: &'a Service,
        resource: &'a Resource,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.events
                .lock()
                .unwrap()
                .push(format!("start {}::{}", service.id, resource.id));
            self.running
                .lock()
                .unwrap()
                .insert((service.id.clone(), resource.id.clone()), ());
            Ok(())
        })
    }
    fn stop<'a>(&'a self, service_id: &'a str, resource_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.events
                .lock()
                .unwrap()
                .push(format!("stop {service_id}::{resource_id}"));
            self.running
                .lock()
                .unwrap()
                .remove(&(service_id.to_string(), resource_id.to_string()));
        })
    }
    fn status(&self, service_id: &str, resource_id: &str) -> ResourceStatus {
        let running = self
            .running
            .lock()
            .unwrap()
            .contains_key(&(service_id.to_string(), resource_id.to_string()));
        ResourceStatus {
            state: if running {
                ResourceState::Running
            } else {
                ResourceState::Stopped
            },
            in_target_state: running,
            message: None,
            metrics: None,
        }
    }
    fn service_state(&self, _: &str, _: ServiceState, _: Option<&str>) {}

    fn assign_agents(
        &self,
        _: &str,
        _: &std::collections::BTreeSet<String>,
        _: &admin::services::AgentWork,
    ) {
    }
    fn service_removed(&self, _: &str) {}
}

pub struct TestApi {
    pub admin: Arc<Admin>,
    pub router: Router,
    pub runtime: Arc<RecordingRuntime>,
    pub config: AdminConfig,
    _dir: Arc<tempfile::TempDir>,
}

/// A fresh database URL: SQLite by default, a new PostgreSQL database when the environment
/// points at a server (the test script runs the whole suite both ways).
pub async fn fresh_database(dir: &std::path::Path) -> Option<String> {
    let server = std::env::var("IRONBRIDGE_TEST_DATABASE_URL").ok()?;
    sqlx::any::install_default_drivers();
    let name = format!("ib_test_{}", rand_suffix());
    let mut conn = sqlx::AnyConnection::connect(&server).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let _ = dir;
    let base = server.rsplit_once('/').map(|(base, _)| base).unwrap();
    Some(format!("{base}/{name}"))
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{}", std::process::id(), nanos)
}

impl TestApi {
    pub async fn start() -> TestApi {
        TestApi::start_with_body_limit(64 * 1024).await
    }

    /// A fresh API that accepts request bodies up to `max_body_bytes`.
    pub async fn start_with_body_limit(max_body_bytes: usize) -> TestApi {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let config = AdminConfig {
            data_dir: dir.path().to_path_buf(),
            database_url: fresh_database(dir.path()).await,
            admin_password: Some(ADMIN_PASSWORD.into()),
            mqtt_host: "localhost".into(),
            mqtt_port: 1883,
            max_body_bytes,
        };
        TestApi::start_with(config, dir).await
    }

    pub async fn start_with(config: AdminConfig, dir: Arc<tempfile::TempDir>) -> TestApi {
        let runtime = Arc::new(RecordingRuntime::default());
        let admin = Admin::start(config.clone(), runtime.clone()).await.unwrap();
        admin.restore_services().await.unwrap();
        let router = admin_api::router(
            admin.clone(),
            Arc::new(|| vec![admin_api::HealthPart::up("broker", true)]),
        );
        TestApi {
            admin,
            router,
            runtime,
            config,
            _dir: dir,
        }
    }

    /// The same data folder and database, as after a gateway restart.
    pub async fn restart(self) -> TestApi {
        self.admin.shutdown().await;
        let TestApi { config, _dir, .. } = self;
        TestApi::start_with(config, _dir).await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }
}

/// Asserts the API's error shape (`{"error": {"code", "message"}}`) and returns the code.
pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(body["error"]["message"].is_string(), "{body}");
    code
}
