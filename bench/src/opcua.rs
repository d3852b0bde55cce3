//! `ironbridge-bench opcua`: device to MQTT subscriber through the gateway, from one OPC UA
//! server with many monitored items. The in-process async-opcua simulator (on its own runtime
//! thread) changes every variable at a fixed rate, plus a clock variable holding its wall clock
//! in µs; the real `ironbridge` binary subscribes to all of them through a commissioning file
//! installed over the REST API.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use opcua::types::{NodeId, Variant};
use protocol_mapper::opcua::simulator::{OpcuaSimulator, SimulatorConfig};
use tokio_util::sync::CancellationToken;

use crate::endtoend;

pub struct Options {
    pub items: usize,
    /// How often the server changes every value, ms.
    pub change_ms: u64,
    /// The subscriptions' publishing interval, ms.
    pub publish_ms: u64,
    pub seconds: u64,
}

pub async fn run(
    ironbridge: &Path,
    server_rt: &tokio::runtime::Runtime,
    subscribers_rt: &tokio::runtime::Runtime,
    options: Options,
) -> anyhow::Result<()> {
    let pki = tempfile::tempdir()?;
    let config = SimulatorConfig {
        listen: "127.0.0.1:0".parse()?,
        host: "localhost".into(),
        user: None,
        pki_dir: pki.path().to_path_buf(),
    };
    let items = options.items;
    let (server, nodes, clock) = server_rt
        .spawn(async move {
            let mut server = OpcuaSimulator::build(config).await?;
            let nodes: Vec<NodeId> = (0..items)
                .map(|i| server.add_variable(&format!("v{i}"), 0i64, false))
                .collect();
            let clock = server.add_variable("clock", 0i64, false);
            server.serve();
            Ok::<_, String>((server, nodes, clock))
        })
        .await?
        .map_err(anyhow::Error::msg)?;
    let server = std::sync::Arc::new(server);
    let stop = CancellationToken::new();
    {
        let (server, stop, change) = (server.clone(), stop.clone(), options.change_ms);
        server_rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(change));
            let mut n: i64 = 0;
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                n += 1;
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                let values = nodes
                    .iter()
                    .map(|node| (node.clone(), Variant::Int64(n)))
                    .chain(std::iter::once((clock.clone(), Variant::Int64(micros))));
                if let Err(e) = server.set_values(values) {
                    eprintln!("   the simulator cannot set values: {e}");
                }
            }
        });
    }
    let file = commissioning_file(server.addr.port(), server.namespace, &options);
    let result =
        endtoend::run_gateway(ironbridge, file, items + 1, subscribers_rt, options.seconds).await;
    stop.cancel();
    if let Ok(server) = std::sync::Arc::try_unwrap(server) {
        server_rt.spawn(server.stop()).await?;
    }
    let measurement = result?;
    println!(
        "OPC UA end to end: one server, {} monitored items changing every {} ms, publishing interval {} ms (expected {:.0} values/s), {} s measured after 2 s warm-up.\n",
        options.items,
        options.change_ms,
        options.publish_ms,
        options.items as f64 * 1000.0 / options.change_ms as f64,
        options.seconds
    );
    measurement.print_table();
    Ok(())
}

fn commissioning_file(port: u16, namespace: u16, options: &Options) -> String {
    let mut yaml = format!(
        "metadata: {{name: bench}}\nresources:\n  cnc:\n    type: Cybus::Connection\n    properties:\n      protocol: Opcua\n      connection: {{host: 127.0.0.1, port: {port}}}\n"
    );
    let endpoint = |yaml: &mut String, id: &str, topic: &str, name: &str| {
        let _ = write!(
            yaml,
            "  {id}:\n    type: Cybus::Endpoint\n    properties:\n      protocol: Opcua\n      connection: !ref cnc\n      topic: {topic}\n      subscribe: {{nodeId: 'ns={namespace};s=Machine.{name}', publishInterval: {}}}\n",
            options.publish_ms
        );
    };
    endpoint(&mut yaml, "clock", "cnc/clock/us", "clock");
    for i in 0..options.items {
        endpoint(
            &mut yaml,
            &format!("v{i}"),
            &format!("cnc/v{i}"),
            &format!("v{i}"),
        );
    }
    yaml
}
