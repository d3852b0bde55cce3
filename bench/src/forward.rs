//! `ironbridge-bench forward`: QoS 1 messages per second from the internal broker to a remote
//! Mosquitto through a mapping and an MQTT connection with its store-and-forward queue, against
//! a plain MQTT client publishing the same messages straight to Mosquitto (the baseline, same
//! run, same in-flight window of 64).
//!
//! Scenarios: the baseline; forwarding with the link up (every message goes through the queue
//! file: insert, send, delete on PUBACK) with `fsync` off and on; and draining a backlog that
//! piled up while Mosquitto was down. A message counts when a subscriber at Mosquitto has it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker::bus::RemoteBroker;
use broker::{AnonymousOnly, Broker, BrokerConfig, LocalClient, Message, QoS};
use commissioning::model::{ConnectionTargetState, MqttConnection};
use protocol_mapper::mqtt::{Durability, QueueLimits, QueueSettings};
use rule_engine::{EntrySpec, PublishSpec, SourceSpec};

use crate::brokers::{free_port, wait_for_port};

/// Messages published ahead of what has arrived at Mosquitto at most.
const AHEAD: u64 = 2_000;

pub struct Options {
    pub messages: u64,
}

struct Mosquitto {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start(port: u16) -> anyhow::Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1024\n\
                 max_queued_messages 0\npersistence false\nlog_dest none\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_for_port(port)?;
        Ok(Mosquitto { child, _dir: dir })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts QoS 1 messages arriving at Mosquitto on `bench/out`.
async fn counter(port: u16) -> anyhow::Result<Arc<AtomicU64>> {
    let mut options = rumqttc::MqttOptions::new(format!("counter-{port}"), "127.0.0.1", port);
    options.set_inflight(1024);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1024);
    client
        .subscribe("bench/out", rumqttc::QoS::AtLeastOnce)
        .await?;
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed).await??;
    Ok(count)
}

async fn wait_for(count: &AtomicU64, target: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.load(Ordering::Relaxed) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {target} arrived",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn payload(i: u64) -> String {
    format!(
        "{{\"timestamp\": {}, \"value\": {i}}}",
        1_700_000_000_000u64 + i
    )
}

/// The baseline: one rumqttc client straight to Mosquitto, QoS 1, 64 in flight.
async fn direct(messages: u64) -> anyhow::Result<f64> {
    let port = free_port()?;
    let _mosquitto = Mosquitto::start(port)?;
    let count = counter(port).await?;
    let mut options = rumqttc::MqttOptions::new("direct-publisher", "127.0.0.1", port);
    options.set_inflight(64);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 256);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let started = Instant::now();
    for i in 0..messages {
        while i >= count.load(Ordering::Relaxed) + AHEAD {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        client
            .publish("bench/out", rumqttc::QoS::AtLeastOnce, false, payload(i))
            .await?;
    }
    wait_for(&count, messages).await?;
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

struct Forwarder {
    broker: Broker,
    publisher: LocalClient,
    remote: RemoteBroker,
    connection: protocol_mapper::driver::ConnectionHandle,
    mapping: rule_engine::RunningChains,
}

async fn forwarder(
    port: u16,
    queue_dir: &Path,
    durability: Durability,
) -> anyhow::Result<Forwarder> {
    let broker = Broker::start(
        BrokerConfig {
            max_queued_messages: 100_000,
            ..BrokerConfig::default()
        },
        Arc::new(AnonymousOnly {
            allow_anonymous: true,
        }),
    )?;
    let handle = broker.handle();
    let spec: MqttConnection = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "connectionStrategy": {"initialDelay": 100, "incrementFactor": 1, "maxDelay": 100}
    }))?;
    let (connection, remote) = protocol_mapper::mqtt::connection::start(
        "bench",
        "cloud",
        spec,
        ConnectionTargetState::Connected,
        QueueSettings {
            path: queue_dir.join("cloud.sqlite"),
            limits: QueueLimits {
                durability,
                ..QueueLimits::default()
            },
        },
        handle.connect_local("bench/cloud").await?,
    )
    .map_err(anyhow::Error::msg)?;
    let entry = EntrySpec {
        sources: vec![SourceSpec {
            topic: "bench/in/+n".into(),
            qos: QoS::AtLeastOnce,
            label: None,
            remote: None,
        }],
        publish: PublishSpec {
            topic: "bench/out".into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            remote: Some(remote.clone()),
        },
        rules: Vec::new(),
    };
    let mapping = rule_engine::start_mapping("bench::forward", vec![entry], &handle)
        .await
        .map_err(anyhow::Error::msg)?;
    let publisher = handle.connect_local("bench/publisher").await?;
    Ok(Forwarder {
        broker,
        publisher,
        remote,
        connection,
        mapping,
    })
}

