//! `ironbridge-bench auth`: how fast password-authenticated clients can connect, Ironbridge
//! against Mosquitto with a password file, in one run. This is what a reconnect storm after a
//! network outage costs: every client's password is checked again.
//!
//! Ironbridge hashes with argon2id (19 MiB, 2 passes, at most 4 at once); Mosquitto 2.0's
//! password file uses PBKDF2-SHA512 with 101 iterations. The numbers say what that choice costs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::brokers::{Kind, RunningBroker};
use crate::load;

const USER: &str = "admin";
const PASSWORD: &str = "bench-password-1234";

pub async fn run(ironbridge: &Path, connections: usize, concurrency: usize) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for kind in [Kind::Ironbridge, Kind::Mosquitto] {
        eprintln!("== {}", kind.name());
        let broker = RunningBroker::start_authenticated(kind, ironbridge, USER, PASSWORD)?;
        let addr: SocketAddr = ([127, 0, 0, 1], broker.port).into();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // One refused wrong password first: proves the broker really checks.
        anyhow::ensure!(
            load::connect_as(addr, "wrong", 60, Some((USER, "wrong-password")))
                .await
                .is_err(),
            "{} accepted a wrong password",
            kind.name()
        );
        // The first storm after a start checks every password in full; the second is the
        // reconnect storm after a network outage, with the same passwords as before.
        for storm_name in ["first connect after start", "reconnect"] {
            let (rate, p50, p99) = storm(addr, connections, concurrency).await?;
            eprintln!("   {storm_name}: {rate:.0} connects/s, p50 {p50:.1} ms, p99 {p99:.1} ms");
            rows.push((kind, storm_name, rate, p50, p99));
        }
        broker.stop();
    }
    println!(
        "Password-authenticated MQTT 3.1.1 CONNECTs: {connections} clients of one user, {concurrency} connecting at a time.\n"
    );
    println!("| broker | storm | connects/s | CONNACK latency p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    for (kind, storm_name, rate, p50, p99) in rows {
        println!(
            "| {} | {storm_name} | {rate:.0} | {p50:.1} ms | {p99:.1} ms |",
            kind.name()
        );
    }
    Ok(())
}

async fn storm(
    addr: SocketAddr,
    connections: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let permit = slots.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            let begun = Instant::now();
            let connected =
                load::connect_as(addr, &format!("storm-{i}"), 60, Some((USER, PASSWORD))).await;
            connected.map(|_| begun.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(connections);
    while let Some(result) = tasks.join_next().await {
        latencies.push(result??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick =
        |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    Ok((connections as f64 / elapsed, pick(0.5), pick(0.99)))
}
