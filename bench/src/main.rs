//! `ironbridge-bench broker`: Ironbridge's broker, Mosquitto and rumqttd side by side, driven by
//! the same load generator in one run. Prints a Markdown table for BENCHMARKS.md.
//!
//! Run it with `scripts/bench-broker.sh`, which builds in release mode and raises the open-file
//! limit for the 10,000-connection memory measurement.

mod auth;
mod brokers;
mod endtoend;
mod forward;
mod install;
mod load;
mod modbus;
mod opcua;
mod opcua_server;
mod rules;
mod s7;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::codec::QoS;
use brokers::{Kind, RunningBroker};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "ironbridge-bench", about = "Benchmarks for Ironbridge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the broker with Mosquitto and rumqttd.
    Broker {
        /// Seconds measured per throughput scenario (after one second of warm-up).
        #[arg(long, default_value_t = 4)]
        seconds: u64,
        /// Rate for the latency measurement, in messages per second.
        #[arg(long, default_value_t = 5000)]
        latency_rate: u64,
        /// Idle connections for the memory measurement.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Where rumqttd is installed (cargo install --root).
        #[arg(long, default_value = "target/bench-tools")]
        tools: PathBuf,
        /// Only these brokers (ironbridge, mosquitto, rumqttd).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Every client logs in as a user instead of connecting anonymously (Ironbridge: its
        /// admin, whose permissions are checked on every publish and delivery; Mosquitto: a
        /// password file). rumqttd is left out.
        #[arg(long)]
        login: bool,
    },
    /// Installing a file with many `Cybus::Role` resources through the API, and health's
    /// answer time meanwhile.
    Install {
        /// File sizes, in roles.
        #[arg(long, value_delimiter = ',', default_values_t = [300, 1200, 3000])]
        roles: Vec<usize>,
    },
    /// Device to subscriber through the gateway: Modbus devices polled with batching.
    Modbus {
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Registers per device, one endpoint each.
        #[arg(long, default_value_t = 250)]
        registers: u16,
        /// Poll interval in milliseconds.
        #[arg(long, default_value_t = 100)]
        interval: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// CPU to subscriber through the gateway: S7 CPUs polled, each poll packed into few requests.
    S7 {
        #[arg(long, default_value_t = 5)]
        cpus: usize,
        /// REAL variables per CPU, one endpoint each.
        #[arg(long, default_value_t = 1000)]
        variables: usize,
        /// Poll interval in milliseconds.
        #[arg(long, default_value_t = 100)]
        interval: u64,
        /// PDU size the CPUs offer (240 for S7-300/1200, 480 for S7-400, 960 for S7-1500).
        #[arg(long, default_value_t = 480)]
        pdu: u16,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// MQTT publisher to OPC UA client through the gateway's own OPC UA server.
    OpcuaServer {
        /// Variables, each fed from MQTT once a second.
        #[arg(long, default_value_t = 10_000)]
        variables: usize,
        /// The client subscription's publishing interval, in milliseconds.
        #[arg(long, default_value_t = 100)]
        publish: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Device to subscriber through the gateway: one OPC UA server, many monitored items.
    Opcua {
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        /// How often the server changes every value, in milliseconds.
        #[arg(long, default_value_t = 200)]
        change: u64,
        /// Publishing interval of the subscription, in milliseconds.
        #[arg(long, default_value_t = 100)]
        publish: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Messages per second through a mapping on one core, against the broker alone.
    Rules {
        /// Messages per scenario for the throughput measurement.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Rate for the latency measurement, in messages per second.
        #[arg(long, default_value_t = 5_000)]
        latency_rate: u64,
        #[arg(long, default_value_t = 4)]
        latency_seconds: u64,
    },
    /// QoS 1 forwarding to Mosquitto through the store-and-forward queue, against a client
    /// publishing straight to Mosquitto.
    Forward {
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
    },
    /// Password-authenticated connects per second, against Mosquitto with a password file.
    Auth {
        /// Clients that connect in total.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Clients connecting at the same time.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
    },
}

struct Scenario {
    name: &'static str,
    publishers: usize,
    subscribers: usize,
    qos: QoS,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "QoS 0, 1 -> 1",
        publishers: 1,
        subscribers: 1,
        qos: QoS::AtMostOnce,
    },
    Scenario {
        name: "QoS 0, 50 -> 1 (fan-in)",
        publishers: 50,
        subscribers: 1,
        qos: QoS::AtMostOnce,
    },
    Scenario {
        name: "QoS 0, 1 -> 50 (fan-out)",
        publishers: 1,
        subscribers: 50,
        qos: QoS::AtMostOnce,
    },
    Scenario {
        name: "QoS 1, 1 -> 1",
        publishers: 1,
        subscribers: 1,
        qos: QoS::AtLeastOnce,
    },
    Scenario {
        name: "QoS 1, 50 -> 1 (fan-in)",
        publishers: 50,
        subscribers: 1,
        qos: QoS::AtLeastOnce,
    },
    Scenario {
        name: "QoS 1, 1 -> 50 (fan-out)",
        publishers: 1,
        subscribers: 50,
        qos: QoS::AtLeastOnce,
    },
];

#[derive(Default, Clone)]
struct Results {
    throughput: Vec<f64>,
    latency: Vec<(f64, f64)>,
    idle_bytes_per_connection: Option<f64>,
    idle_bytes_per_further_connection: Option<f64>,
    idle_connected: usize,
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    let clients = Clients::new()?;
    // The runtimes are dropped here, outside any async context, whatever the outcome.
    let orchestrator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    orchestrator.block_on(run(&clients, command))
}

async fn run(clients: &Clients, command: Command) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(65_536);
    let ironbridge = std::env::current_exe()?.with_file_name("ironbridge");
    // `rules` and `forward` run in-process; every other benchmark drives the binary.
    let in_process = matches!(command, Command::Rules { .. } | Command::Forward { .. });
    anyhow::ensure!(
        in_process || ironbridge.exists(),
        "{} not found: build it with cargo build --release -p gateway",
        ironbridge.display()
    );
    let (seconds, latency_rate, idle, tools, only, login) = match command {
        Command::Forward { messages } => {
            return forward::run(forward::Options { messages }).await;
        }
        Command::Install { roles } => {
            return install::run(&ironbridge, install::Options { roles }).await;
        }
        Command::Modbus {
            devices,
            registers,
            interval,
            seconds,
        } => {
            let options = modbus::Options {
                devices,
                registers,
                interval_ms: interval,
                seconds,
            };
            return modbus::run(
                &ironbridge,
                &clients.publishers,
                &clients.subscribers,
                options,
            )
            .await;
        }
        Command::S7 {
            cpus,
            variables,
            interval,
            pdu,
            seconds,
        } => {
            let options = s7::Options {
                cpus,
                variables,
                interval_ms: interval,
                pdu_size: pdu,
                seconds,
            };
            return s7::run(
                &ironbridge,
                &clients.publishers,
                &clients.subscribers,
                options,
            )
            .await;
        }
        Command::OpcuaServer {
            variables,
            publish,
            seconds,
        } => {
            let options = opcua_server::Options {
                variables,
                publish_ms: publish,
                seconds,
            };
            return opcua_server::run(&ironbridge, options).await;
        }
        Command::Opcua {
            items,
            change,
            publish,
            seconds,
        } => {
            let options = opcua::Options {
                items,
                change_ms: change,
                publish_ms: publish,
                seconds,
            };
            return opcua::run(
                &ironbridge,
                &clients.publishers,
                &clients.subscribers,
                options,
            )
            .await;
        }
        Command::Auth {
            connections,
            concurrency,
        } => {
            return clients
                .publishers
                .spawn(async move { auth::run(&ironbridge, connections, concurrency).await })
                .await?;
        }
        Command::Rules {
            messages,
            latency_rate,
            latency_seconds,
        } => {
            return rules::run(rules::Options {
                messages,
                latency_rate,
                latency_seconds,
            });
        }
        Command::Broker {
            seconds,
            latency_rate,
            idle,
            tools,
            only,
            login,
        } => (seconds, latency_rate, idle, tools, only, login),
    };
    if login {
        load::log_in_as(load::BENCH_USER, load::BENCH_PASSWORD);
    }
    let kinds: Vec<Kind> = [Kind::Ironbridge, Kind::Mosquitto, Kind::Rumqttd]
        .into_iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(k.name())))
        .filter(|k| !(login && *k == Kind::Rumqttd))
        .collect();
    let rumqttd = match kinds.contains(&Kind::Rumqttd) {
        true => brokers::ensure_rumqttd(&tools)?,
        false => PathBuf::new(),
    };

    let mut all = Vec::new();
    for kind in &kinds {
        eprintln!("== {}", kind.name());
        let mut results = Results::default();

        // Memory first, on a fresh process, so freed buffers of earlier runs do not hide growth.
        let broker = RunningBroker::start(*kind, &ironbridge, &rumqttd, login)?;
        let addr: SocketAddr = ([127, 0, 0, 1], broker.port).into();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = broker.rss()?;
        let stop = CancellationToken::new();
        let connected = clients
            .subscribers
            .spawn(load::idle_connections(addr, 0, idle, stop.clone()))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = broker.rss()?;
        // Half as many again: what each further connection costs, without the fixed costs
        // the first ones carried (the memory of up to 256 concurrent handshakes, which the
        // allocator keeps for reuse, and the first growth of the broker's tables).
        let more = clients
            .subscribers
            .spawn(load::idle_connections(addr, idle, idle / 2, stop.clone()))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after_more = broker.rss()?;
        stop.cancel();
        results.idle_connected = connected;
        if connected > 0 {
            results.idle_bytes_per_connection =
                Some(after.saturating_sub(before) as f64 / connected as f64);
        }
        if more > 0 {
            results.idle_bytes_per_further_connection =
                Some(after_more.saturating_sub(after) as f64 / more as f64);
        }
        eprintln!(
            "   {connected} idle connections: {:.1} MiB -> {:.1} MiB; {more} more: {:.1} MiB",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            after_more as f64 / 1048576.0
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        broker.stop();

        let broker = RunningBroker::start(*kind, &ironbridge, &rumqttd, login)?;
        let addr: SocketAddr = ([127, 0, 0, 1], broker.port).into();
        for (i, s) in SCENARIOS.iter().enumerate() {
            let rate = throughput(
                clients,
                addr,
                s,
                &format!("bench/{i}"),
                Duration::from_secs(seconds),
            )
            .await?;
            eprintln!("   {:<28} {:>12.0} msg/s", s.name, rate);
            results.throughput.push(rate);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let (p50, p99) = latency(
                clients,
                addr,
                qos,
                latency_rate,
                Duration::from_secs(seconds),
            )
            .await?;
            eprintln!(
                "   latency QoS {}: p50 {p50:.0} us, p99 {p99:.0} us",
                qos as u8
            );
            results.latency.push((p50, p99));
        }
        broker.stop();
        all.push((*kind, results));
    }
    print_table(&all, seconds, latency_rate, idle);
    Ok(())
}

