//! One Modbus TCP connection as an actor: connects with back-off, polls its subscribe endpoints
//! (batched when configured), answers `/req` and `/set`, and publishes data and its status
//! through an in-process broker link. A transport failure reconnects; a device exception is an
//! error for that endpoint only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::link::Link;
use commissioning::model::{
    Address, ConnectionTargetState, ModbusAddress, ModbusConnection, ModbusDataType, Operation,
};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_modbus::client::{Client, Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::{self, Read};
use super::codec;
use crate::backoff::Backoff;
use crate::driver::{self, Command, ConnectionHandle, End, EndpointSpec, Reporter};
use crate::envelope;
use crate::status::ConnectionState;

/// How long a request may take when the connection has no `socketTimeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the actor. `link` is the broker connection it publishes and subscribes through.
pub fn start(
    service: &str,
    resource: &str,
    spec: ModbusConnection,
    target: ConnectionTargetState,
    link: impl Into<Link>,
) -> ConnectionHandle {
    driver::spawn(service, resource, target, link, move |side| {
        let actor = Actor {
            backoff: Backoff::new(spec.connection_strategy.as_ref()),
            timeout: spec
                .socket_timeout
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            spec,
            target,
            commands: side.commands,
            stop: side.stop,
            report: side.reporter,
            endpoints: BTreeMap::new(),
        };
        actor.run()
    })
}

struct Endpoint {
    spec: EndpointSpec,
    address: ModbusAddress,
    schedule: Option<cron::Schedule>,
    next_due: Instant,
}

struct Actor {
    spec: ModbusConnection,
    target: ConnectionTargetState,
    backoff: Backoff,
    timeout: Duration,
    commands: mpsc::Receiver<Command>,
    stop: CancellationToken,
    report: Reporter,
    endpoints: BTreeMap<String, Endpoint>,
}

impl Actor {
    async fn run(mut self) {
        if self.target == ConnectionTargetState::Disconnected {
            self.report
                .set_state(ConnectionState::Disconnected, None)
                .await;
            self.idle_until_stopped().await;
            self.report.link.disconnect().await;
            return;
        }
        let mut state = ConnectionState::Connecting;
        loop {
            self.report.set_state(state, None).await;
            let connected = tokio::select! {
                _ = self.stop.cancelled() => break,
                connected = self.connect() => connected,
            };
            match connected {
                Ok(mut context) => {
                    self.backoff.reset();
                    info!(connection = %self.report.label, "Modbus connection established");
                    self.report
                        .set_state(ConnectionState::Connected, None)
                        .await;
                    match self.connected(&mut context).await {
                        End::Stopped => {
                            let _ = context.disconnect().await;
                            break;
                        }
                        End::Lost(error) => {
                            warn!(connection = %self.report.label, error = %error, "Modbus connection lost");
                            let _ = context.disconnect().await;
                            self.report
                                .set_state(ConnectionState::Reconnecting, Some(error))
                                .await;
                        }
                    }
                }
                Err(error) => {
                    debug!(connection = %self.report.label, error = %error, "Modbus connect failed");
                    self.report.set_state(state, Some(error)).await;
                }
            }
            state = ConnectionState::Reconnecting;
            let delay = self.backoff.next_delay(rand::random());
            if !self.wait_disconnected(delay).await {
                break;
            }
        }
        self.report
            .set_state(ConnectionState::Disconnected, None)
            .await;
        self.report.link.disconnect().await;
    }

    async fn connect(&self) -> Result<Context, String> {
        let target = format!("{}:{}", self.spec.host, self.spec.port);
        let attempt = async {
            let addr: SocketAddr = tokio::net::lookup_host(&target)
                .await
                .map_err(|e| format!("cannot resolve {target}: {e}"))?
                .next()
                .ok_or_else(|| format!("{target} resolves to no address"))?;
            tokio_modbus::client::tcp::connect_slave(addr, Slave(self.spec.unit_id))
                .await
                .map_err(|e| format!("cannot connect to {target}: {e}"))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "connecting to {target} timed out after {} ms",
                    self.timeout.as_millis()
                ))
            })
    }

    /// While not connected: keep accepting endpoint changes and answer requests with an error,
    /// until the delay is over (true) or the connection is stopped (false).
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                _ = tokio::time::sleep_until(deadline) => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => return false,
                },
                delivery = self.report.link.recv() => {
                    let Some(delivery) = delivery else { return false };
                    if let Some(id) = self.request_target(&delivery.message.topic) {
                        self.report.refuse_request(&self.endpoints[&id].spec, &delivery.message.payload).await;
                    }
                }
            }
        }
    }

    async fn idle_until_stopped(&mut self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => return,
                },
            }
        }
    }

    async fn apply(&mut self, command: Command) {
        match command {
            Command::Add(spec, reply) => {
                let result = self.add(*spec).await;
                let _ = reply.send(result);
            }
            Command::Remove(id, reply) => {
                if let Some(endpoint) = self.endpoints.remove(&id) {
                    self.report.forget(&endpoint.spec).await;
                }
                let _ = reply.send(());
            }
        }
    }

    async fn add(&mut self, spec: EndpointSpec) -> Result<(), String> {
        let Address::Modbus(address) = spec.address.clone() else {
            return Err("a Modbus connection only runs Modbus endpoints".into());
        };
        let schedule = match &address.cron_expression {
            Some(expression) => Some(commissioning::model::parse_cron(expression)?),
            None => None,
        };
        self.report.listen_for_requests(&spec).await?;
        let next_due = next_run(&address, schedule.as_ref(), Instant::now(), true);
        self.endpoints.insert(
            spec.id.clone(),
            Endpoint {
                spec,
                address,
                schedule,
                next_due,
            },
        );
        Ok(())
    }

    async fn connected(&mut self, context: &mut Context) -> End {
        loop {
            let next_due = self
                .endpoints
                .values()
                .filter(|e| e.spec.operation == Operation::Subscribe)
                .map(|e| e.next_due)
                .min();
            let sleep = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return End::Stopped,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => return End::Stopped,
                },
                delivery = self.report.link.recv() => {
                    let Some(delivery) = delivery else { return End::Stopped };
                    if let Err(error) = self.handle_request(context, &delivery.message.topic, &delivery.message.payload).await {
                        return End::Lost(error);
                    }
                }
                _ = sleep => {
                    if let Err(error) = self.poll_due(context).await {
                        return End::Lost(error);
                    }
                }
            }
        }
    }

    /// Reads every subscribe endpoint that is due, in as few requests as batching allows.
    async fn poll_due(&mut self, context: &mut Context) -> Result<(), String> {
        let now = Instant::now();
        let due: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(_, e)| e.spec.operation == Operation::Subscribe && e.next_due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let reads: Vec<Read> = due
            .iter()
            .map(|id| self.read_of(&self.endpoints[id].address))
            .collect();
        let plan = batch::plan(
            &reads,
            self.spec.batch_read_enabled,
            self.spec.max_batch_size,
        );
        for request in plan {
            let outcome = self
                .read(
                    context,
                    request.unit,
                    request.fc,
                    request.address,
                    request.count,
                )
                .await?;
            let timestamp = envelope::now_millis();
            for member in request.members {
                let id = &due[member];
                let read = reads[member];
                let result = outcome.as_ref().map_err(Clone::clone).and_then(|data| {
                    let offset = usize::from(read.address - request.address);
                    data.slice(
                        offset,
                        usize::from(read.count),
                        self.endpoints[id].address.data_type,
                    )
                });
                self.publish_reading(id, result, timestamp).await;
            }
        }
        let now = Instant::now();
        for id in due {
            if let Some(endpoint) = self.endpoints.get_mut(&id) {
                endpoint.next_due = match endpoint.schedule {
                    Some(_) => next_run(&endpoint.address, endpoint.schedule.as_ref(), now, false),
                    // Fixed rate: the next poll is one interval after the previous one was due,
                    // not after it finished, so slow answers do not stretch the period. A poll
                    // that fell behind runs once at once rather than in a burst.
                    None => (endpoint.next_due + interval(&endpoint.address)).max(now),
                };
            }
        }
        Ok(())
    }

    async fn publish_reading(&self, id: &str, result: Result<Json, String>, timestamp: i64) {
        let Some(endpoint) = self.endpoints.get(id) else {
            return;
        };
        match result {
            Ok(value) => {
                self.report
                    .publish_data(&endpoint.spec, value, timestamp)
                    .await
            }
            Err(error) => self.report.endpoint_failed(id, error),
        }
    }

    fn read_of(&self, address: &ModbusAddress) -> Read {
        Read {
            unit: address.unit_id.unwrap_or(self.spec.unit_id),
            fc: address.fc,
            address: address.address,
            count: address.length,
        }
    }

    /// One read on the wire. `Err` is a transport failure (reconnect); `Ok(Err)` is the device
    /// refusing (an exception), which only concerns the endpoints of this read.
    async fn read(
        &self,
        context: &mut Context,
        unit: u8,
        fc: u8,
        address: u16,
        count: u16,
    ) -> Result<Result<Data, String>, String> {
        context.set_slave(Slave(unit));
        let call = async {
            match fc {
                1 => context
                    .read_coils(address, count)
                    .await
                    .map(|r| r.map(Data::Bits)),
                2 => context
                    .read_discrete_inputs(address, count)
                    .await
                    .map(|r| r.map(Data::Bits)),
                3 => context
                    .read_holding_registers(address, count)
                    .await
                    .map(|r| r.map(Data::Words)),
                _ => context
                    .read_input_registers(address, count)
                    .await
                    .map(|r| r.map(Data::Words)),
            }
        };
        let answer = layers(tokio::time::timeout(self.timeout, call).await, self.timeout)?;
        Ok(answer.map_err(exception_message))
    }

    fn request_target(&self, topic: &str) -> Option<String> {
        self.endpoints
            .iter()
            .find_map(|(id, e)| e.spec.is_request_topic(topic).then(|| id.clone()))
    }

    /// Answers a `/req` (read now) or `/set` (write) on `/res`.
    async fn handle_request(
        &mut self,
        context: &mut Context,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        let Some(id) = self.request_target(topic) else {
            return Ok(());
        };
        let endpoint = &self.endpoints[&id];
        let (spec, address) = (endpoint.spec.clone(), endpoint.address.clone());
        let request = match envelope::parse_request(payload) {
            Ok(request) => request,
            Err(error) => {
                let answer = envelope::error(None, &error, None, envelope::now_millis());
                self.report.answer(&spec, answer).await;
                return Ok(());
            }
        };
        let outcome: Result<Json, (String, Option<Json>)> = match spec.operation {
            Operation::Write => self.write(context, &address, &request.value).await?,
            _ => {
                let read = self.read_of(&address);
                match self
                    .read(context, read.unit, read.fc, read.address, read.count)
                    .await?
                {
                    Ok(data) => data
                        .slice(0, usize::from(read.count), address.data_type)
                        .map_err(|e| (e, None)),
                    Err(e) => Err((e, None)),
                }
            }
        };
        let answer = match outcome {
            Ok(value) => envelope::result(request.id, value, envelope::now_millis()),
            Err((message, code)) => {
                envelope::error(request.id, &message, code, envelope::now_millis())
            }
        };
        self.report.answer(&spec, answer).await;
        Ok(())
    }

    /// Writes a value. Outer `Err` is a transport failure; inner `Err` an error for the caller
    /// (bad value or device exception) with the Modbus exception code when there is one.
    async fn write(
        &self,
        context: &mut Context,
        target: &ModbusAddress,
        value: &Json,
    ) -> Result<Result<Json, (String, Option<Json>)>, String> {
        let address = target.address;
        context.set_slave(Slave(target.unit_id.unwrap_or(self.spec.unit_id)));
        let encoded = match target.fc {
            5 | 15 => codec::encode_bits(value).map(Data::Bits),
            _ => {
                let length = target.data_type.map_or(target.length, |t| match t {
                    ModbusDataType::StringBe
                    | ModbusDataType::StringLe
                    | ModbusDataType::Raw
                    | ModbusDataType::Base64 => target.length,
                    other => codec::registers_for(other, target.length),
                });
                codec::encode_registers(value, target.data_type, length).map(Data::Words)
            }
        };
        let data = match encoded {
            Ok(data) => data,
            Err(e) => return Ok(Err((e.to_string(), None))),
        };
        let call = async {
            match (target.fc, &data) {
                (5, Data::Bits(bits)) if bits.len() == 1 => {
                    context.write_single_coil(address, bits[0]).await
                }
                (6, Data::Words(words)) if words.len() == 1 => {
                    context.write_single_register(address, words[0]).await
                }
                (5 | 15, Data::Bits(bits)) => context.write_multiple_coils(address, bits).await,
                (_, Data::Words(words)) => context.write_multiple_registers(address, words).await,
                (_, Data::Bits(bits)) => context.write_multiple_coils(address, bits).await,
            }
        };
        let answer = layers(tokio::time::timeout(self.timeout, call).await, self.timeout)?;
        Ok(answer.map(|()| value.clone()).map_err(|exception| {
            (
                exception_message(exception),
                Some(Json::from(u8::from(exception))),
            )
        }))
    }
}

