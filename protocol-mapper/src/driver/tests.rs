//! The connection state machine with a scripted driver on the real broker, on tokio's paused
//! clock: back-off delays are exact virtual time, and no test sleeps on the wall clock.
//!
//! The driver here is a script (which attempts fail, what a request answers), not a stand-in
//! for a device: what is under test is the machine every real driver runs on.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{AnonymousOnly, Broker, BrokerConfig, LocalClient, Message, QoS};
use commissioning::model::{
    Address, ConnectionStrategy, ConnectionTargetState, ModbusAddress, Operation,
};
use futures_util::future::BoxFuture;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

const STATUS: &str = "$SYS/ironbridge/services/line/connections/plc/status";

/// What the scripted driver will do, and what it was asked to do.
struct Script {
    prepare: Result<(), DriverError>,
    /// Outcomes of the next connect attempts; attempts beyond the list succeed.
    attempts: VecDeque<Result<(), DriverError>>,
    /// How long each attempt takes.
    connect_takes: Duration,
    /// When each attempt started.
    attempted_at: Vec<Instant>,
    /// Everything else the machine called, in order.
    calls: Vec<String>,
}

struct Scripted {
    script: Arc<Mutex<Script>>,
    /// Each message makes `work` fail with it: the session is lost.
    failures: mpsc::UnboundedReceiver<DriverError>,
    sessions: u32,
}

impl Scripted {
    fn log(&self, call: String) {
        self.script.lock().unwrap().calls.push(call);
    }
}

impl Driver for Scripted {
    const PROTOCOL: &'static str = "Scripted";
    type Session = u32;
    type Wake = DriverError;

    fn backoff(&self) -> Backoff {
        Backoff::new(Some(&ConnectionStrategy {
            initial_delay: 100,
            increment_factor: 2.0,
            max_delay: 400,
        }))
    }

