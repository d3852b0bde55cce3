//! `ironbridge-bench rules`: messages per second through a mapping on one core, and the latency
//! the mapping adds.
//!
//! Each scenario gets a fresh broker and a single-threaded runtime on its own thread, so the
//! broker's router, the mapping task, the publisher and the subscriber all share one core: the
//! rate is messages per core-second of the whole in-process path. The baseline in the same run
//! is the broker alone (publisher straight to subscriber), then a mapping with no rules, then
//! rule chains. Payloads look like endpoint data: `{"timestamp": ..., "value": ...}`, each value
//! different so `cov` passes every message.
//!
//! Throughput: publish as fast as the subscriber keeps up (at most `WINDOW` messages unanswered,
//! so no bounded queue drops anything). Latency: a fixed rate, publish-to-receive per message.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{AnonymousOnly, Broker, BrokerConfig, BrokerHandle, Message, QoS};
use bytes::Bytes;
use commissioning::model::Rule;
use rule_engine::{EntrySpec, PublishSpec, SourceSpec};
use serde_json::json;

/// Messages published ahead of the subscriber at most.
const WINDOW: u64 = 2_000;

pub struct Options {
    pub messages: u64,
    /// Messages per second in the latency phase.
    pub latency_rate: u64,
    pub latency_seconds: u64,
}

struct Scenario {
    name: &'static str,
    /// `None`: no mapping, the subscriber listens on the input topic itself.
    rules: Option<serde_json::Value>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "broker only (baseline)",
            rules: None,
        },
        Scenario {
            name: "mapping, no rules",
            rules: Some(json!([])),
        },
        Scenario {
            name: "mapping, transform",
            rules: Some(json!([
                {"transform": {"expression": "{\"timestamp\": timestamp, \"value\": value * 1.8 + 32}"}}
            ])),
        },
        Scenario {
            name: "mapping, parse + transform + cov",
            rules: Some(json!([
                {"parse": {"format": "json"}},
                {"transform": {"expression": "{\"timestamp\": timestamp, \"value\": value * 1.8 + 32}"}},
                {"cov": {"key": "value", "deadband": 0.5}}
            ])),
        },
    ]
}

struct Measured {
    name: &'static str,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for scenario in scenarios() {
        eprintln!("== {}", scenario.name);
        let messages = options.messages;
        let (rate_hz, seconds) = (options.latency_rate, options.latency_seconds);
        // A thread of its own with a single-threaded runtime: everything runs on one core.
        let handle = std::thread::spawn(move || -> anyhow::Result<Measured> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(measure(scenario, messages, rate_hz, seconds))
        });
        let measured = handle
            .join()
            .map_err(|_| anyhow::anyhow!("scenario thread panicked"))??;
        eprintln!(
            "   {:.0} msg/s, latency p50 {:.0} µs, p99 {:.0} µs",
            measured.rate, measured.p50_us, measured.p99_us
        );
        results.push(measured);
    }
    println!("{}", report(&results, &options));
    Ok(())
}

async fn measure(
    scenario: Scenario,
    messages: u64,
    rate_hz: u64,
    seconds: u64,
) -> anyhow::Result<Measured> {
    let config = BrokerConfig {
        max_queued_messages: 100_000,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(
        config,
        Arc::new(AnonymousOnly {
            allow_anonymous: true,
        }),
    )?;
    let handle = broker.handle();
    let output = match scenario.rules {
        None => "bench/in/1".to_string(),
        Some(_) => "bench/out/1".to_string(),
    };
    let mapping = match &scenario.rules {
        None => None,
        Some(rules) => Some(start_mapping(&handle, rules.clone()).await?),
    };
    let mut subscriber = handle.connect_local("bench/subscriber").await?;
    subscriber.subscribe(&output, QoS::AtMostOnce).await?;
    let publisher = handle.connect_local("bench/publisher").await?;

    // Warm-up, then throughput.
    pump(&publisher, &mut subscriber, messages / 10, 0).await?;
    let started = Instant::now();
    pump(&publisher, &mut subscriber, messages, messages / 10).await?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();

    // Latency at a steady rate.
    let mut latencies = Vec::new();
    let period = Duration::from_secs_f64(1.0 / rate_hz as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = rate_hz * seconds;
    let base = 10 * messages;
    for i in 0..total {
        tick.tick().await;
        let sent = Instant::now();
        publisher.publish(message(base + i)).await?;
        let delivery = tokio::time::timeout(Duration::from_secs(5), subscriber.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the subscriber lost its session"))?;
        let _ = delivery;
        latencies.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];

    if let Some(mapping) = mapping {
        let stats = mapping.stats();
        anyhow::ensure!(
            stats.dropped == 0,
            "the mapping dropped {} messages: {:?}",
            stats.dropped,
            stats.last_error
        );
        mapping.stop().await;
    }
    broker.shutdown().await;
    Ok(Measured {
        name: scenario.name,
        rate,
        p50_us: pick(0.5),
        p99_us: pick(0.99),
    })
}

async fn start_mapping(
    broker: &BrokerHandle,
    rules: serde_json::Value,
) -> anyhow::Result<rule_engine::RunningChains> {
    let rules: Vec<Rule> = serde_json::from_value(rules)?;
    let entry = EntrySpec {
        sources: vec![SourceSpec {
            topic: "bench/in/+n".into(),
            qos: QoS::AtMostOnce,
            label: None,
            remote: None,
        }],
        publish: PublishSpec {
            topic: "bench/out/{n}".into(),
            qos: QoS::AtMostOnce,
            retain: false,
            remote: None,
        },
        rules,
    };
    rule_engine::start_mapping("bench::mapping", vec![entry], broker)
        .await
        .map_err(anyhow::Error::msg)
}

fn message(i: u64) -> Message {
    // Values 1 apart: every message passes a cov deadband of 0.5.
    let payload = format!(
        "{{\"timestamp\": {}, \"value\": {}.5}}",
        1_763_800_000_000u64 + i,
        i
    );
    Message::new("bench/in/1", Bytes::from(payload), QoS::AtMostOnce, false)
}

/// Publishes `count` messages numbered from `first`, never more than `WINDOW` ahead of the
/// subscriber, and waits until all arrived.
async fn pump(
    publisher: &broker::LocalClient,
    subscriber: &mut broker::LocalClient,
    count: u64,
    first: u64,
) -> anyhow::Result<()> {
    let (mut sent, mut received) = (0u64, 0u64);
    while received < count {
        while sent < count && sent - received < WINDOW {
            publisher.publish(message(first + sent)).await?;
            sent += 1;
        }
        tokio::time::timeout(Duration::from_secs(10), subscriber.recv())
            .await
            .map_err(|_| anyhow::anyhow!("stalled after {received} of {count} messages"))?
            .ok_or_else(|| anyhow::anyhow!("the subscriber lost its session"))?;
        received += 1;
    }
    Ok(())
}

fn report(results: &[Measured], options: &Options) -> String {
    let baseline = results.first().map_or(0.0, |m| m.p50_us);
    let baseline99 = results.first().map_or(0.0, |m| m.p99_us);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} messages per scenario, one core; latency at {} msg/s for {} s\n",
        options.messages, options.latency_rate, options.latency_seconds
    );
    let _ = writeln!(
        out,
        "| path | messages/s on one core | latency p50 / p99 (µs) | added by the mapping p50 / p99 (µs) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
            m.name,
            m.rate,
            m.p50_us,
            m.p99_us,
            m.p50_us - baseline,
            m.p99_us - baseline99
        );
    }
    out
}