/// What a read returned.
#[derive(Debug, Clone)]
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

impl Data {
    /// The part of a (possibly batched) read that belongs to one endpoint, decoded.
    fn slice(
        &self,
        offset: usize,
        count: usize,
        data_type: Option<commissioning::model::ModbusDataType>,
    ) -> Result<Json, String> {
        match self {
            Data::Words(words) => {
                let part = words
                    .get(offset..offset + count)
                    .ok_or("the device answered fewer registers than asked for")?;
                codec::decode_registers(part, data_type).map_err(|e| e.to_string())
            }
            Data::Bits(bits) => {
                let part = bits
                    .get(offset..offset + count)
                    .ok_or("the device answered fewer coils than asked for")?;
                Ok(codec::decode_bits(part))
            }
        }
    }
}

/// A call's outcome in tokio-modbus's two layers: `Err` when the transport failed or timed out
/// (the connection reconnects), `Ok(Err)` when the device answered with an exception.
fn layers<T>(
    outcome: Result<tokio_modbus::Result<T>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<Result<T, ExceptionCode>, String> {
    match outcome {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Err(format!("transport error: {e}")),
        Ok(Ok(answer)) => Ok(answer),
    }
}

fn exception_message(exception: ExceptionCode) -> String {
    format!("Modbus exception {:#04x}: {exception}", u8::from(exception))
}

/// When a subscribe endpoint reads next: right away when added, then every `interval` ms
/// (default 1000) or at the cron schedule's next time.
fn next_run(
    address: &ModbusAddress,
    schedule: Option<&cron::Schedule>,
    now: Instant,
    first: bool,
) -> Instant {
    if let Some(schedule) = schedule {
        let wall = chrono::Utc::now();
        return schedule
            .after(&wall)
            .next()
            .and_then(|at| (at - wall).to_std().ok())
            .map_or(now + Duration::from_secs(3600), |wait| now + wait);
    }
    if first {
        return now;
    }
    now + interval(address)
}

fn interval(address: &ModbusAddress) -> Duration {
    Duration::from_millis(address.interval.unwrap_or(1000).max(1))
}
