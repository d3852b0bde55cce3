//! What the end-to-end benchmarks share: the real `ironbridge` binary in its own process (so its
//! CPU and memory are its own), raw MQTT subscribers that count what arrives and how late, a
//! commissioning file installed over the REST API, and the numbers taken over the run.
//!
//! Each device under test publishes, besides its values, a clock endpoint under `<x>/clock/...`
//! whose value is the device's wall clock in µs when the value changed: the subscriber's receive
//! time minus it is the device-change-to-subscriber latency.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use broker::codec::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::brokers::free_port;
use crate::load;

const PASSWORD: &str = "bench-password-1234";

/// What one end-to-end run measured.
pub struct Measurement {
    pub values_per_second: f64,
    pub cores: f64,
    pub rss_bytes: u64,
    /// Subscriber receive time minus the payload's timestamp, ms.
    pub added_ms: (f64, f64),
    /// Subscriber receive time minus the device clock value, ms.
    pub change_ms: (f64, f64),
}

impl Measurement {
    pub fn print_table(&self) {
        println!(
            "| values/s delivered | gateway CPU (cores) | gateway RSS | timestamp to subscriber p50 / p99 | device change to subscriber p50 / p99 |"
        );
        println!("|---:|---:|---:|---:|---:|");
        println!(
            "| {:.0} | {:.2} | {:.1} MiB | {:.0} / {:.0} ms | {:.1} / {:.1} ms |",
            self.values_per_second,
            self.cores,
            self.rss_bytes as f64 / 1048576.0,
            self.added_ms.0,
            self.added_ms.1,
            self.change_ms.0,
            self.change_ms.1
        );
    }
}

/// Starts the gateway, installs `file` as service `bench`, measures for `seconds` after a 2 s
/// warm-up, and stops the gateway.
pub async fn run_gateway(
    ironbridge: &Path,
    file: String,
    endpoints: usize,
    subscribers_rt: &tokio::runtime::Runtime,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    let gateway = GatewayProcess::start(ironbridge)?;
    measure(
        &gateway.child,
        gateway.mqtt,
        gateway.http,
        file,
        endpoints,
        subscribers_rt,
        seconds,
    )
    .await
}

/// The `ironbridge` binary on free ports with a fresh data folder, anonymous MQTT on for the raw
/// subscribers, large API bodies allowed; stopped with SIGTERM when dropped.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub mqtt: u16,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    pub fn start(ironbridge: &Path) -> anyhow::Result<GatewayProcess> {
        let dir = tempfile::tempdir()?;
        let (mqtt, http) = (free_port()?, free_port()?);
        let child = std::process::Command::new(ironbridge)
            .arg("run")
            .env("IRONBRIDGE_DATA_DIR", dir.path())
            .env("IRONBRIDGE_MQTT_PORT", mqtt.to_string())
            .env("IRONBRIDGE_HTTP_PORT", http.to_string())
            .env("IRONBRIDGE_ADMIN_PASSWORD", PASSWORD)
            .env("IRONBRIDGE_BROKER_ALLOW_ANONYMOUS", "true")
            .env(
                "IRONBRIDGE_ADMIN_MAX_BODY_BYTES",
                (16 * 1024 * 1024).to_string(),
            )
            .env("IRONBRIDGE_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting ironbridge")?;
        Ok(GatewayProcess {
            child,
            mqtt,
            http,
            _dir: dir,
        })
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn measure(
    child: &std::process::Child,
    mqtt: u16,
    http: u16,
    file: String,
    endpoints: usize,
    subscribers_rt: &tokio::runtime::Runtime,
    seconds: u64,
) -> anyhow::Result<Measurement> {
    crate::brokers::wait_for_port(http)?;
    let http_addr: SocketAddr = ([127, 0, 0, 1], http).into();
    let mqtt_addr: SocketAddr = ([127, 0, 0, 1], mqtt).into();

    // Subscribers first, so the first values are counted.
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let added = Arc::new(Mutex::new(Vec::<i64>::new()));
    let change = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = CancellationToken::new();
    let added_sink = added.clone();
    subscribers_rt.spawn(load::subscriber(
        load::Subscriber {
            addr: mqtt_addr,
            id: "bench-values".into(),
            topic: "services/bench/+/+".into(),
            qos: QoS::AtMostOnce,
            received: received.clone(),
            ready: ready.clone(),
            on_message: Some(Arc::new(move |payload: &[u8]| {
                if let Some(ts) = timestamp(payload) {
                    let late = now_micros() / 1000 - ts;
                    if let Ok(mut samples) = added_sink.lock() {
                        samples.push(late);
                    }
                }
            })),
        },
        stop.clone(),
    ));
    let change_sink = change.clone();
    subscribers_rt.spawn(load::subscriber(
        load::Subscriber {
            addr: mqtt_addr,
            id: "bench-clock".into(),
            topic: "services/bench/+/clock/#".into(),
            qos: QoS::AtMostOnce,
            received: Arc::new(AtomicU64::new(0)),
            ready: ready.clone(),
            on_message: Some(Arc::new(move |payload: &[u8]| {
                if let Some(device_micros) = value(payload) {
                    if let Ok(mut samples) = change_sink.lock() {
                        samples.push(now_micros() - device_micros);
                    }
                }
            })),
        },
        stop.clone(),
    ));
    while ready.load(Ordering::Relaxed) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let token = login(http_addr).await?;
    let body = serde_json::json!({"commissioningFile": file}).to_string();
    let installed = Instant::now();
    let (status, response) =
        request(http_addr, "POST", "/api/services", Some(&token), &body).await?;
    anyhow::ensure!(
        status == 201,
        "install failed ({status}): {}",
        &response[..response.len().min(500)]
    );
    eprintln!(
        "   installed {} endpoints in {:.1} s",
        endpoints,
        installed.elapsed().as_secs_f64()
    );

    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    added
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    change
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let (cpu_before, at_before) = (cpu_ticks(child.id())?, Instant::now());
    let count_before = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = received.load(Ordering::Relaxed) - count_before;
    let elapsed = at_before.elapsed().as_secs_f64();
    let cores = (cpu_ticks(child.id())? - cpu_before) as f64 / ticks_per_second() / elapsed;
    let rss = crate::brokers::rss_of(child.id())?;
    stop.cancel();

    let pick = |samples: &Arc<Mutex<Vec<i64>>>, q: f64| -> f64 {
        let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
        s.sort_unstable();
        if s.is_empty() {
            f64::NAN
        } else {
            s[((s.len() - 1) as f64 * q) as usize] as f64
        }
    };
    Ok(Measurement {
        values_per_second: count as f64 / elapsed,
        cores,
        rss_bytes: rss,
        added_ms: (pick(&added, 0.5), pick(&added, 0.99)),
        change_ms: (pick(&change, 0.5) / 1000.0, pick(&change, 0.99) / 1000.0),
    })
}

fn timestamp(payload: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("timestamp")?
        .as_i64()
}

fn value(payload: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("value")?
        .as_i64()
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": "admin", "password": PASSWORD}).to_string();
    let (status, response) = request(addr, "POST", "/api/login", None, &body).await?;
    anyhow::ensure!(status == 200, "login failed ({status}): {response}");
    let json: serde_json::Value = serde_json::from_str(&response)?;
    json["token"]
        .as_str()
        .map(str::to_string)
        .context("no token in the login answer")
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields
        .get(11)
        .and_then(|v| v.parse().ok())
        .context("utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|v| v.parse().ok())
        .context("stime")?;
    Ok(utime + stime)
}

pub fn ticks_per_second() -> f64 {
    100.0 // CLK_TCK on Linux
}