impl Forwarder {
    async fn publish(&self, i: u64) -> anyhow::Result<()> {
        self.publisher
            .publish(Message::new(
                format!("bench/in/{}", i % 16),
                payload(i),
                QoS::AtLeastOnce,
                false,
            ))
            .await?;
        Ok(())
    }

    async fn stop(self) {
        self.mapping.stop().await;
        self.connection.stop().await;
        self.broker.shutdown().await;
    }
}

/// Forwarding with the link up: publish locally, count at Mosquitto.
async fn live(messages: u64, durability: Durability) -> anyhow::Result<f64> {
    let port = free_port()?;
    let _mosquitto = Mosquitto::start(port)?;
    let count = counter(port).await?;
    let dir = tempfile::tempdir()?;
    let forwarder = forwarder(port, dir.path(), durability).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while forwarder.connection.status().state != protocol_mapper::status::ConnectionState::Connected
    {
        anyhow::ensure!(Instant::now() < deadline, "the connection did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    for i in 0..messages {
        while i >= count.load(Ordering::Relaxed) + AHEAD {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        forwarder.publish(i).await?;
    }
    wait_for(&count, messages).await?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    forwarder.stop().await;
    Ok(rate)
}

/// A backlog of `messages` queued while Mosquitto is down, then delivered when it starts.
/// Returns (messages queued per second, messages delivered per second).
async fn backlog(messages: u64) -> anyhow::Result<(f64, f64)> {
    let port = free_port()?;
    let dir = tempfile::tempdir()?;
    let forwarder = forwarder(port, dir.path(), Durability::Process).await?;
    let started = Instant::now();
    for i in 0..messages {
        forwarder.publish(i).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while forwarder.remote.stats().queued_messages < messages {
        anyhow::ensure!(Instant::now() < deadline, "the queue did not fill");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued = messages as f64 / started.elapsed().as_secs_f64();
    let _mosquitto = Mosquitto::start(port)?;
    let count = counter(port).await?;
    let started = Instant::now();
    wait_for(&count, messages).await?;
    let drained = messages as f64 / started.elapsed().as_secs_f64();
    forwarder.stop().await;
    Ok((queued, drained))
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let n = options.messages;
    eprintln!("== direct to Mosquitto (baseline)");
    let direct = direct(n).await?;
    eprintln!("   {direct:.0} msg/s");
    eprintln!("== forwarded, link up, fsync off");
    let live_process = live(n, Durability::Process).await?;
    eprintln!("   {live_process:.0} msg/s");
    eprintln!("== forwarded, link up, fsync on");
    let live_power = live(n, Durability::Power).await?;
    eprintln!("   {live_power:.0} msg/s");
    eprintln!("== backlog while Mosquitto is down, then drained");
    let (queued, drained) = backlog(n).await?;
    eprintln!("   queued {queued:.0} msg/s, drained {drained:.0} msg/s");
    println!(
        "| scenario ({n} QoS 1 messages, ~45 bytes) | messages/s |\n|---|---:|\n\
         | rumqttc straight to Mosquitto (baseline, 64 in flight) | {direct:.0} |\n\
         | Ironbridge mapping -> MQTT connection -> Mosquitto, link up, `fsync: false` | {live_process:.0} |\n\
         | the same with `fsync: true` | {live_power:.0} |\n\
         | backlog queued while Mosquitto is down | {queued:.0} |\n\
         | backlog delivered once Mosquitto is up | {drained:.0} |"
    );
    Ok(())
}
