//! An S7 session on tokio: the ISO-on-TCP connection, the communication setup that fixes the PDU
//! size, then one request at a time (the CPU is asked for, and S7 CPUs grant, one outstanding
//! job), each answered within the timeout or the session is lost.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::frame::{self, Tpdu};
use super::pdu::{self, PduError, ReadItem, WriteItem};

/// Why a request did not get its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The transport failed, timed out or carried nonsense: the session is lost.
    Lost(String),
    /// The CPU refused the request or the item; the session goes on.
    Refused { message: String, code: u16 },
}

pub struct Settings {
    pub target: String,
    pub local_tsap: u16,
    pub remote_tsap: u16,
    pub pdu_size: u16,
    pub timeout: Duration,
}

pub struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    reference: u16,
    pdu_size: u16,
    timeout: Duration,
}

impl Session {
    /// Connects, opens the ISO transport to the CPU's TSAP and negotiates the PDU size. The
    /// whole handshake must finish within the timeout.
    pub async fn connect(settings: &Settings) -> Result<Session, String> {
        let timeout = settings.timeout;
        tokio::time::timeout(timeout, Session::handshake(settings))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "connecting to {} timed out after {} ms",
                    settings.target,
                    timeout.as_millis()
                ))
            })
    }

    async fn handshake(settings: &Settings) -> Result<Session, String> {
        let target = &settings.target;
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        // Requests are small and answered one at a time: send each at once.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut session = Session {
            reader: BufReader::new(read),
            writer: write,
            reference: 0,
            pdu_size: settings.pdu_size,
            timeout: settings.timeout,
        };
        session
            .send(&frame::connection_request(
                settings.local_tsap,
                settings.remote_tsap,
            ))
            .await?;
        let tsap_hint = format!(
            "check rack and slot (S7-1200/1500: slot 1, S7-300: slot 2) or the TSAPs (remote {:#06x})",
            settings.remote_tsap
        );
        let answer = frame::read_frame(&mut session.reader)
            .await
            .map_err(|e| format!("{e} while opening the ISO connection; {tsap_hint}"))?;
        match frame::parse_tpdu(&answer)? {
            Tpdu::ConnectionConfirm => {}
            Tpdu::Disconnect { reason } => {
                return Err(format!(
                    "the CPU refused the ISO connection (reason {reason}); {tsap_hint}"
                ));
            }
            other => return Err(format!("expected a COTP connection confirm, got {other:?}")),
        }
        let reference = session.next_reference();
        let pdu = session
            .exchange(&pdu::setup_request(reference, settings.pdu_size))
            .await
            .map_err(|e| format!("communication setup failed: {e}"))?;
        session.pdu_size = pdu::parse_setup_response(&pdu, reference)
            .map_err(|e| format!("communication setup failed: {e}"))?
            .min(settings.pdu_size)
            .max(pdu::MIN_PDU);
        Ok(session)
    }

    /// The PDU size both sides use.
    pub fn pdu_size(&self) -> u16 {
        self.pdu_size
    }

    fn next_reference(&mut self) -> u16 {
        self.reference = self.reference.wrapping_add(1);
        self.reference
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|e| format!("sending to the CPU failed: {e}"))
    }

    /// Sends one PDU and reads the next PDU the CPU sends.
    async fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.send(&frame::data(request)).await?;
        frame::read_pdu(&mut self.reader).await
    }

    async fn call<T>(
        &mut self,
        request: Vec<u8>,
        reference: u16,
        parse: impl FnOnce(&[u8], u16) -> Result<T, PduError>,
    ) -> Result<T, Failure> {
        let timeout = self.timeout;
        let answer = tokio::time::timeout(timeout, self.exchange(&request))
            .await
            .map_err(|_| Failure::Lost(format!("no answer within {} ms", timeout.as_millis())))?
            .map_err(Failure::Lost)?;
        parse(&answer, reference).map_err(|e| match e {
            PduError::Malformed(_) => Failure::Lost(e.to_string()),
            PduError::Refused(code) => Failure::Refused {
                message: e.to_string(),
                code,
            },
        })
    }

    /// Reads byte ranges in one request (the caller keeps it within the PDU size). Each item
    /// is its bytes or the CPU's return code for it.
    pub async fn read(&mut self, items: &[ReadItem]) -> Result<Vec<Result<Vec<u8>, u8>>, Failure> {
        let reference = self.next_reference();
        let count = items.len();
        self.call(
            pdu::read_request(reference, items),
            reference,
            |answer, reference| pdu::parse_read_response(answer, reference, count),
        )
        .await
    }

    /// Writes one item.
    pub async fn write(&mut self, item: &WriteItem<'_>) -> Result<(), Failure> {
        let reference = self.next_reference();
        let outcome = self
            .call(
                pdu::write_request(reference, item),
                reference,
                pdu::parse_write_response,
            )
            .await?;
        outcome.map_err(|code| Failure::Refused {
            message: pdu::item_error_text(code),
            code: u16::from(code),
        })
    }

    /// The bytes one write request can carry.
    pub fn write_room(&self) -> usize {
        usize::from(self.pdu_size) - pdu::WRITE_OVERHEAD
    }

    /// Ends the session politely; the CPU frees its connection resource at once instead of
    /// after its own timeout.
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }
}
