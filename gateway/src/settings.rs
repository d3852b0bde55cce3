//! Gateway settings: embedded defaults, an optional YAML file, then `IRONBRIDGE_*` environment
//! variables, in that order of precedence (last wins).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use broker::BrokerConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the database, the token key, the broker's state and the forwarding queues are kept.
    pub data_dir: PathBuf,
    /// Start even when other users may write to `data_dir` (normally refused).
    pub allow_insecure_data_dir: bool,
    pub log: LogSettings,
    /// MQTT over TCP.
    pub mqtt: Listener,
    /// MQTT over TLS; starts when `tls` is configured.
    pub mqtts: Listener,
    /// HTTP: MQTT over WebSocket at `/mqtt` (and later the admin API).
    pub http: Listener,
    /// HTTPS; starts when `tls` is configured.
    pub https: Listener,
    pub tls: Tls,
    pub broker: BrokerConfig,
    pub database: DatabaseSettings,
    pub admin: AdminSettings,
    pub forwarding: ForwardingSettings,
    pub demo: crate::demo::DemoSettings,
}

/// The store-and-forward queue of each MQTT connection (`<data_dir>/forwarding/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingSettings {
    /// Largest queue per connection in bytes (topics and payloads); beyond it the oldest
    /// messages are dropped and counted.
    pub queue_max_bytes: u64,
    /// Messages older than this many seconds are dropped and counted.
    pub queue_max_age_secs: u64,
    /// `false`: a queued message survives the gateway being killed (kill -9, OOM) but not a
    /// power loss. `true`: every write is fsynced and survives power loss too, at the cost of
    /// one fsync per batch of messages.
    pub fsync: bool,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        let limits = protocol_mapper::mqtt::QueueLimits::default();
        ForwardingSettings {
            queue_max_bytes: limits.max_bytes,
            queue_max_age_secs: limits.max_age.as_secs(),
            fsync: false,
        }
    }
}