    async fn prepare(&mut self) -> Result<(), DriverError> {
        self.log("prepare".into());
        self.script.lock().unwrap().prepare.clone()
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<u32, DriverError>> {
        self.sessions += 1;
        let session = self.sessions;
        let script = self.script.clone();
        Box::pin(async move {
            let takes = {
                let mut script = script.lock().unwrap();
                script.attempted_at.push(Instant::now());
                script.connect_takes
            };
            tokio::time::sleep(takes).await;
            let outcome = script.lock().unwrap().attempts.pop_front();
            outcome.unwrap_or(Ok(())).map(|()| session)
        })
    }

    async fn on_connected(&mut self, session: &mut u32, _: &Reporter) -> Result<(), DriverError> {
        self.log(format!("on_connected {session}"));
        Ok(())
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut u32>) -> DriverError {
        match session {
            Some(_) => match self.failures.recv().await {
                Some(failure) => failure,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    async fn work(
        &mut self,
        failure: DriverError,
        _: Option<&mut u32>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        Err(failure)
    }

    async fn add_endpoint(
        &mut self,
        endpoint: EndpointSpec,
        session: Option<&mut u32>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        if endpoint.id == "line::other-protocol" {
            return Err(DriverError::Endpoint("not mine".into()));
        }
        self.log(format!("add {} (session {session:?})", endpoint.id));
        Ok(())
    }

    async fn remove_endpoint(&mut self, id: &str, _: Option<&mut u32>) {
        self.log(format!("remove {id}"));
    }

    async fn request(
        &mut self,
        endpoint: &str,
        value: Json,
        session: &mut u32,
        _: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        match value.as_str() {
            Some("refuse") => Ok(Err(Refusal::with_code("the device says no", 2))),
            Some("vanish") => Err(DriverError::Connection("the device went away".into())),
            _ => Ok(Ok(json!({ "endpoint": endpoint, "session": *session }))),
        }
    }

    async fn close(&mut self, session: u32) {
        self.log(format!("close {session}"));
    }

    async fn shutdown(&mut self, _: &Reporter) {
        self.log("shutdown".into());
    }
}

struct Rig {
    _broker: Broker,
    observer: LocalClient,
    handle: ConnectionHandle,
    script: Arc<Mutex<Script>>,
    fail: mpsc::UnboundedSender<DriverError>,
}

impl Rig {
    async fn start(target: ConnectionTargetState, script: Script) -> Rig {
        let broker = Broker::start(
            BrokerConfig {
                allow_anonymous: true,
                ..BrokerConfig::default()
            },
            Arc::new(AnonymousOnly {
                allow_anonymous: true,
            }),
        )
        .unwrap();
        let mut observer = broker
            .handle()
            .connect_local("test/observer")
            .await
            .unwrap();
        for filter in [STATUS, "services/line/#"] {
            observer.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        }
        let link = broker
            .handle()
            .connect_local("ironbridge/line/plc")
            .await
            .unwrap();
        let script = Arc::new(Mutex::new(script));
        let (fail, failures) = mpsc::unbounded_channel();
        let driver = Scripted {
            script: script.clone(),
            failures,
            sessions: 0,
        };
        let handle = spawn(driver, "line", "plc", target, link);
        Rig {
            _broker: broker,
            observer,
            handle,
            script,
            fail,
        }
    }

    /// The next message on `topic` as JSON, skipping others.
    async fn next_on(&mut self, topic: &str) -> Json {
        let wait = async {
            loop {
                let delivery = self.observer.recv().await.unwrap();
                if &delivery.message.topic[..] == topic {
                    return serde_json::from_slice(&delivery.message.payload).unwrap();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("nothing on {topic} within a virtual minute"))
    }

    /// The next published status as (state, lastError).
    async fn next_status(&mut self) -> (String, Option<String>) {
        let status = self.next_on(STATUS).await;
        (
            status["state"].as_str().unwrap().to_string(),
            status["lastError"].as_str().map(str::to_string),
        )
    }

    async fn request(&mut self, topic: &str, value: &str) -> Json {
        let payload = json!({ "id": 7, "value": value }).to_string();
        self.observer
            .publish(Message::new(topic, payload, QoS::AtLeastOnce, false))
            .await
            .unwrap();
        self.next_on("services/line/speed/res").await
    }

    fn attempts(&self) -> Vec<Instant> {
        self.script.lock().unwrap().attempted_at.clone()
    }

    fn calls(&self) -> Vec<String> {
        self.script.lock().unwrap().calls.clone()
    }
}

fn script(attempts: Vec<Result<(), DriverError>>) -> Script {
    Script {
        prepare: Ok(()),
        attempts: attempts.into(),
        connect_takes: Duration::ZERO,
        attempted_at: Vec::new(),
        calls: Vec::new(),
    }
}

fn refused() -> Result<(), DriverError> {
    Err(DriverError::Connection("connection refused".into()))
}

fn read_endpoint(id: &str) -> EndpointSpec {
    EndpointSpec {
        id: format!("line::{id}"),
        topic: format!("services/line/{id}"),
        operation: Operation::Read,
        address: Address::Modbus(ModbusAddress {
            fc: 3,
            address: 0,
            length: 1,
            data_type: None,
            unit_id: None,
            interval: None,
            cron_expression: None,
        }),
        qos: QoS::AtMostOnce,
        retain: false,
        rules: None,
    }
}

fn state(state: &str, error: Option<&str>) -> (String, Option<String>) {
    (state.to_string(), error.map(str::to_string))
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_back_off_and_every_state_is_published_with_the_last_error() {
    let mut rig = Rig::start(
        ConnectionTargetState::Connected,
        script(vec![refused(), refused()]),
    )
    .await;
    assert_eq!(rig.next_status().await, state("connecting", None));
    assert_eq!(
        rig.next_status().await,
        state("connecting", Some("connection refused")),
        "the first attempt's failure stays `connecting` with the reason"
    );
    assert_eq!(
        rig.next_status().await,
        state("reconnecting", Some("connection refused")),
        "later attempts are `reconnecting`, and the last error stays until connected"
    );
    assert_eq!(rig.next_status().await, state("connected", None));

    let at = rig.attempts();
    let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps.len(), 2, "three attempts: {gaps:?}");
    assert!(
        (80..=100).contains(&gaps[0]),
        "initialDelay 100 ms, up to 20 % jitter: {gaps:?}"
    );
    assert!(
        (160..=200).contains(&gaps[1]),
        "times incrementFactor 2: {gaps:?}"
    );

    // Losing the session: reconnecting with its reason, then connected on a new session, with
    // the back-off started afresh.
    rig.fail
        .send(DriverError::Connection("link dropped".into()))
        .unwrap();
    assert_eq!(
        rig.next_status().await,
        state("reconnecting", Some("link dropped"))
    );
    assert_eq!(rig.next_status().await, state("connected", None));
    let at = rig.attempts();
    let gap = (at[3] - at[2]).as_millis();
    assert!(gap <= 100, "a success resets the back-off: {gap} ms");
    assert_eq!(
        rig.calls(),
        ["prepare", "on_connected 3", "close 3", "on_connected 4"]
    );
    let traffic = rig.handle.traffic();
    assert_eq!(
        (traffic.failed_attempts, traffic.sessions_lost),
        (2, 1),
        "{traffic:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn what_retrying_cannot_fix_leaves_the_connection_disconnected_with_the_reason() {
    let mut broken = script(Vec::new());
    broken.prepare = Err(DriverError::Configuration(
        "the client certificate does not parse".into(),
    ));
    let mut rig = Rig::start(ConnectionTargetState::Connected, broken).await;
    assert_eq!(
        rig.next_status().await,
        state(
            "disconnected",
            Some("the client certificate does not parse")
        )
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(rig.attempts().is_empty(), "never attempted");

    // The same from an attempt: no more attempts after it.
    let mut rig = Rig::start(
        ConnectionTargetState::Connected,
        script(vec![Err(DriverError::Configuration(
            "no endpoint with Basic256Sha256".into(),
        ))]),
    )
    .await;
    assert_eq!(rig.next_status().await, state("connecting", None));
    assert_eq!(
        rig.next_status().await,
        state("disconnected", Some("no endpoint with Basic256Sha256"))
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rig.attempts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_target_never_connects_yet_takes_endpoints_and_answers_requests() {
    let mut rig = Rig::start(ConnectionTargetState::Disconnected, script(Vec::new())).await;
    assert_eq!(rig.next_status().await, state("disconnected", None));
    rig.handle
        .add_endpoint(read_endpoint("speed"))
        .await
        .unwrap();
    let answer = rig.request("services/line/speed/req", "now").await;
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["error"]["message"], "not connected to the device");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(rig.attempts().is_empty());
    assert_eq!(rig.calls(), ["prepare", "add line::speed (session None)"]);
}

#[tokio::test(start_paused = true)]
async fn requests_reach_the_driver_only_while_connected_and_every_one_is_answered() {
    let mut slow = script(Vec::new());
    slow.connect_takes = Duration::from_secs(10);
    let mut rig = Rig::start(ConnectionTargetState::Connected, slow).await;
    assert_eq!(rig.next_status().await, state("connecting", None));

    // A slow connect holds up neither the supervisor nor requests.
    let added_at = Instant::now();
    rig.handle
        .add_endpoint(read_endpoint("speed"))
        .await
        .unwrap();
    assert!(added_at.elapsed() < Duration::from_secs(1));
    let error = rig
        .handle
        .add_endpoint(read_endpoint("other-protocol"))
        .await
        .unwrap_err();
    assert_eq!(error, DriverError::Endpoint("not mine".into()));
    let answer = rig.request("services/line/speed/req", "now").await;
    assert_eq!(answer["error"]["message"], "not connected to the device");

    assert_eq!(rig.next_status().await, state("connected", None));
    let answer = rig.request("services/line/speed/req", "now").await;
    assert_eq!(answer["id"], 7);
    assert_eq!(
        answer["result"]["value"],
        json!({ "endpoint": "line::speed", "session": 1 })
    );
    let answer = rig.request("services/line/speed/req", "refuse").await;
    assert_eq!(answer["error"]["message"], "the device says no");
    assert_eq!(answer["error"]["code"], 2);
    rig.observer
        .publish(Message::new(
            "services/line/speed/req",
            "{",
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .unwrap();
    let malformed = rig.next_on("services/line/speed/res").await;
    let message = malformed["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the request is not JSON"), "{message}");

    // A request the session dies on is still answered, and the connection reconnects.
    let answer = rig.request("services/line/speed/req", "vanish").await;
    assert_eq!(answer["error"]["message"], "the device went away");
    assert_eq!(
        rig.next_status().await,
        state("reconnecting", Some("the device went away"))
    );

    // A removed endpoint's requests go nowhere.
    rig.handle.remove_endpoint("line::speed").await;
    assert!(rig.calls().contains(&"remove line::speed".to_string()));

    // Five answers: one result; not connected, refused, malformed and vanished are errors.
    let traffic = rig.handle.traffic();
    assert_eq!(
        (
            traffic.requests,
            traffic.requests_failed,
            traffic.sessions_lost
        ),
        (5, 4, 1),
        "{traffic:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_closes_the_session_and_publishes_disconnected() {
    let mut rig = Rig::start(ConnectionTargetState::Connected, script(Vec::new())).await;
    assert_eq!(rig.next_status().await, state("connecting", None));
    assert_eq!(rig.next_status().await, state("connected", None));
    rig.handle.stop().await;
    assert_eq!(rig.next_status().await, state("disconnected", None));
    assert_eq!(
        rig.calls(),
        ["prepare", "on_connected 1", "close 1", "shutdown"]
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_during_an_attempt_abandons_it() {
    let mut slow = script(Vec::new());
    slow.connect_takes = Duration::from_secs(3600);
    let mut rig = Rig::start(ConnectionTargetState::Connected, slow).await;
    assert_eq!(rig.next_status().await, state("connecting", None));
    rig.handle.stop().await;
    assert_eq!(rig.next_status().await, state("disconnected", None));
    assert_eq!(rig.calls(), ["prepare", "shutdown"]);
}
