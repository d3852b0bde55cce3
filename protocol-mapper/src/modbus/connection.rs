//! The Modbus driver (TCP, RTU over TCP, RTU on a serial line): polls its subscribe endpoints (batched when configured), reads and
//! writes for `/req` and `/set`. A transport failure (I/O error, timeout) loses the session, and
//! the shared state machine reconnects; a device exception is an error for the endpoints of
//! that request only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker::bus::Link;
use commissioning::model::{
    Address, ConnectionTargetState, ModbusAddress, ModbusConnection, ModbusDataType,
    ModbusTransport, Operation,
};
use futures_util::future::BoxFuture;
use serde_json::Value as Json;
use tokio_modbus::client::{Client, Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use super::batch::{self, Read};
use super::codec;
use crate::backoff::Backoff;
use crate::driver::{
    self, ConnectionHandle, Driver, DriverError, EndpointSpec, PolledEndpoints, Refusal, Reporter,
};
use crate::envelope;

/// How long a request may take when the connection has no `socketTimeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a Modbus TCP connection. `link` is the broker connection it publishes and subscribes
/// through.
pub fn start(
    service: &str,
    resource: &str,
    spec: ModbusConnection,
    target: ConnectionTargetState,
    link: impl Into<Link>,
) -> ConnectionHandle {
    driver::spawn(ModbusDriver::new(spec), service, resource, target, link)
}

pub(crate) struct ModbusDriver {
    spec: ModbusConnection,
    timeout: Duration,
    /// RTU on a serial line: the silence between frames, and when the line last fell quiet.
    frame_gap: Option<Duration>,
    quiet_since: Option<Instant>,
    endpoints: PolledEndpoints<ModbusAddress>,
}

impl ModbusDriver {
    pub fn new(spec: ModbusConnection) -> ModbusDriver {
        ModbusDriver {
            frame_gap: (spec.transport == ModbusTransport::Rtu)
                .then(|| super::serial::frame_gap(&spec)),
            quiet_since: None,
            timeout: spec
                .socket_timeout
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            spec,
            endpoints: PolledEndpoints::default(),
        }
    }
}

/// A poll is due.
pub(crate) struct Due;

impl Driver for ModbusDriver {
    const PROTOCOL: &'static str = "Modbus";
    type Session = Context;
    type Wake = Due;

    fn backoff(&self) -> Backoff {
        Backoff::new(self.spec.connection_strategy.as_ref())
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<Context, DriverError>> {
        let spec = self.spec.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let target = match spec.transport {
                ModbusTransport::Rtu => spec.device.clone().unwrap_or_default(),
                _ => format!("{}:{}", spec.host, spec.port),
            };
            tokio::time::timeout(timeout, open(&spec, &target))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "connecting to {target} timed out after {} ms",
                        timeout.as_millis()
                    ))
                })
                .map_err(DriverError::Connection)
        })
    }

    async fn on_connected(&mut self, _: &mut Context, _: &Reporter) -> Result<(), DriverError> {
        Ok(())
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut Context>) -> Due {
        let next_due = self.endpoints.next_due();
        match (session, next_due) {
            (Some(_), Some(due)) => tokio::time::sleep_until(due.into()).await,
            _ => std::future::pending().await,
        }
        Due
    }

    async fn work(
        &mut self,
        Due: Due,
        session: Option<&mut Context>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        match session {
            Some(context) => self.poll_due(context, report).await,
            None => Ok(()),
        }
    }

    async fn add_endpoint(
        &mut self,
        spec: EndpointSpec,
        _: Option<&mut Context>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        let Address::Modbus(address) = spec.address.clone() else {
            return Err(DriverError::Endpoint(
                "a Modbus connection only runs Modbus endpoints".into(),
            ));
        };
        let (interval, cron) = (address.interval, address.cron_expression.clone());
        self.endpoints
            .insert(spec, address, interval, cron.as_deref())
    }

    async fn remove_endpoint(&mut self, id: &str, _: Option<&mut Context>) {
        self.endpoints.remove(id);
    }

    async fn request(
        &mut self,
        id: &str,
        value: Json,
        context: &mut Context,
        _: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        let Some(endpoint) = self.endpoints.get(id) else {
            return Ok(Err(Refusal::new("the endpoint has been removed")));
        };
        let (operation, address) = (endpoint.spec.operation, endpoint.address.clone());
        if operation == Operation::Write {
            return self.write(context, &address, &value).await;
        }
        let read = self.read_of(&address);
        let data = self
            .read(context, read.unit, read.fc, read.address, read.count)
            .await?;
        Ok(data.and_then(|data| {
            data.slice(0, usize::from(read.count), address.data_type)
                .map_err(Refusal::new)
        }))
    }

    async fn close(&mut self, mut context: Context) {
        let _ = context.disconnect().await;
    }
}

