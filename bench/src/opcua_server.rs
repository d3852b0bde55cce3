//! `ironbridge-bench opcua-server`: MQTT publisher -> the gateway's OPC UA server -> one OPC UA
//! client. The real `ironbridge` binary (its own process, so its CPU and memory are its own)
//! serves N variables through a commissioning file installed over the REST API; an MQTT client
//! publishes every variable once a second (`{"timestamp", "value"}`, spread evenly over the
//! second); one OPC UA client (async-opcua, through Ironbridge's own OPC UA connection in this
//! process) subscribes to all of them and counts what arrives and how late: the data change's
//! source timestamp is the publisher's, so "added latency" is publish to client delivery.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{AnonymousOnly, Broker, BrokerConfig, QoS};
use commissioning::model::{
    Address, ConnectionTargetState, OpcuaAddress, OpcuaConnection, OpcuaOptions, Operation,
};
use protocol_mapper::driver::EndpointSpec;
use rumqttc::{AsyncClient, MqttOptions};

use crate::endtoend;

pub struct Options {
    pub variables: usize,
    /// The client's publishing interval, ms.
    pub publish_ms: u64,
    pub seconds: u64,
}

pub async fn run(ironbridge: &Path, options: Options) -> anyhow::Result<()> {
    let gateway = endtoend::GatewayProcess::start(ironbridge)?;
    crate::brokers::wait_for_port(gateway.http)?;
    let http: std::net::SocketAddr = ([127, 0, 0, 1], gateway.http).into();
    let port = crate::brokers::free_port()?;
    let token = endtoend::login(http).await?;
    let body = serde_json::json!({"commissioningFile": file(port, options.variables)}).to_string();
    let installed = Instant::now();
    let (status, answer) =
        endtoend::request(http, "POST", "/api/services", Some(&token), &body).await?;
    anyhow::ensure!(
        status == 201,
        "install failed ({status}): {}",
        &answer[..answer.len().min(500)]
    );
    eprintln!(
        "   installed {} variables in {:.1} s",
        options.variables,
        installed.elapsed().as_secs_f64()
    );

    // The OPC UA client: Ironbridge's own connection on an in-process broker of this process.
    let local = Broker::start(
        BrokerConfig {
            allow_anonymous: true,
            ..BrokerConfig::default()
        },
        Arc::new(AnonymousOnly {
            allow_anonymous: true,
        }),
    )?;
    let mut sink = local.handle().connect_local("bench/sink").await?;
    sink.subscribe("client/#", QoS::AtMostOnce).await?;
    let pki = tempfile::tempdir()?;
    let client = protocol_mapper::opcua::connection::start(
        "bench",
        "client",
        client_spec(port),
        ConnectionTargetState::Connected,
        pki.path().to_path_buf(),
        local.handle().connect_local("bench/client").await?,
    );
    for v in 0..options.variables {
        let spec = EndpointSpec {
            id: format!("v{v}"),
            topic: format!("client/v{v}"),
            operation: Operation::Subscribe,
            address: Address::Opcua(OpcuaAddress {
                node_id: Some(format!("ns=2;s=bench.v{v}")),
                browse_path: None,
                browse_path_prefix: None,
                node_type: None,
                sampling_interval: Some(0),
                publish_interval: Some(options.publish_ms),
            }),
            qos: QoS::AtMostOnce,
            retain: false,
            rules: None,
        };
        client
            .add_endpoint(spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }

    let received = Arc::new(AtomicU64::new(0));
    let late = Arc::new(Mutex::new(Vec::<i64>::new()));
    let counting = {
        let (received, late) = (received.clone(), late.clone());
        tokio::spawn(async move {
            while let Some(delivery) = sink.recv().await {
                received.fetch_add(1, Ordering::Relaxed);
                let stamped =
                    serde_json::from_slice::<serde_json::Value>(&delivery.message.payload)
                        .ok()
                        .and_then(|v| v["timestamp"].as_i64());
                if let (Some(stamped), Ok(mut samples)) = (stamped, late.lock()) {
                    samples.push(now_millis() - stamped);
                }
            }
        })
    };

    // The publisher: every variable once a second, in 100 slices of 10 ms.
    let mut mqtt = MqttOptions::new("bench-publisher", "127.0.0.1", gateway.mqtt);
    mqtt.set_max_packet_size(1 << 20, 1 << 20);
    let (publisher, mut events) = AsyncClient::new(mqtt, 20_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let variables = options.variables;
    let publishing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut round = 0u64;
        loop {
            tick.tick().await;
            let slice = (round % 100) as usize;
            for v in (slice..variables).step_by(100) {
                let payload = format!(r#"{{"timestamp":{},"value":{}}}"#, now_millis(), round);
                let topic = format!("services/bench/v{v}");
                if publisher
                    .publish(topic, rumqttc::QoS::AtMostOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            round += 1;
        }
    });

    tokio::time::sleep(Duration::from_secs(5)).await; // subscriptions made, first values in
    late.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let pid = gateway.child.id();
    let (cpu_before, at_before) = (endtoend::cpu_ticks(pid)?, Instant::now());
    let count_before = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let count = received.load(Ordering::Relaxed) - count_before;
    let elapsed = at_before.elapsed().as_secs_f64();
    let cores =
        (endtoend::cpu_ticks(pid)? - cpu_before) as f64 / endtoend::ticks_per_second() / elapsed;
    let rss = crate::brokers::rss_of(pid)?;
    publishing.abort();
    client.stop().await;
    counting.abort();

    let mut samples = late.lock().map(|s| s.clone()).unwrap_or_default();
    samples.sort_unstable();
    let pick = |q: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "OPC UA server: {} variables fed from MQTT at 1 Hz each, one client subscribed to all (publishing interval {} ms), {} s measured after 5 s warm-up.\n",
        options.variables, options.publish_ms, options.seconds
    );
    println!(
        "| values/s published | values/s delivered | gateway CPU (cores) | gateway RSS | publish to client p50 / p99 |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.2} | {:.1} MiB | {} / {} ms |",
        options.variables,
        count as f64 / elapsed,
        cores,
        rss as f64 / (1024.0 * 1024.0),
        pick(0.5),
        pick(0.99)
    );
    Ok(())
}

fn file(port: u16, variables: usize) -> String {
    let mut yaml = format!(
        "metadata: {{name: bench}}\nresources:\n  server:\n    type: Cybus::Server::Opcua\n    properties: {{port: {port}, hostname: 127.0.0.1, resourcePath: /bench, allowAnonymous: true, securityPolicies: [None], securityModes: [None]}}\n  folder:\n    type: Cybus::Node::Opcua\n    properties: {{parent: !ref server, nodeType: Object, browseName: Bench}}\n"
    );
    for v in 0..variables {
        let _ = write!(
            yaml,
            "  v{v}:\n    type: Cybus::Node::Opcua\n    properties: {{parent: !ref folder, nodeType: Variable, browseName: V{v}, dataType: Double}}\n"
        );
    }
    yaml
}

fn client_spec(port: u16) -> OpcuaConnection {
    OpcuaConnection {
        host: "127.0.0.1".into(),
        port,
        resource_path: Some("/bench".into()),
        username: None,
        password: None,
        options: Some(OpcuaOptions {
            security_policy: None,
            message_security_mode: None,
            connection_strategy: None,
        }),
        client_certificate: None,
        client_private_key: None,
        trusted_server_certificates: Vec::new(),
        connection_strategy: None,
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
