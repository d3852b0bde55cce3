//! The S7 driver: polls its subscribe endpoints (every variable due in one poll read in as few
//! requests as the PDU allows), reads and writes for `/req` and `/set`. A transport failure
//! loses the session and the shared state machine reconnects; a CPU refusing a request or an
//! item is an error of the endpoints concerned only.

use std::time::{Duration, Instant};

use broker::bus::Link;
use commissioning::model::{Address, ConnectionTargetState, Operation, S7Connection};
use commissioning::s7_address::S7Variable;
use futures_util::future::BoxFuture;
use serde_json::Value as Json;

use super::client::{Failure, Session, Settings};
use super::codec::{self, Encoded};
use super::frame;
use super::pdu::{self, Place, ReadItem, WriteItem};
use super::plan::{self, Wanted};
use crate::backoff::Backoff;
use crate::driver::{
    self, ConnectionHandle, Driver, DriverError, EndpointSpec, PolledEndpoints, Refusal, Reporter,
};
use crate::envelope;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// What S7-1500 CPUs offer; smaller CPUs answer with their own (240 or 480).
const DEFAULT_PDU_SIZE: u16 = 960;

/// Starts an S7 connection. `link` is the broker connection it publishes and subscribes
/// through.
pub fn start(
    service: &str,
    resource: &str,
    spec: S7Connection,
    target: ConnectionTargetState,
    link: impl Into<Link>,
) -> ConnectionHandle {
    driver::spawn(S7Driver::new(spec), service, resource, target, link)
}

pub(crate) struct S7Driver {
    spec: S7Connection,
    timeout: Duration,
    endpoints: PolledEndpoints<S7Variable>,
}

impl S7Driver {
    pub fn new(spec: S7Connection) -> S7Driver {
        S7Driver {
            timeout: spec
                .request_timeout
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            spec,
            endpoints: PolledEndpoints::default(),
        }
    }

    fn settings(&self) -> Settings {
        let (local, remote) = frame::tsaps_for(self.spec.rack, self.spec.slot);
        Settings {
            target: format!("{}:{}", self.spec.host, self.spec.port),
            local_tsap: self.spec.local_tsap.unwrap_or(local),
            remote_tsap: self.spec.remote_tsap.unwrap_or(remote),
            pdu_size: self.spec.pdu_size.unwrap_or(DEFAULT_PDU_SIZE),
            timeout: self.timeout,
        }
    }
}

/// A poll is due.
pub(crate) struct Due;

impl Driver for S7Driver {
    const PROTOCOL: &'static str = "S7";
    type Session = Session;
    type Wake = Due;

