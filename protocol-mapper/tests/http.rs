//! The HTTP driver against a real HTTP server (axum, in-process) and the real broker: polling
//! JSON and text, headers, query variables and basic authentication, `/req` and `/set` answers
//! with the status, a 5xx and a slow answer as errors of their endpoint, the server going
//! away and coming back, and OAuth 2.0 client credentials with tokens that expire.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use broker::{Broker, LocalClient, QoS};
use commissioning::model::{
    Address, ConnectionStrategy, ConnectionTargetState, HttpAddress, HttpBasicAuth, HttpConnection,
    HttpProbeMethod, HttpScheme, HttpWriteMethod, OAuthClientCredentials, Operation,
};
use common::{broker, endpoint_error, next_on, observer, send, wait_for_state};
use protocol_mapper::driver::{ConnectionHandle, EndpointSpec};
use protocol_mapper::http::connection;
use protocol_mapper::status::ConnectionState;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the test server was sent by `/set`.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A REST server in the style of a machine's: `/api/v1/...`, an API key, basic auth.
fn app(received: Received) -> Router {
    let authorised = |headers: &HeaderMap| {
        headers.get("x-api-key").is_some_and(|v| v == "k-123")
            // `operator:secret` in basic authentication
            && headers
                .get("authorization")
                .is_some_and(|v| v == "Basic b3BlcmF0b3I6c2VjcmV0")
    };
    Router::new()
        .route(
            "/api/v1/machine",
            get(move |headers: HeaderMap| async move {
                match authorised(&headers) {
                    true => (StatusCode::OK, r#"{"temperature": 21.5, "running": true}"#),
                    false => (StatusCode::UNAUTHORIZED, "no key"),
                }
            }),
        )
        .route("/api/v1/state", get(|| async { "running" }))
        .route(
            "/api/v1/broken",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
        )
        .route(
            "/api/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/api/v1/query",
            get(
                |Query(query): Query<serde_json::Map<String, Value>>| async move {
                    axum::Json(Value::Object(query))
                },
            ),
        )
        .route(
            "/api/v1/setpoint",
            axum::routing::post(store("POST"))
                .put(store("PUT"))
                .get(|| async { "use POST" }),
        )
        .with_state(received)
}

fn store(
    method: &'static str,
) -> impl Fn(State<Received>, axum::Json<Value>) -> std::future::Ready<(StatusCode, axum::Json<Value>)>
+ Clone {
    move |State(received): State<Received>, axum::Json(body): axum::Json<Value>| {
        received
            .lock()
            .unwrap()
            .push((method.to_string(), body.clone()));
        std::future::ready((StatusCode::CREATED, axum::Json(body)))
    }
}

/// Serves `app` on `addr` until `stop`; then it stops accepting and closes idle connections,
/// so the driver sees the server gone.
async fn serve(addr: SocketAddr, received: Received, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind(addr).await.unwrap();
    let bound = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app(received))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    bound
}

fn connection_spec(addr: SocketAddr) -> HttpConnection {
    HttpConnection {
        scheme: HttpScheme::Http,
        host: addr.ip().to_string(),
        port: Some(addr.port()),
        prefix: "/api/v1".into(),
        headers: [("X-Api-Key".to_string(), "k-123".to_string())].into(),
        query: [("plant".to_string(), "p1".to_string())].into(),
        auth: Some(HttpBasicAuth {
            username: "operator".into(),
            password: "secret".into(),
        }),
        oauth_client_credentials: None,
        probe_interval: 200,
        probe_timeout: 300,
        probe_path: "/".into(),
        probe_method: HttpProbeMethod::Head,
        request_timeout: 500,
        ca_cert: None,
        client_cert: None,
        client_private_key: None,
        mutual_authentication: false,
        trust_all_certificates: false,
        connection_strategy: Some(ConnectionStrategy {
            initial_delay: 50,
            increment_factor: 2.0,
            max_delay: 200,
        }),
    }
}

