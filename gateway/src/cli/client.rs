//! The REST client behind `ironbridge service ...` and `ironbridge user ...`: where the gateway
//! is, how to log in, and what a failed request means, in the words an operator needs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// Exit codes scripts can rely on.
pub mod exit {
    /// Done: nothing needed changing (`ok`) or the change was made (`changed`).
    pub const SUCCESS: u8 = 0;
    /// The gateway refused the request (invalid file, conflict, not found, ...).
    pub const REFUSED: u8 = 1;
    /// Wrong usage: a missing credential, a malformed argument, an unreadable file.
    pub const USAGE: u8 = 2;
    /// The gateway could not be reached or answered something that is not its API.
    pub const UNREACHABLE: u8 = 3;
    /// `service status`: the service is not in its target state or deviates from it.
    pub const NOT_HEALTHY: u8 = 4;
}

/// How to reach and authenticate to a running gateway; from flags and the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Base URL of the gateway's HTTP API.
    #[arg(
        long,
        global = true,
        env = "IRONBRIDGE_URL",
        default_value = "http://localhost:8080"
    )]
    pub url: String,
    /// User to log in as when no token is given; the password comes from IRONBRIDGE_PASSWORD.
    #[arg(
        long,
        global = true,
        env = "IRONBRIDGE_USERNAME",
        default_value = "admin"
    )]
    pub username: String,
    /// PEM file of the CA that signed the gateway's HTTPS certificate (default: system roots).
    #[arg(long, global = true, env = "IRONBRIDGE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::UNREACHABLE,
            message: message.into(),
        }
    }

    pub fn report(self) -> ExitCode {
        eprintln!("ironbridge: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// A request the API answered with an error: its status and `error` body.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Option<Value>,
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Failure {
        let mut message = format!("{} ({})", refusal.message, refusal.status);
        if let Some(diagnostics) = refusal
            .details
            .as_ref()
            .and_then(|d| d["diagnostics"].as_array())
        {
            for diagnostic in diagnostics {
                message.push_str("\n  ");
                message.push_str(&describe_diagnostic(diagnostic));
            }
        }
        let code = match refusal.status {
            // A token that expired or was revoked; a 403 is a refusal like any other.
            StatusCode::UNAUTHORIZED => exit::USAGE,
            _ => exit::REFUSED,
        };
        Failure { code, message }
    }
}

/// `path: message (line L, column C)`, as `ironbridge validate` prints them.
fn describe_diagnostic(diagnostic: &Value) -> String {
    let path = diagnostic["path"].as_str().unwrap_or_default();
    let message = diagnostic["message"].as_str().unwrap_or_default();
    let position = match (diagnostic["line"].as_u64(), diagnostic["column"].as_u64()) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        _ => String::new(),
    };
    match path.is_empty() {
        true => format!("{message}{position}"),
        false => format!("{path}: {message}{position}"),
    }
}

/// What one request came back with.
pub enum Answer {
    Ok(Value),
    Refused(Refusal),
}

/// A logged-in session with the gateway's REST API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Without credentials, for the open routes (`/api/system/health`).
    pub fn anonymous(target: &Target) -> Result<Client, Failure> {
        Ok(Client {
            http: http_client(target)?,
            base: target.url.trim_end_matches('/').to_string(),
            token: String::new(),
        })
    }

    /// Uses IRONBRIDGE_TOKEN when set; otherwise logs in with the username and
    /// IRONBRIDGE_PASSWORD.
    pub async fn connect(target: &Target) -> Result<Client, Failure> {
        let http = http_client(target)?;
        let base = target.url.trim_end_matches('/').to_string();
        if let Some(token) = env_value("IRONBRIDGE_TOKEN") {
            return Ok(Client { http, base, token });
        }
        let Some(password) = env_value("IRONBRIDGE_PASSWORD") else {
            return Err(Failure::usage(
                "no credentials: set IRONBRIDGE_TOKEN, or IRONBRIDGE_PASSWORD for the user \
                 IRONBRIDGE_USERNAME (default admin)",
            ));
        };
        let mut client = Client {
            http,
            base,
            token: String::new(),
        };
        let login = json!({"username": target.username, "password": password});
        match client
            .request(Method::POST, "/api/login", Some(login))
            .await?
        {
            Answer::Ok(body) => {
                client.token = body["token"]
                    .as_str()
                    .ok_or_else(|| Failure::unreachable("the login answer has no token"))?
                    .to_string();
                Ok(client)
            }
            Answer::Refused(refusal) => Err(Failure {
                code: exit::USAGE,
                message: format!(
                    "cannot log in as {:?}: {} ({})",
                    target.username, refusal.message, refusal.status
                ),
            }),
        }
    }

    /// One request with a JSON body (or none); a JSON answer, an empty one as `null`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            Failure::unreachable(format!(
                "cannot reach the gateway at {}: {}",
                self.base,
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Failure::unreachable(format!("{method} {path}: the answer broke off: {e}"))
        })?;
        let value: Value = match bytes.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&bytes).map_err(|_| {
                Failure::unreachable(format!(
                    "{method} {url} answered {status} with something that is not JSON; \
                     is this an Ironbridge gateway?"
                ))
            })?,
        };
        if status.is_success() {
            return Ok(Answer::Ok(value));
        }
        let error = &value["error"];
        Ok(Answer::Refused(Refusal {
            status,
            code: error["code"].as_str().unwrap_or_default().to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{method} {path} failed")),
            details: error.get("details").cloned(),
        }))
    }

    /// GET that treats 404 as absent.
    pub async fn find(&self, path: &str) -> Result<Option<Value>, Failure> {
        match self.request(Method::GET, path, None).await? {
            Answer::Ok(value) => Ok(Some(value)),
            Answer::Refused(r) if r.status == StatusCode::NOT_FOUND => Ok(None),
            Answer::Refused(r) => Err(r.into()),
        }
    }

    /// A request that must succeed.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        match self.request(method, path, body).await? {
            Answer::Ok(value) => Ok(value),
            Answer::Refused(refusal) => Err(refusal.into()),
        }
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn http_client(target: &Target) -> Result<reqwest::Client, Failure> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    // Always our own TLS settings: reqwest built without a crypto provider has none of its own.
    let https = target.url.starts_with("https://");
    builder = builder.tls_backend_preconfigured(tls_config(target.ca_file.as_ref(), https)?);
    builder
        .build()
        .map_err(|e| Failure::usage(format!("cannot set up the HTTP client: {e}")))
}

/// rustls on ring (as everywhere in Ironbridge) trusting the given CA, else the system's roots.
/// Without `https` (plain HTTP) no roots are loaded: nothing will be verified.
fn tls_config(ca_file: Option<&PathBuf>, https: bool) -> Result<rustls::ClientConfig, Failure> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        _ if !https => {}
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    Failure::usage(format!("{} is not a PEM certificate: {e}", path.display()))
                })?;
            if certificates.is_empty() {
                return Err(Failure::usage(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| {
                    Failure::usage(format!("{}: unusable certificate: {e}", path.display()))
                })?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::usage(format!("TLS set-up: {e}")))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// reqwest's errors say "error sending request"; the cause (refused, TLS) is further down.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
