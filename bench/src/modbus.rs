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
use std::time::Duration;

use protocol_mapper::modbus::simulator::Simulator;
use tokio_util::sync::CancellationToken;

use crate::endtoend;
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

    let endpoints = addrs.len() * (usize::from(options.registers) + 1);
    let file = commissioning_file(&addrs, &options);
    let result =
        endtoend::run_gateway(ironbridge, file, endpoints, subscribers_rt, options.seconds).await;
    stop.cancel();
    for simulator in simulators {
        devices_rt.spawn(simulator.stop()).await?;
    }
    let measurement = result?;
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
    measurement.print_table();
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
