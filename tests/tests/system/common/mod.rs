//! What the in-process whole-gateway tests share: settings with free loopback ports and waits
//! for messages on the in-process link.

pub mod mosquitto;
pub mod pki;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use broker::LocalClient;
use gateway::settings::Settings;
use serde_json::Value;

/// The text of a file in `commissioning-examples/`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../commissioning-examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// GET `path` on the gateway's HTTP listener without a token: the status code and the body.
pub async fn http_get(gw: &gateway::Gateway, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.http_addr.unwrap())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Embedded defaults (anonymous MQTT off), data in `dir`, every listener on a free loopback port.
pub fn settings(dir: &Path, admin_password: &str) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.admin.password = Some(admin_password.into());
    for listener in [&mut s.mqtt, &mut s.mqtts, &mut s.http, &mut s.https] {
        listener.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        listener.port = 0;
    }
    s
}

/// An in-process client of `gw`'s broker subscribed to `filters`, each with a client id of its
/// own (a second session with the same id would take the first over).
pub async fn watch(gw: &gateway::Gateway, filters: &[&str]) -> LocalClient {
    static WATCHERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = WATCHERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut watcher = gw
        .broker()
        .unwrap()
        .connect_local(&format!("test/watcher-{n}"))
        .await
        .unwrap();
    for filter in filters {
        watcher
            .subscribe(filter, broker::QoS::AtLeastOnce)
            .await
            .unwrap();
    }
    watcher
}

/// The next message on `topic`, as JSON, within 5 s.
pub async fn next_on(client: &mut LocalClient, topic: &str) -> Value {
    first_matching(client, topic, |_| true).await
}

/// The first message on `topic` that satisfies `wanted`, within 5 s.
pub async fn first_matching(
    client: &mut LocalClient,
    topic: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let wait = async {
        loop {
            let Some(delivery) = client.recv().await else {
                panic!("the watcher lost its broker session");
            };
            if &delivery.message.topic[..] == topic {
                let value = serde_json::from_slice(&delivery.message.payload)
                    .unwrap_or_else(|e| panic!("{topic}: not JSON: {e}"));
                if wanted(&value) {
                    return value;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("nothing wanted on {topic} within 5 s"))
}

/// A port nothing listens on now (for listeners that cannot take port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