impl ForwardingSettings {
    pub fn limits(&self) -> protocol_mapper::mqtt::QueueLimits {
        protocol_mapper::mqtt::QueueLimits {
            max_bytes: self.queue_max_bytes,
            max_age: std::time::Duration::from_secs(self.queue_max_age_secs),
            durability: match self.fsync {
                true => protocol_mapper::mqtt::Durability::Power,
                false => protocol_mapper::mqtt::Durability::Process,
            },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host/db` or `sqlite://path`; unset is SQLite at
    /// `<data_dir>/ironbridge.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Password of the `admin` user created on first start; generated when unset.
    pub password: Option<String>,
    /// Largest API request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Open connections per HTTP(S) listener, MQTT over WebSocket included; beyond it new
    /// connections are closed at once.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, and to start the next request on
    /// a kept-alive connection; slower ones are closed.
    pub header_read_timeout_secs: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            password: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_connections: 4096,
            header_read_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `info,broker=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "any_address")]
    pub bind: IpAddr,
    /// 0 picks a free port; the chosen one is logged.
    pub port: u16,
}

/// `tls: self-signed`, `tls: off`, or `tls: {cert_file, key_file, client_ca_file?}` with PEM
/// files. With `client_ca_file`, MQTT clients may log in with a certificate signed by that CA;
/// its common name is the user name (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tls {
    Mode(TlsMode),
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Off,
    SelfSigned,
}

fn default_true() -> bool {
    true
}

fn any_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

impl Listener {
    fn on(port: u16) -> Listener {
        Listener {
            enabled: true,
            bind: any_address(),
            port,
        }
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./data"),
            allow_insecure_data_dir: false,
            log: LogSettings::default(),
            mqtt: Listener::on(1883),
            mqtts: Listener::on(8883),
            http: Listener::on(8080),
            https: Listener::on(8443),
            tls: Tls::Mode(TlsMode::Off),
            broker: BrokerConfig::default(),
            database: DatabaseSettings::default(),
            admin: AdminSettings::default(),
            forwarding: ForwardingSettings::default(),
            demo: crate::demo::DemoSettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("settings file {path} is invalid: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
    #[error("invalid settings: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Defaults, overlaid by `file` if given, overlaid by the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let base = match file {
            None => Settings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                if text.trim().is_empty() {
                    Settings::default()
                } else {
                    serde_saphyr::from_str(&text).map_err(|e| SettingsError::Parse {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
                }
            }
        };
        let settings = apply_env(base, env)?;
        settings.broker.validate().map_err(SettingsError::Invalid)?;
        Ok(settings)
    }

    /// Whether TLS listeners should start.
    pub fn tls_enabled(&self) -> bool {
        self.tls != Tls::Mode(TlsMode::Off)
    }
}

/// Applies `IRONBRIDGE_<SECTION>_<KEY>` (or `IRONBRIDGE_<KEY>` for top-level keys) overrides.
/// Values are read as JSON scalars when they parse as such (`true`, `1883`), else as strings.
fn apply_env(
    settings: Settings,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, SettingsError> {
    let mut tree =
        serde_json::to_value(&settings).map_err(|e| SettingsError::Invalid(vec![e.to_string()]))?;
    let mut applied = Vec::new();
    for (name, raw) in env {
        let Some(suffix) = name.strip_prefix("IRONBRIDGE_") else {
            continue;
        };
        let key = suffix.to_ascii_lowercase();
        let value = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(|v| !v.is_object() && !v.is_array())
            .unwrap_or_else(|| Value::String(raw.clone()));
        let Some(slot) = find_slot(&mut tree, &key) else {
            tracing::warn!(variable = %name, "Environment variable does not name a setting; ignored");
            continue;
        };
        // Strings that look like numbers stay strings where the setting is a string.
        *slot = match (&*slot, value) {
            (Value::String(_) | Value::Null, Value::Number(n)) => Value::String(n.to_string()),
            (Value::String(_) | Value::Null, Value::Bool(b)) => Value::String(b.to_string()),
            (_, v) => v,
        };
        applied.push((name, raw));
    }
    serde_json::from_value(tree).map_err(|e| {
        let (name, value) = applied.last().cloned().unwrap_or_default();
        SettingsError::Env {
            name,
            value,
            message: e.to_string(),
        }
    })
}

/// The setting a lower-cased variable suffix names: a top-level key (`data_dir`), or a section
/// and a key joined by `_` (`mqtt_port`, `broker_allow_anonymous`).
fn find_slot<'a>(tree: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let Value::Object(root) = tree else {
        return None;
    };
    if root.get(key).is_some_and(|v| !v.is_object()) {
        return root.get_mut(key);
    }
    let (section, rest) = root
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(name, _)| name.clone())
        .find_map(|name| {
            key.strip_prefix(&format!("{name}_"))
                .map(|rest| (name, rest.to_string()))
        })?;
    let Value::Object(fields) = root.get_mut(&section)? else {
        return None;
    };
    fields
        .contains_key(&rest)
        .then(|| fields.get_mut(&rest))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The Helm chart writes its `settings` values (plus the data folder and TLS files) as the
    /// settings file: an unknown key there would stop every pod at start.
    #[test]
    fn the_helm_charts_settings_load() {
        let values = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/ironbridge/values.yaml"),
        )
        .expect("values.yaml");
        let values: serde_json::Value = serde_saphyr::from_str(&values).expect("values parse");
        let mut settings = values["settings"].clone();
        settings["data_dir"] = "/data".into();
        settings["tls"] = serde_json::json!({
            "cert_file": "/tls/tls.crt", "key_file": "/tls/tls.key", "client_ca_file": "/tls/ca.crt"
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ironbridge.yaml");
        std::fs::write(&file, serde_json::to_string(&settings).expect("json")).expect("write");
        let loaded = Settings::load(Some(&file), env(&[])).expect("the chart's settings load");
        assert_eq!(loaded.data_dir, PathBuf::from("/data"));
        assert!(!loaded.broker.allow_anonymous);
    }

    #[test]
    fn embedded_defaults_match_the_spec() {
        let s = Settings::load(None, env(&[])).expect("defaults load");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(
            (s.mqtt.port, s.mqtts.port, s.http.port, s.https.port),
            (1883, 8883, 8080, 8443)
        );
        assert!(!s.tls_enabled());
        assert!(
            !s.broker.allow_anonymous,
            "anonymous MQTT is off by default"
        );
        assert_eq!(s.database.url, None);
    }

    #[test]
    fn environment_overrides_named_in_the_spec() {
        let s = Settings::load(
            None,
            env(&[
                ("IRONBRIDGE_DATA_DIR", "/var/lib/ironbridge"),
                ("IRONBRIDGE_MQTT_PORT", "0"),
                ("IRONBRIDGE_MQTTS_PORT", "18883"),
                ("IRONBRIDGE_HTTP_PORT", "18080"),
                ("IRONBRIDGE_HTTPS_PORT", "18443"),
                ("IRONBRIDGE_BROKER_ALLOW_ANONYMOUS", "true"),
                ("IRONBRIDGE_LOG_FORMAT", "json"),
                ("IRONBRIDGE_BROKER_MAX_PACKET_SIZE", "4096"),
                ("IRONBRIDGE_TLS", "self-signed"),
                ("IRONBRIDGE_ADMIN_PASSWORD", "12345678"),
                ("IRONBRIDGE_DATABASE_URL", "postgres://u:p@db/ironbridge"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .expect("overrides apply");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/ironbridge"));
        assert_eq!(
            (s.mqtt.port, s.mqtts.port, s.http.port, s.https.port),
            (0, 18883, 18080, 18443)
        );
        assert!(s.broker.allow_anonymous);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.broker.max_packet_size, 4096);
        assert_eq!(s.tls, Tls::Mode(TlsMode::SelfSigned));
        assert_eq!(
            s.admin.password.as_deref(),
            Some("12345678"),
            "numeric-looking passwords stay text"
        );
        assert_eq!(
            s.database.url.as_deref(),
            Some("postgres://u:p@db/ironbridge")
        );
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let err =
            Settings::load(None, env(&[("IRONBRIDGE_MQTT_PORT", "18o3")])).expect_err("rejected");
        assert!(err.to_string().contains("IRONBRIDGE_MQTT_PORT"), "{err}");
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "mqtt:\n  port: 2883\nbroker:\n  max_queued_messages: 50\ntls:\n  cert_file: c.pem\n  key_file: k.pem\n").expect("write");
        let s =
            Settings::load(Some(&good), env(&[("IRONBRIDGE_MQTT_PORT", "3883")])).expect("loads");
        assert_eq!(s.mqtt.port, 3883, "environment wins over the file");
        assert_eq!(s.broker.max_queued_messages, 50);
        assert!(s.tls_enabled());

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "mqtt:\n  prot: 2883\n").expect("write");
        let err = Settings::load(Some(&bad), env(&[])).expect_err("unknown key rejected");
        assert!(err.to_string().contains("prot"), "{err}");
    }
}
