//! The brokers under test, each started as its own process on a free port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ironbridge,
    Mosquitto,
    Rumqttd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ironbridge => "Ironbridge",
            Kind::Mosquitto => "Mosquitto",
            Kind::Rumqttd => "rumqttd",
        }
    }
}

pub struct RunningBroker {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("broker did not open port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Where `cargo install rumqttd` puts the binary for the harness.
pub fn rumqttd_path(tools: &Path) -> PathBuf {
    tools.join("bin").join("rumqttd")
}

/// Installs rumqttd from crates.io into `tools` if it is not there yet.
pub fn ensure_rumqttd(tools: &Path) -> anyhow::Result<PathBuf> {
    let path = rumqttd_path(tools);
    if !path.exists() {
        eprintln!(
            "installing rumqttd into {} (one-off, several minutes)",
            tools.display()
        );
        let status = Command::new("cargo")
            .args(["install", "rumqttd", "--version", "0.20.0", "--root"])
            .arg(tools)
            .status()
            .context("running cargo install rumqttd")?;
        if !status.success() {
            bail!("cargo install rumqttd failed");
        }
    }
    Ok(path)
}

impl RunningBroker {
    /// Starts a broker; with `login`, one that admits only the benchmark user (see
    /// [`RunningBroker::start_authenticated`]).
    pub fn start(
        kind: Kind,
        ironbridge: &Path,
        rumqttd: &Path,
        login: bool,
    ) -> anyhow::Result<RunningBroker> {
        match login {
            true => RunningBroker::start_authenticated(
                kind,
                ironbridge,
                crate::load::BENCH_USER,
                crate::load::BENCH_PASSWORD,
            ),
            false => RunningBroker::start_with(kind, ironbridge, rumqttd, None),
        }
    }

    /// Starts a broker that admits only `user` with `password` (Ironbridge: its first admin;
    /// Mosquitto: a password file made by `mosquitto_passwd`). rumqttd is not supported.
    pub fn start_authenticated(
        kind: Kind,
        ironbridge: &Path,
        user: &str,
        password: &str,
    ) -> anyhow::Result<RunningBroker> {
        anyhow::ensure!(
            kind != Kind::Rumqttd,
            "rumqttd is not part of the authentication benchmark"
        );
        RunningBroker::start_with(kind, ironbridge, Path::new(""), Some((user, password)))
    }

    fn start_with(
        kind: Kind,
        ironbridge: &Path,
        rumqttd: &Path,
        login: Option<(&str, &str)>,
    ) -> anyhow::Result<RunningBroker> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut command = match kind {
            Kind::Ironbridge => {
                let mut c = Command::new(ironbridge);
                c.arg("run")
                    .env("IRONBRIDGE_DATA_DIR", dir.path())
                    .env("IRONBRIDGE_MQTT_PORT", port.to_string())
                    .env("IRONBRIDGE_HTTP_PORT", free_port()?.to_string())
                    .env("IRONBRIDGE_LOG_LEVEL", "warn")
                    // Compared with Mosquitto and rumqttd, which run with anonymous access too.
                    .env(
                        "IRONBRIDGE_BROKER_ALLOW_ANONYMOUS",
                        if login.is_some() { "false" } else { "true" },
                    );
                if let Some((_, password)) = login {
                    c.env("IRONBRIDGE_ADMIN_PASSWORD", password);
                }
                c
            }
            Kind::Mosquitto => {
                let conf = dir.path().join("mosquitto.conf");
                let mut text = format!(
                    "listener {port} 127.0.0.1\nmax_connections -1\nmax_inflight_messages 1024\nmax_queued_messages 10000\npersistence false\nlog_dest none\n"
                );
                match login {
                    None => text.push_str("allow_anonymous true\n"),
                    Some((user, password)) => {
                        let file = dir.path().join("passwords");
                        let status = Command::new("mosquitto_passwd")
                            .arg("-b")
                            .arg("-c")
                            .arg(&file)
                            .args([user, password])
                            .status()
                            .context("running mosquitto_passwd")?;
                        anyhow::ensure!(status.success(), "mosquitto_passwd failed");
                        text.push_str(&format!(
                            "allow_anonymous false\npassword_file {}\n",
                            file.display()
                        ));
                    }
                }
                std::fs::write(&conf, text)?;
                let mut c = Command::new("mosquitto");
                c.arg("-c").arg(conf);
                c
            }
            Kind::Rumqttd => {
                let conf = dir.path().join("rumqttd.toml");
                std::fs::write(&conf, rumqttd_config(port))?;
                let mut c = Command::new(rumqttd);
                c.arg("-q").arg("-c").arg(conf);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        wait_for_port(port)?;
        Ok(RunningBroker {
            port,
            child,
            _dir: dir,
        })
    }

    /// Resident memory of the broker process in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.child.id())
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rumqttd_config(port: u16) -> String {
    format!(
        r#"id = 0

[router]
id = 0
max_connections = 11000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
"#
    )
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS not found")?;
    Ok(kb * 1024)
}
