//! `ironbridge-bench s7`: the whole path CPU -> gateway -> MQTT subscriber under load, as
//! `modbus` measures it. In-process S7 CPUs (the project's simulator, on their own runtime
//! thread) change every variable every 10 ms; the real `ironbridge` binary (separate process)
//! polls them through a commissioning file installed over the REST API, one endpoint per
//! variable, packing each CPU's variables into as few requests as its PDU allows; raw MQTT
//! subscribers count what arrives and how late.
//!
//! Reported as for `modbus`: variables/s delivered, the gateway's CPU and memory, the added
//! latency and the CPU-change-to-subscriber latency (read from a clock variable, `DB1,LINT0`,
//! the CPU updates with every change), and the read requests each CPU answered per poll.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use protocol_mapper::s7::simulator::{Memory, Simulator};
use tokio_util::sync::CancellationToken;

use crate::endtoend;

/// Bytes 0..8 of DB1 hold the CPU's clock (µs, LINT); the REALs follow.
const FIRST_VALUE: usize = 8;

pub struct Options {
    pub cpus: usize,
    pub variables: usize,
    pub interval_ms: u64,
    pub pdu_size: u16,
    pub seconds: u64,
}

pub async fn run(
    ironbridge: &std::path::Path,
    cpus_rt: &tokio::runtime::Runtime,
    subscribers_rt: &tokio::runtime::Runtime,
    options: Options,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut addrs = Vec::new();
    let mut simulators = Vec::new();
    let db_size = FIRST_VALUE + 4 * options.variables;
    for _ in 0..options.cpus {
        let mut memory = Memory::default();
        memory.db(1).resize(db_size, 0);
        let pdu_size = options.pdu_size;
        let simulator = cpus_rt
            .spawn(async move {
                Simulator::start("127.0.0.1:0".parse().expect("address"), memory, pdu_size).await
            })
            .await??;
        addrs.push(simulator.addr);
        let memory = simulator.shared_memory();
        let stop = stop.clone();
        cpus_rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n = 0f32;
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                n += 1.0;
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                let db = memory.db(1);
                db[..FIRST_VALUE].copy_from_slice(&micros.to_be_bytes());
                for value in db[FIRST_VALUE..].chunks_mut(4) {
                    value.copy_from_slice(&n.to_be_bytes());
                }
            }
        });
        simulators.push(simulator);
    }

    let endpoints = addrs.len() * (options.variables + 1);
    let file = commissioning_file(&addrs, &options);
    let started = requests(&simulators);
    let result =
        endtoend::run_gateway(ironbridge, file, endpoints, subscribers_rt, options.seconds).await;
    let answered = requests(&simulators) - started;
    stop.cancel();
    for simulator in simulators {
        cpus_rt.spawn(simulator.stop()).await?;
    }
    let measurement = result?;
    let expected = (addrs.len() * options.variables) as f64 * 1000.0 / options.interval_ms as f64;
    println!(
        "S7 end to end: {} CPUs x {} REALs (+ a clock LINT) polled every {} ms, PDU {} bytes (expected {:.0} values/s), {} s measured after 2 s warm-up.\n",
        addrs.len(),
        options.variables,
        options.interval_ms,
        options.pdu_size,
        expected,
        options.seconds
    );
    measurement.print_table();
    println!(
        "\nRead requests answered per CPU: {} in the whole run ({:.1} per poll at the nominal rate).",
        answered / addrs.len() as u64,
        answered as f64
            / addrs.len() as f64
            / ((options.seconds + 2) as f64 * 1000.0 / options.interval_ms as f64)
    );
    Ok(())
}

fn requests(simulators: &[Simulator]) -> u64 {
    simulators.iter().map(|s| s.memory().requests).sum()
}

fn commissioning_file(addrs: &[SocketAddr], options: &Options) -> String {
    let mut yaml = String::from("metadata: {name: bench}\nresources:\n");
    for (d, addr) in addrs.iter().enumerate() {
        let _ = write!(
            yaml,
            "  plc{d}:\n    type: Cybus::Connection\n    properties:\n      protocol: S7\n      connection: {{host: 127.0.0.1, port: {}, pollInterval: {}, pduSize: {}, requestTimeout: 2000}}\n",
            addr.port(),
            options.interval_ms,
            options.pdu_size
        );
        let _ = write!(
            yaml,
            "  clock{d}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: S7\n      connection: !ref plc{d}\n      topic: plc{d}/clock/us\n      subscribe: {{address: 'DB1,LINT0'}}\n"
        );
        for v in 0..options.variables {
            let _ = write!(
                yaml,
                "  v{d}x{v}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: S7\n      connection: !ref plc{d}\n      topic: plc{d}/v{v}\n      subscribe: {{address: 'DB1,REAL{}'}}\n",
                FIRST_VALUE + 4 * v
            );
        }
    }
    yaml
}