fn endpoint(id: &str, operation: Operation, path: &str) -> EndpointSpec {
    EndpointSpec {
        id: id.into(),
        topic: format!("services/line/{id}"),
        operation,
        address: Address::Http(HttpAddress {
            path: path.into(),
            method: None,
            interval: (operation == Operation::Subscribe).then_some(50),
            cron_expression: None,
            headers: Default::default(),
            query: Default::default(),
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

/// An observer of `services/line/#` and the connection `line::rest` to the server at `addr`.
async fn start_rest(broker: &Broker, addr: SocketAddr) -> (LocalClient, ConnectionHandle) {
    start_with(broker, connection_spec(addr)).await
}

/// An observer of `services/line/#` and the connection `line::rest` as `spec` says.
async fn start_with(broker: &Broker, spec: HttpConnection) -> (LocalClient, ConnectionHandle) {
    let observer = observer(broker, "services/line/#").await;
    let link = broker
        .handle()
        .connect_local("ironbridge/line/rest")
        .await
        .unwrap();
    let rest = connection::start("line", "rest", spec, ConnectionTargetState::Connected, link);
    (observer, rest)
}

#[tokio::test]
async fn polls_reads_and_writes_with_status_and_survives_the_server_going_away() {
    let broker = broker().await;
    let received = Received::default();
    let stop = CancellationToken::new();
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        received.clone(),
        stop.clone(),
    )
    .await;
    let (mut observer, rest) = start_rest(&broker, addr).await;
    let mut query = endpoint("query", Operation::Read, "/query");
    if let Address::Http(address) = &mut query.address {
        address.query.insert("line".into(), "2".into());
    }
    let mut put = endpoint("setpointput", Operation::Write, "/setpoint");
    if let Address::Http(address) = &mut put.address {
        address.method = Some(HttpWriteMethod::Put);
    }
    for spec in [
        endpoint("machine", Operation::Subscribe, "/machine"),
        endpoint("state", Operation::Subscribe, "/state"),
        endpoint("broken", Operation::Subscribe, "/broken"),
        endpoint("slow", Operation::Subscribe, "/slow"),
        query,
        endpoint("setpoint", Operation::Write, "/setpoint"),
        put,
    ] {
        rest.add_endpoint(spec).await.unwrap();
    }
    wait_for_state(&rest, ConnectionState::Connected).await;

    // JSON bodies are values as they are; text is a string. The connection's headers, query
    // and basic authentication go with every request.
    let machine = next_on(&mut observer, "services/line/machine").await;
    assert_eq!(
        machine["value"],
        json!({"temperature": 21.5, "running": true})
    );
    assert!(machine["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        next_on(&mut observer, "services/line/state").await["value"],
        json!("running")
    );

    // A 5xx and an answer later than requestTimeout are errors of their endpoint only.
    assert_eq!(
        endpoint_error(&rest, "broken").await,
        "HTTP 503 Service Unavailable: maintenance"
    );
    assert_eq!(
        endpoint_error(&rest, "slow").await,
        "no answer within 500 ms"
    );
    assert_eq!(rest.status().state, ConnectionState::Connected);
    next_on(&mut observer, "services/line/machine").await;

    // `/req` answers with the body; connection and endpoint query variables are merged.
    send(&observer, "services/line/query/req", br#"{"id": 1}"#).await;
    let answer = next_on(&mut observer, "services/line/query/res").await;
    assert_eq!(
        answer["result"]["value"],
        json!({"plant": "p1", "line": "2"}),
        "{answer}"
    );

    // `/set` sends the value as JSON with the endpoint's method, answers status and body.
    send(
        &observer,
        "services/line/setpoint/set",
        br#"{"id": "a", "value": {"celsius": 80}}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/line/setpoint/res").await;
    assert_eq!(
        answer["result"]["value"],
        json!({"status": 201, "body": {"celsius": 80}}),
        "{answer}"
    );
    send(
        &observer,
        "services/line/setpointput/set",
        br#"{"id": "b", "value": 75}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/line/setpointput/res").await;
    assert_eq!(answer["result"]["value"]["status"], json!(201), "{answer}");
    assert_eq!(
        *received.lock().unwrap(),
        [
            ("POST".to_string(), json!({"celsius": 80})),
            ("PUT".to_string(), json!(75))
        ]
    );

    // The server goes away: the probe or the next poll notices, the connection reconnects
    // with back-off, and data flows again when the server is back on the same port.
    stop.cancel();
    wait_for_state(&rest, ConnectionState::Reconnecting).await;
    let error = rest.status().last_error.unwrap_or_default();
    assert!(
        error.contains("cannot reach the server") || error.contains("HEAD http://"),
        "{error}"
    );
    send(&observer, "services/line/query/req", br#"{"id": 2}"#).await;
    let answer = next_on(&mut observer, "services/line/query/res").await;
    assert_eq!(
        answer["error"]["message"],
        json!("not connected to the device")
    );

    serve(addr, received.clone(), CancellationToken::new()).await;
    wait_for_state(&rest, ConnectionState::Connected).await;
    let machine = next_on(&mut observer, "services/line/machine").await;
    assert_eq!(machine["value"]["temperature"], json!(21.5));

    rest.stop().await;
    assert_eq!(rest.status().state, ConnectionState::Disconnected);
}

#[tokio::test]
async fn a_refused_write_answers_with_the_status_as_its_code() {
    let broker = broker().await;
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        Received::default(),
        CancellationToken::new(),
    )
    .await;
    let (mut observer, rest) = start_rest(&broker, addr).await;
    let mut patch = endpoint("state", Operation::Write, "/state");
    if let Address::Http(address) = &mut patch.address {
        address.method = Some(HttpWriteMethod::Patch);
    }
    rest.add_endpoint(patch).await.unwrap();
    wait_for_state(&rest, ConnectionState::Connected).await;
    send(
        &observer,
        "services/line/state/set",
        br#"{"id": 7, "value": "stopped"}"#,
    )
    .await;
    let answer = next_on(&mut observer, "services/line/state/res").await;
    assert_eq!(answer["id"], json!(7));
    assert_eq!(answer["error"]["code"], json!(405), "{answer}");
    assert_eq!(
        answer["error"]["message"],
        json!("HTTP 405 Method Not Allowed"),
        "{answer}"
    );
    rest.stop().await;
}

/// An API behind OAuth 2.0: `/oauth/token` issues `tok-<n>` for the right client credentials,
/// each valid for one second; `/api/v1/secure` answers only the newest token.
fn oauth_app(issued: Arc<Mutex<u32>>) -> Router {
    let tokens = issued.clone();
    Router::new()
        .route(
            "/oauth/token",
            axum::routing::post(move |body: String| {
                let tokens = tokens.clone();
                async move {
                    let form: std::collections::HashMap<String, String> =
                        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    let right = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                        && form.get("client_id").map(String::as_str) == Some("gateway")
                        && form.get("client_secret").map(String::as_str) == Some("s3cret")
                        && form.get("audience").map(String::as_str) == Some("machines");
                    if !right {
                        return (StatusCode::UNAUTHORIZED, "invalid_client".to_string());
                    }
                    let mut issued = tokens.lock().unwrap();
                    *issued += 1;
                    let answer = json!({"access_token": format!("tok-{issued}"), "token_type": "Bearer", "expires_in": 1});
                    (StatusCode::OK, answer.to_string())
                }
            }),
        )
        .route(
            "/api/v1/secure",
            get(move |headers: HeaderMap| {
                let issued = issued.clone();
                async move {
                    let newest = format!("Bearer tok-{}", *issued.lock().unwrap());
                    match headers.get("authorization").is_some_and(|v| *v == *newest) {
                        true => (StatusCode::OK, r#"{"ok": true}"#),
                        false => (StatusCode::UNAUTHORIZED, "stale or missing token"),
                    }
                }
            }),
        )
}

#[tokio::test]
async fn oauth_client_credentials_are_exchanged_for_tokens_renewed_before_they_expire() {
    let broker = broker().await;
    let issued = Arc::new(Mutex::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, oauth_app(issued.clone())).into_future());
    let mut spec = connection_spec(addr);
    spec.auth = None;
    spec.oauth_client_credentials = Some(OAuthClientCredentials {
        auth_url: format!("http://{addr}/oauth/token"),
        client_id: "gateway".into(),
        client_secret: "s3cret".into(),
        grant_type: "client_credentials".into(),
        audience: Some("machines".into()),
    });
    let (mut observer, rest) = start_with(&broker, spec.clone()).await;
    rest.add_endpoint(endpoint("secure", Operation::Subscribe, "/secure"))
        .await
        .unwrap();
    wait_for_state(&rest, ConnectionState::Connected).await;
    assert_eq!(
        next_on(&mut observer, "services/line/secure").await["value"],
        json!({"ok": true})
    );
    // Tokens live one second: polls go on with renewed ones and never carry a stale token.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        *issued.lock().unwrap() >= 3,
        "{} tokens",
        issued.lock().unwrap()
    );
    assert_eq!(rest.endpoint_error("secure"), None);
    assert_eq!(
        next_on(&mut observer, "services/line/secure").await["value"],
        json!({"ok": true})
    );
    rest.stop().await;

    // Wrong credentials: the connection does not come up and says why.
    if let Some(oauth) = &mut spec.oauth_client_credentials {
        oauth.client_secret = "wrong".into();
    }
    let link = broker
        .handle()
        .connect_local("ironbridge/line/wrong")
        .await
        .unwrap();
    let wrong = connection::start(
        "line",
        "wrong",
        spec,
        ConnectionTargetState::Connected,
        link,
    );
    for _ in 0..100 {
        if wrong.status().last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = wrong.status().last_error.unwrap_or_default();
    assert!(
        error.contains("refused the client credentials: HTTP 401 Unauthorized: invalid_client"),
        "{error}"
    );
    assert_ne!(wrong.status().state, ConnectionState::Connected);
    wrong.stop().await;
}