/// Publishers and subscribers run on separate single-threaded runtimes, like clients on separate
/// machines: busy publishers cannot starve the subscribers whose receive rate is measured.
struct Clients {
    publishers: tokio::runtime::Runtime,
    subscribers: tokio::runtime::Runtime,
}

impl Clients {
    fn new() -> anyhow::Result<Clients> {
        let build = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(name)
                .enable_all()
                .build()
        };
        Ok(Clients {
            publishers: build("bench-publishers")?,
            subscribers: build("bench-subscribers")?,
        })
    }
}

async fn throughput(
    clients: &Clients,
    addr: SocketAddr,
    s: &Scenario,
    topic: &str,
    measure: Duration,
) -> anyhow::Result<f64> {
    let stop = CancellationToken::new();
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    for i in 0..s.subscribers {
        let spec = load::Subscriber {
            addr,
            id: format!("sub-{i}"),
            topic: topic.to_string(),
            qos: s.qos,
            received: received.clone(),
            ready: ready.clone(),
            on_message: None,
        };
        clients
            .subscribers
            .spawn(load::subscriber(spec, stop.clone()));
    }
    wait_ready(&ready, s.subscribers).await?;
    let mut publishers = Vec::new();
    for i in 0..s.publishers {
        publishers.push(clients.publishers.spawn(load::publisher(
            addr,
            format!("pub-{i}"),
            topic.to_string(),
            s.qos,
            load::Pace::Flat,
            epoch,
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = (received.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(measure).await;
    let end = (received.load(Ordering::Relaxed), Instant::now());
    stop.cancel();
    for p in publishers {
        let _ = p.await;
    }
    Ok((end.0 - start.0) as f64 / (end.1 - start.1).as_secs_f64())
}

async fn wait_ready(ready: &AtomicU64, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while (ready.load(Ordering::Relaxed) as usize) < n {
        anyhow::ensure!(Instant::now() < deadline, "subscribers did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let SUBACKs settle into each broker's routing state.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// p50 and p99 in microseconds, one publisher and one subscriber at a fixed rate.
async fn latency(
    clients: &Clients,
    addr: SocketAddr,
    qos: QoS,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
    let stop = CancellationToken::new();
    let epoch = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(
        (rate * duration.as_secs()) as usize,
    )));
    let record = {
        let samples = samples.clone();
        Arc::new(move |payload: &[u8]| {
            let Some(sent) = payload.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return;
            };
            let now = epoch.elapsed().as_nanos() as u64;
            if let Ok(mut s) = samples.lock() {
                s.push(now.saturating_sub(u64::from_le_bytes(sent)));
            }
        }) as load::OnMessage
    };
    let ready = Arc::new(AtomicU64::new(0));
    let topic = format!("bench/latency/{}", qos as u8);
    let spec = load::Subscriber {
        addr,
        id: "lat-sub".into(),
        topic: topic.clone(),
        qos,
        received: Arc::new(AtomicU64::new(0)),
        ready: ready.clone(),
        on_message: Some(record),
    };
    clients
        .subscribers
        .spawn(load::subscriber(spec, stop.clone()));
    wait_ready(&ready, 1).await?;
    let publisher = clients.publishers.spawn(load::publisher(
        addr,
        "lat-pub".into(),
        topic,
        qos,
        load::Pace::Rate(rate),
        epoch,
        stop.clone(),
    ));
    tokio::time::sleep(duration).await;
    stop.cancel();
    let _ = publisher.await;
    let mut s = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    anyhow::ensure!(!s.is_empty(), "no latency samples");
    s.sort_unstable();
    let pick = |q: f64| s[((s.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    Ok((pick(0.5), pick(0.99)))
}

fn print_table(all: &[(Kind, Results)], seconds: u64, rate: u64, idle: usize) {
    let names: Vec<&str> = all.iter().map(|(k, _)| k.name()).collect();
    let mosquitto = all.iter().position(|(k, _)| *k == Kind::Mosquitto);
    let rumqttd = all.iter().position(|(k, _)| *k == Kind::Rumqttd);
    let ironbridge = all.iter().position(|(k, _)| *k == Kind::Ironbridge);
    println!(
        "Throughput: messages per second delivered to subscribers, 100-byte payloads, {seconds} s measured after 1 s warm-up.\n"
    );
    println!(
        "| scenario | {} | Ironbridge / Mosquitto | Ironbridge / rumqttd |",
        names.join(" | ")
    );
    println!("|---|{}---|---|", "---:|".repeat(names.len()));
    for (i, s) in SCENARIOS.iter().enumerate() {
        let values: Vec<String> = all
            .iter()
            .map(|(_, r)| format!("{:.0}", r.throughput[i]))
            .collect();
        let ratio = |other: Option<usize>| match (ironbridge, other) {
            (Some(a), Some(b)) if all[b].1.throughput[i] > 0.0 => {
                format!("{:.2}x", all[a].1.throughput[i] / all[b].1.throughput[i])
            }
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} |",
            s.name,
            values.join(" | "),
            ratio(mosquitto),
            ratio(rumqttd)
        );
    }
    println!(
        "\nLatency at {rate} messages/s, one publisher and one subscriber (microseconds, p50 / p99).\n"
    );
    println!("| QoS | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (i, qos) in ["0", "1"].iter().enumerate() {
        let values: Vec<String> = all
            .iter()
            .map(|(_, r)| format!("{:.0} / {:.0}", r.latency[i].0, r.latency[i].1))
            .collect();
        println!("| {qos} | {} |", values.join(" | "));
    }
    println!(
        "\nMemory for {idle} idle MQTT 3.1.1 connections (growth of the broker's resident set).\n"
    );
    println!("| | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    let connected: Vec<String> = all
        .iter()
        .map(|(_, r)| r.idle_connected.to_string())
        .collect();
    println!("| connections accepted | {} |", connected.join(" | "));
    let bytes = |b: Option<f64>| b.map_or("-".into(), |b| format!("{b:.0} B"));
    let per: Vec<String> = all
        .iter()
        .map(|(_, r)| bytes(r.idle_bytes_per_connection))
        .collect();
    println!("| bytes per connection | {} |", per.join(" | "));
    let further: Vec<String> = all
        .iter()
        .map(|(_, r)| bytes(r.idle_bytes_per_further_connection))
        .collect();
    println!(
        "| bytes per further connection ({} more) | {} |",
        idle / 2,
        further.join(" | ")
    );
}
