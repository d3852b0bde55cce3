//! `ironbridge-bench modbus`: the whole path device -> gateway -> MQTT subscriber under load.
//! In-process Modbus devices (tokio-modbus servers, on their own runtime thread) change their
//! registers; the real `ironbridge` binary (separate process, so its CPU and memory are its own)
//! polls them through a commissioning file installed over the REST API; raw MQTT subscribers
//! count what arrives and how late.
//!
//! Reported: values/s delivered, the gateway's CPU (cores) and resident memory, the gateway's
//! added latency (subscriber receive time minus the payload's timestamp, taken when the read
//! returned; millisecond resolution) and the device-change-to-subscriber latency (dominated by
//! the poll interval).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use broker::codec::QoS;
use protocol_mapper::modbus::simulator::Simulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::brokers::free_port;
use crate::load;

const PASSWORD: &str = "bench-password-1234";
/// Registers 0..250 are the measured values; 250..254 hold the device clock (µs, uint64BE).
const CLOCK: u16 = 250;

pub struct Options {
    pub devices: usize,
    pub registers: u16,
    pub interval_ms: u64,
    pub seconds: u64,
}

pub async fn run(
    ironbridge: &Path,
    devices_rt: &tokio::runtime::Runtime,
    subscribers_rt: &tokio::runtime::Runtime,
    options: Options,
) -> anyhow::Result<()> {
    // Devices whose registers change every 10 ms, clock included.
    let stop = CancellationToken::new();
    let mut addrs = Vec::new();
    let mut simulators = Vec::new();
    for _ in 0..options.devices {
        let simulator = devices_rt
            .spawn(async { Simulator::start("127.0.0.1:0".parse().expect("address"), 260).await })
            .await??;
        addrs.push(simulator.addr);
        let bank = simulator.shared_bank();
        let stop = stop.clone();
        devices_rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n: u16 = 0;
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                n = n.wrapping_add(1);
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                let mut bank = bank.lock().unwrap_or_else(|e| e.into_inner());
                for r in bank.holding[..usize::from(CLOCK)].iter_mut() {
                    *r = n;
                }
                for (i, word) in micros.to_be_bytes().chunks(2).enumerate() {
                    bank.holding[usize::from(CLOCK) + i] = u16::from_be_bytes([word[0], word[1]]);
                }
            }
        });
        simulators.push(simulator);
    }

    // The gateway, anonymous MQTT on for the raw subscribers.
    let dir = tempfile::tempdir()?;
    let (mqtt, http) = (free_port()?, free_port()?);
    let mut child = std::process::Command::new(ironbridge)
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
    let result = measure(&child, mqtt, http, &addrs, subscribers_rt, &options).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    stop.cancel();
    for simulator in simulators {
        devices_rt.spawn(simulator.stop()).await?;
    }
    result
}

async fn measure(
    child: &std::process::Child,
    mqtt: u16,
    http: u16,
    addrs: &[SocketAddr],
    subscribers_rt: &tokio::runtime::Runtime,
    options: &Options,
) -> anyhow::Result<()> {
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
    let file = commissioning_file(addrs, options);
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
        addrs.len() * (usize::from(options.registers) + 1),
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
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
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
    let values = count as f64 / elapsed;
    let expected =
        (addrs.len() * usize::from(options.registers)) as f64 * 1000.0 / options.interval_ms as f64;
    println!(
        "Modbus end to end: {} devices x {} registers polled every {} ms with batching (expected {:.0} values/s), {} s measured after 2 s warm-up.\n",
        addrs.len(),
        options.registers,
        options.interval_ms,
        expected,
        options.seconds
    );
    println!(
        "| values/s delivered | gateway CPU (cores) | gateway RSS | added latency p50 / p99 | device change to subscriber p50 / p99 |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {values:.0} | {cores:.2} | {:.1} MiB | {:.0} / {:.0} ms | {:.1} / {:.1} ms |",
        rss as f64 / 1048576.0,
        pick(&added, 0.5),
        pick(&added, 0.99),
        pick(&change, 0.5) / 1000.0,
        pick(&change, 0.99) / 1000.0
    );
    Ok(())
}

fn commissioning_file(addrs: &[SocketAddr], options: &Options) -> String {
    let mut yaml = String::from("metadata: {name: bench}\nresources:\n");
    for (d, addr) in addrs.iter().enumerate() {
        let _ = write!(
            yaml,
            "  plc{d}:\n    type: Cybus::Connection\n    properties:\n      protocol: Modbus\n      connection: {{host: 127.0.0.1, port: {}, batchReadEnabled: true, socketTimeout: 2000}}\n",
            addr.port()
        );
        let _ = write!(
            yaml,
            "  clock{d}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Modbus\n      connection: !ref plc{d}\n      topic: plc{d}/clock/us\n      subscribe: {{fc: 3, address: {CLOCK}, length: 4, dataType: uint64BE, interval: {}}}\n",
            options.interval_ms
        );
        for r in 0..options.registers {
            let _ = write!(
                yaml,
                "  r{d}x{r}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Modbus\n      connection: !ref plc{d}\n      topic: plc{d}/r{r}\n      subscribe: {{fc: 3, address: {r}, dataType: uint16BE, interval: {}}}\n",
                options.interval_ms
            );
        }
    }
    yaml
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

async fn login(addr: SocketAddr) -> anyhow::Result<String> {
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
async fn request(
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

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
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

fn ticks_per_second() -> f64 {
    100.0 // CLK_TCK on Linux
}