    fn backoff(&self) -> Backoff {
        Backoff::new(self.spec.connection_strategy.as_ref())
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<Session, DriverError>> {
        let settings = self.settings();
        Box::pin(async move {
            Session::connect(&settings)
                .await
                .map_err(DriverError::Connection)
        })
    }

    async fn on_connected(&mut self, _: &mut Session, _: &Reporter) -> Result<(), DriverError> {
        Ok(())
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut Session>) -> Due {
        match (session, self.endpoints.next_due()) {
            (Some(_), Some(due)) => tokio::time::sleep_until(due.into()).await,
            _ => std::future::pending().await,
        }
        Due
    }

    async fn work(
        &mut self,
        Due: Due,
        session: Option<&mut Session>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        match session {
            Some(session) => self.poll_due(session, report).await,
            None => Ok(()),
        }
    }

    async fn add_endpoint(
        &mut self,
        spec: EndpointSpec,
        _: Option<&mut Session>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        let Address::S7(address) = spec.address.clone() else {
            return Err(DriverError::Endpoint(
                "an S7 connection only runs S7 endpoints".into(),
            ));
        };
        let variable = address.variable().map_err(DriverError::Endpoint)?;
        let interval = address.interval.or(self.spec.poll_interval);
        self.endpoints
            .insert(spec, variable, interval, address.cron_expression.as_deref())
    }

    async fn remove_endpoint(&mut self, id: &str, _: Option<&mut Session>) {
        self.endpoints.remove(id);
    }

    async fn request(
        &mut self,
        id: &str,
        value: Json,
        session: &mut Session,
        _: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        let Some(endpoint) = self.endpoints.get(id) else {
            return Ok(Err(Refusal::new("the endpoint has been removed")));
        };
        let (operation, variable) = (endpoint.spec.operation, endpoint.address);
        if operation == Operation::Write {
            return write(session, &variable, &value).await;
        }
        let mut read = read_variables(session, &[variable]).await?;
        Ok(match read.pop() {
            Some(Ok((value, _))) => Ok(value),
            Some(Err(refusal)) => Err(refusal),
            None => Err(Refusal::new("nothing was read")),
        })
    }

    async fn close(&mut self, session: Session) {
        session.close().await;
    }
}

impl S7Driver {
    /// Reads every subscribe endpoint that is due and publishes what each got.
    async fn poll_due(
        &mut self,
        session: &mut Session,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        let due = self.endpoints.due(Instant::now());
        let variables: Vec<S7Variable> = due.iter().map(|(_, v)| *v).collect();
        let values = read_variables(session, &variables).await?;
        for ((id, _), value) in due.iter().zip(values) {
            let Some(endpoint) = self.endpoints.get(id) else {
                continue;
            };
            match value {
                Ok((value, at)) => report.publish_data(&endpoint.spec, value, at).await,
                Err(refusal) => report.endpoint_failed(id, refusal.message),
            }
        }
        self.endpoints.polled_at(&due, Instant::now());
        Ok(())
    }
}

fn place_of(variable: &S7Variable) -> Place {
    Place {
        area: variable.area.code(),
        db: variable.area.db_number(),
        byte: variable.byte,
    }
}

type Read = Result<(Json, i64), Refusal>;

/// Reads and decodes `variables`, each with the time its bytes arrived. When the CPU refuses a
/// range read for several variables (one of them past the end of its data block, say), those
/// variables are read again one by one, so only the bad one fails.
async fn read_variables(
    session: &mut Session,
    variables: &[S7Variable],
) -> Result<Vec<Read>, DriverError> {
    let wanted: Vec<Wanted> = variables
        .iter()
        .map(|v| Wanted {
            place: place_of(v),
            len: v.byte_len(),
        })
        .collect();
    let mut results = read_wanted(session, &wanted, true).await?;
    let retry: Vec<usize> = (0..wanted.len())
        .filter(|&i| matches!(results[i], Err((_, true))))
        .collect();
    if !retry.is_empty() {
        let again: Vec<Wanted> = retry.iter().map(|&i| wanted[i]).collect();
        let retried = read_wanted(session, &again, false).await?;
        for (i, result) in retry.into_iter().zip(retried) {
            results[i] = result;
        }
    }
    Ok(variables
        .iter()
        .zip(results)
        .map(|(variable, result)| match result {
            Ok((bytes, at)) => codec::decode(variable, &bytes)
                .map(|value| (value, at))
                .map_err(Refusal::new),
            Err((refusal, _)) => Err(refusal),
        })
        .collect())
}

/// Bytes of each wanted place with when they arrived; a failure says whether the range it was
/// read in held other variables too (worth reading them apart).
type WantedRead = Result<(Vec<u8>, i64), (Refusal, bool)>;

async fn read_wanted(
    session: &mut Session,
    wanted: &[Wanted],
    merge: bool,
) -> Result<Vec<WantedRead>, DriverError> {
    let plan = plan::plan(wanted, session.pdu_size(), merge);
    let mut ranges: Vec<Result<Vec<u8>, Refusal>> = plan
        .ranges
        .iter()
        .map(|r| Ok(vec![0; r.len as usize]))
        .collect();
    let mut arrived = vec![0i64; plan.ranges.len()];
    for request in &plan.requests {
        let items: Vec<ReadItem> = request.iter().map(|c| c.item(&plan.ranges)).collect();
        let answers = match session.read(&items).await {
            Ok(answers) => answers
                .into_iter()
                .map(|a| a.map_err(item_refusal))
                .collect(),
            Err(Failure::Lost(why)) => return Err(DriverError::Connection(why)),
            Err(Failure::Refused { message, code }) => {
                vec![Err(Refusal::with_code(message, code)); items.len()]
            }
        };
        let now = envelope::now_millis();
        for (chunk, answer) in request.iter().zip(answers) {
            arrived[chunk.range] = now;
            let range = &mut ranges[chunk.range];
            let Ok(buffer) = range else { continue };
            match answer {
                Ok(bytes) if bytes.len() == usize::from(chunk.len) => {
                    let start = chunk.offset as usize;
                    buffer[start..start + bytes.len()].copy_from_slice(&bytes);
                }
                Ok(bytes) => {
                    *range = Err(Refusal::new(format!(
                        "the CPU answered {} bytes of the {} asked for",
                        bytes.len(),
                        chunk.len
                    )));
                }
                Err(refusal) => *range = Err(refusal),
            }
        }
    }
    let mut members = vec![0usize; plan.ranges.len()];
    for (range, _) in &plan.members {
        members[*range] += 1;
    }
    Ok(plan
        .members
        .iter()
        .zip(wanted)
        .map(|(&(range, offset), w)| match &ranges[range] {
            Ok(buffer) => {
                let start = offset as usize;
                Ok((
                    buffer[start..start + w.len as usize].to_vec(),
                    arrived[range],
                ))
            }
            Err(refusal) => Err((refusal.clone(), members[range] > 1)),
        })
        .collect())
}

fn item_refusal(code: u8) -> Refusal {
    Refusal::with_code(pdu::item_error_text(code), code)
}

/// Writes a value: bit by bit for BOOL, else its bytes in as many requests as the PDU needs.
async fn write(
    session: &mut Session,
    variable: &S7Variable,
    value: &Json,
) -> Result<Result<Json, Refusal>, DriverError> {
    let encoded = match codec::encode(variable, value) {
        Ok(encoded) => encoded,
        Err(e) => return Ok(Err(Refusal::new(e))),
    };
    let place = place_of(variable);
    let outcome = match &encoded {
        Encoded::Bits(bits) => {
            let mut outcome = Ok(());
            for &(byte, bit, value) in bits {
                let item = WriteItem::Bit {
                    place: Place { byte, ..place },
                    bit,
                    value,
                };
                outcome = session.write(&item).await;
                if outcome.is_err() {
                    break;
                }
            }
            outcome
        }
        Encoded::Bytes(bytes) => {
            let mut outcome = Ok(());
            let room = session.write_room();
            for (i, part) in bytes.chunks(room).enumerate() {
                let item = WriteItem::Bytes {
                    place: Place {
                        byte: place.byte + (i * room) as u32,
                        ..place
                    },
                    data: part,
                };
                outcome = session.write(&item).await;
                if outcome.is_err() {
                    break;
                }
            }
            outcome
        }
    };
    match outcome {
        Ok(()) => Ok(Ok(value.clone())),
        Err(Failure::Lost(why)) => Err(DriverError::Connection(why)),
        Err(Failure::Refused { message, code }) => Ok(Err(Refusal::with_code(message, code))),
    }
}
