//! `Cybus::Server::Http` and `Cybus::Node::Http` in the whole gateway: a machine posts to
//! `/data/...` with basic authentication or a token, the body arrives on MQTT, GET answers the
//! last value, and everything a client can get wrong is answered with its status.

use admin::services::{Authority, ServiceInput, ServiceState};
use base64::Engine as _;
use broker::{Message, QoS};
use gateway::Gateway;
use serde_json::{Value, json};

use crate::common::{example, next_on, settings, watch};

/// One HTTP/1.0 request: the status, the headers (lower-cased names) and the body.
async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.http_addr.unwrap())
        .await
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (
        status,
        head,
        response[(split + 4).min(response.len())..].to_vec(),
    )
}

/// A request a client gets wrong, and the status it gets.
struct Mistake<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
    expected: u16,
}

impl<'a> Mistake<'a> {
    fn new(
        method: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
        expected: u16,
    ) -> Mistake<'a> {
        Mistake {
            method,
            path,
            headers,
            body,
            expected,
        }
    }
}

fn auth_with(value: &str) -> (&str, &str) {
    ("Authorization", value)
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn install(gw: &Gateway, file: String, parameters: Value) -> Result<String, String> {
    gw.admin()
        .install_service(
            ServiceInput {
                id: None,
                commissioning_file: file,
                parameters: parameters.as_object().cloned().unwrap_or_default(),
                target_state: None,
            },
            &Authority::System,
        )
        .await
        .map_err(|e| e.to_string())
        .and_then(|installed| match installed.state {
            ServiceState::Enabled => Ok(installed.service.id),
            other => Err(format!("{other:?}: {:?}", installed.last_error)),
        })
}

#[tokio::test]
async fn machines_post_and_get_through_http_nodes_with_their_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(settings(dir.path(), "http-node-admin"))
        .await
        .unwrap();
    let mut watcher = watch(&gw, &["services/pressintake/#"]).await;
    let id = install(
        &gw,
        example("http-intake.yml"),
        json!({"machinePassword": "press-secret-1"}),
    )
    .await
    .unwrap();
    assert_eq!(id, "pressintake");
    let machine = basic("pressintake.machine", "press-secret-1");
    let auth = [("Authorization", machine.as_str())];

    // JSON is published as {"timestamp", "value"}.
    let json_body = [auth[0], ("Content-Type", "application/json; charset=utf-8")];
    let (status, _, _) = call(
        &gw,
        "POST",
        "/data/press/counter",
        &json_body,
        br#"{"parts": 17}"#,
    )
    .await;
    assert_eq!(status, 204);
    let counter = next_on(&mut watcher, "services/pressintake/counter").await;
    assert_eq!(counter["value"], json!({"parts": 17}));
    assert!(counter["timestamp"].as_i64().unwrap() > 1_600_000_000_000);

    // The other documented media types go as they are, to the node's own topic.
    let text = [auth[0], ("Content-Type", "text/plain")];
    let (status, _, _) = call(&gw, "PUT", "/data/press/line/state", &text, b"running").await;
    assert_eq!(status, 204);
    let state = loop {
        let delivery = watcher.recv().await.unwrap();
        if &delivery.message.topic[..] == "services/pressintake/line/state" {
            break delivery.message.payload.to_vec();
        }
    };
    assert_eq!(state, b"running");

    // GET answers the last message on its topic: nothing yet, then what was published.
    let (status, _, body) = call(&gw, "GET", "/data/press/order", &auth, b"").await;
    assert_eq!((status, body.len()), (204, 0));
    watcher
        .publish(Message::new(
            "services/pressintake/order",
            br#"{"order": "A-17", "quantity": 400}"#.to_vec(),
            QoS::AtLeastOnce,
            true,
        ))
        .await
        .unwrap();
    let mut answer = (0, String::new(), Vec::new());
    for _ in 0..50 {
        answer = call(&gw, "GET", "/data/press/order", &auth, b"").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(answer.0, 200);
    assert!(
        answer.1.contains("content-type: application/json"),
        "{}",
        answer.1
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&answer.2).unwrap(),
        json!({"order": "A-17", "quantity": 400})
    );

    // What a client can get wrong, each with its status.
    let wrong_password = basic("pressintake.machine", "wrong");
    let json_only = [("Content-Type", "application/json")];
    let wrong = [auth_with(&wrong_password), json_only[0]];
    let png = [auth[0], ("Content-Type", "image/png")];
    let too_large = [b' '; 10_001];
    let cases = [
        Mistake::new("POST", "/data/press/counter", &json_only, b"{}", 401),
        Mistake::new("POST", "/data/press/counter", &wrong, b"{}", 401),
        Mistake::new("POST", "/data/press/counter", &json_body, b"{not json", 400),
        Mistake::new("POST", "/data/press/counter", &png, b"x", 415),
        Mistake::new("POST", "/data/press/counter", &json_body, &too_large, 413),
        Mistake::new("GET", "/data/press/counter", &auth, b"", 405),
        Mistake::new("POST", "/data/press/nothing", &json_body, b"{}", 404),
        Mistake::new("DELETE", "/data/press/order", &auth, b"", 405),
    ];
    for Mistake {
        method,
        path,
        headers,
        body,
        expected,
    } in cases
    {
        let (status, head, answer) = call(&gw, method, path, headers, body).await;
        assert_eq!(
            status,
            expected,
            "{method} {path}: {head} {}",
            String::from_utf8_lossy(&answer)
        );
        if expected != 405 {
            let error: Value = serde_json::from_slice(&answer).unwrap();
            assert!(error["error"]["message"].is_string(), "{error}");
        }
    }

    // A token works as for the API; a user without an http permission on the path is refused.
    let admin_login = gw
        .admin()
        .login("admin", "http-node-admin", None, None)
        .await
        .unwrap();
    let bearer = format!("Bearer {}", admin_login.token);
    let (status, _, _) = call(
        &gw,
        "POST",
        "/data/press/counter",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        b"18",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        next_on(&mut watcher, "services/pressintake/counter").await["value"],
        json!(18)
    );
    let (status, _, body) = call(&gw, "POST", "/api/users", &[("Authorization", &bearer), ("Content-Type", "application/json")],
        br#"{"username": "viewer", "password": "viewer-secret-1", "permissions": [{"resource": "/data/press/order", "operation": "read", "context": "http"}]}"#).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let viewer = basic("viewer", "viewer-secret-1");
    let (status, _, _) = call(
        &gw,
        "GET",
        "/data/press/order",
        &[("Authorization", &viewer)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) = call(
        &gw,
        "POST",
        "/data/press/counter",
        &[
            ("Authorization", &viewer),
            ("Content-Type", "application/json"),
        ],
        b"1",
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        String::from_utf8_lossy(&body).contains("no http write permission on /data/press/counter")
    );

    // A second service cannot take a path another serves: it fails to enable and says why.
    let copy = example("http-intake.yml").replace("name: Press Intake", "name: Press Copy");
    let refused = install(&gw, copy, json!({"machinePassword": "press-secret-2"}))
        .await
        .unwrap_err();
    assert!(
        refused.contains("POST /data/press/counter is already served by pressintake::counter"),
        "{refused}"
    );

    // Deleting the service removes its routes.
    gw.admin().delete_service("pressintake").await.unwrap();
    let (status, _, _) = call(
        &gw,
        "POST",
        "/data/press/counter",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        b"1",
    )
    .await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}