/// Opens a session over the connection's transport: Modbus TCP, RTU frames over TCP (a
/// serial gateway), or RTU on a serial line.
async fn open(spec: &ModbusConnection, target: &str) -> Result<Context, String> {
    let unit = Slave(spec.unit_id);
    if spec.transport == ModbusTransport::Rtu {
        let line = super::serial::open(spec)?;
        return Ok(tokio_modbus::client::rtu::attach_slave(line, unit));
    }
    let addr: SocketAddr = tokio::net::lookup_host(target)
        .await
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))?;
    if spec.transport == ModbusTransport::RtuOverTcp {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        return Ok(tokio_modbus::client::rtu::attach_slave(stream, unit));
    }
    tokio_modbus::client::tcp::connect_slave(addr, unit)
        .await
        .map_err(|e| format!("cannot connect to {target}: {e}"))
}

impl ModbusDriver {
    /// Waits out the silence the line needs since the last frame (RTU on a serial line only).
    async fn pace(&mut self) {
        if let (Some(gap), Some(quiet_since)) = (self.frame_gap, self.quiet_since) {
            tokio::time::sleep_until((quiet_since + gap).into()).await;
        }
    }

    /// Reads every subscribe endpoint that is due, in as few requests as batching allows.
    async fn poll_due(
        &mut self,
        context: &mut Context,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        let now = Instant::now();
        let due = self.endpoints.due(now);
        let reads: Vec<Read> = due
            .iter()
            .map(|(_, address)| self.read_of(address))
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
                let id = &due[member].0;
                let read = reads[member];
                let Some(endpoint) = self.endpoints.get(id) else {
                    continue;
                };
                let result = outcome
                    .as_ref()
                    .map_err(|r| r.message.clone())
                    .and_then(|data| {
                        let offset = usize::from(read.address - request.address);
                        data.slice(offset, usize::from(read.count), endpoint.address.data_type)
                    });
                match result {
                    Ok(value) => report.publish_data(&endpoint.spec, value, timestamp).await,
                    Err(error) => report.endpoint_failed(id, error),
                }
            }
        }
        let now = Instant::now();
        self.endpoints.polled_at(&due, now);
        Ok(())
    }

    fn read_of(&self, address: &ModbusAddress) -> Read {
        Read {
            unit: address.unit_id.unwrap_or(self.spec.unit_id),
            fc: address.fc,
            address: address.address,
            count: address.length,
        }
    }

    /// One read on the wire. `Err` is a transport failure (the session is lost); `Ok(Err)` is
    /// the device refusing (an exception), which only concerns the endpoints of this read.
    async fn read(
        &mut self,
        context: &mut Context,
        unit: u8,
        fc: u8,
        address: u16,
        count: u16,
    ) -> Result<Result<Data, Refusal>, DriverError> {
        self.pace().await;
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
        let answered = tokio::time::timeout(self.timeout, call).await;
        self.quiet_since = Some(Instant::now());
        let answer = layers(answered, self.timeout)?;
        Ok(answer.map_err(refusal))
    }

    /// Writes a value. `Err` is a transport failure; `Ok(Err)` an error for the caller (bad
    /// value or device exception) with the Modbus exception code when there is one.
    async fn write(
        &mut self,
        context: &mut Context,
        target: &ModbusAddress,
        value: &Json,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        let address = target.address;
        self.pace().await;
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
            Err(e) => return Ok(Err(Refusal::new(e.to_string()))),
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
        let answered = tokio::time::timeout(self.timeout, call).await;
        self.quiet_since = Some(Instant::now());
        let answer = layers(answered, self.timeout)?;
        Ok(answer.map(|()| value.clone()).map_err(refusal))
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
) -> Result<Result<T, ExceptionCode>, DriverError> {
    match outcome {
        Err(_) => Err(DriverError::Connection(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
        Ok(Err(e)) => Err(DriverError::Connection(format!("transport error: {e}"))),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// A device exception as the answer to a request: its text and its code.
fn refusal(exception: ExceptionCode) -> Refusal {
    Refusal::with_code(
        format!("Modbus exception {:#04x}: {exception}", u8::from(exception)),
        u8::from(exception),
    )
}
