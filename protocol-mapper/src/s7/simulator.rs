//! An in-process S7 CPU for tests, the benchmark and the demo: data blocks, flags, inputs and
//! outputs as byte arrays that the test (or a simulation loop) changes, answering the
//! communication setup, "read var" with many items and "write var" (bits included) like a CPU
//! with PUT/GET access. A read or write past an area's end gets item error 0x05 and an unknown
//! data block 0x0A, as a CPU answers. The interoperability tests use an S7 server outside the
//! project (python-snap7); this one is for speed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::frame;

/// The CPU's memory, by area code and data block number (0 outside data blocks).
#[derive(Debug, Default)]
pub struct Memory {
    pub areas: HashMap<(u8, u16), Vec<u8>>,
    /// Read and write requests answered so far (to observe packing).
    pub requests: u64,
}

impl Memory {
    /// Data block `n`'s bytes.
    pub fn db(&mut self, n: u16) -> &mut Vec<u8> {
        self.areas.entry((0x84, n)).or_default()
    }
}

pub struct Simulator {
    pub addr: SocketAddr,
    memory: Arc<Mutex<Memory>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Listens on `addr` with `memory`, offering at most `pdu_size` bytes. Areas not in
    /// `memory` do not exist.
    pub async fn start(addr: SocketAddr, memory: Memory, pdu_size: u16) -> io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let memory = Arc::new(Mutex::new(memory));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (memory, stop) = (memory.clone(), stop.clone());
            async move {
                loop {
                    let accepted = tokio::select! {
                        _ = stop.cancelled() => return,
                        accepted = listener.accept() => accepted,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let (memory, stop) = (memory.clone(), stop.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = serve(stream, memory, pdu_size) => {}
                        }
                    });
                }
            }
        });
        Ok(Simulator {
            addr,
            memory,
            stop,
            task,
        })
    }

    /// The memory, to change values or look at what was written.
    pub fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The memory shared with a simulation loop.
    pub fn shared_memory(&self) -> Arc<Mutex<Memory>> {
        self.memory.clone()
    }

    /// Stops listening and drops every client connection (a CPU switched off).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn serve(mut stream: TcpStream, memory: Arc<Mutex<Memory>>, pdu_size: u16) -> Option<()> {
    let _ = stream.set_nodelay(true);
    let request = frame::read_frame(&mut stream).await.ok()?;
    if !matches!(request.get(1), Some(0xE0)) {
        return None;
    }
    // Connection confirm: the CPU's reference, class 0, TPDU size 1024.
    let confirm = [3, 0, 0, 11, 6, 0xD0, 0, 1, 0, 1, 0];
    stream.write_all(&confirm).await.ok()?;
    let mut pdu_size = pdu_size;
    loop {
        let job = frame::read_pdu(&mut stream).await.ok()?;
        let answer = {
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            answer(&job, &mut memory, &mut pdu_size)?
        };
        stream.write_all(&frame::data(&answer)).await.ok()?;
    }
}

/// Answers one job; `None` for bytes that are not a job (the connection is then closed).
fn answer(job: &[u8], memory: &mut Memory, pdu_size: &mut u16) -> Option<Vec<u8>> {
    if job.get(..2)? != [0x32, 1] {
        return None;
    }
    let reference = [*job.get(4)?, *job.get(5)?];
    let parameters_len = usize::from(u16::from_be_bytes([*job.get(6)?, *job.get(7)?]));
    let parameters = job.get(10..10 + parameters_len)?;
    let data = job.get(10 + parameters_len..)?;
    let ack = |parameters: &[u8], data: &[u8]| {
        let mut pdu = vec![0x32, 3, 0, 0, reference[0], reference[1]];
        pdu.extend_from_slice(&(parameters.len() as u16).to_be_bytes());
        pdu.extend_from_slice(&(data.len() as u16).to_be_bytes());
        pdu.extend_from_slice(&[0, 0]);
        pdu.extend_from_slice(parameters);
        pdu.extend_from_slice(data);
        pdu
    };
    match *parameters.first()? {
        0xF0 => {
            let asked = u16::from_be_bytes([*parameters.get(6)?, *parameters.get(7)?]);
            *pdu_size = asked.min(*pdu_size);
            let [hi, lo] = pdu_size.to_be_bytes();
            Some(ack(&[0xF0, 0, 0, 1, 0, 1, hi, lo], &[]))
        }
        0x04 => {
            memory.requests += 1;
            let count = usize::from(*parameters.get(1)?);
            let mut out = Vec::new();
            for index in 0..count {
                let item = Item::parse(parameters.get(2 + 12 * index..14 + 12 * index)?)?;
                if index > 0 && out.len() % 2 == 1 {
                    out.push(0);
                }
                match item.read(memory) {
                    Ok((transport, bytes, bits)) => {
                        out.extend_from_slice(&[0xFF, transport]);
                        out.extend_from_slice(&(bits as u16).to_be_bytes());
                        out.extend_from_slice(&bytes);
                    }
                    Err(code) => out.extend_from_slice(&[code, 0, 0, 0]),
                }
            }
            let mut answer = ack(&[0x04, count as u8], &out);
            if answer.len() > usize::from(*pdu_size) {
                // A CPU refuses what does not fit the negotiated size.
                answer = ack(&[0x04, 0], &[]);
                answer[10..12].copy_from_slice(&[0x85, 0x00]);
                answer[6..10].copy_from_slice(&[0, 2, 0, 0]);
            }
            Some(answer)
        }
        0x05 => {
            memory.requests += 1;
            let item = Item::parse(parameters.get(2..14)?)?;
            let length = usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?]));
            let bytes = match data.get(1)? {
                0x03 => data.get(4..4 + length.div_ceil(8))?,
                _ => data.get(4..4 + length / 8)?,
            };
            let code = item.write(memory, bytes);
            Some(ack(&[0x05, 1], &[code]))
        }
        _ => {
            let mut refused = ack(&[*parameters.first()?, 0], &[]);
            refused[10..12].copy_from_slice(&[0x81, 0x04]);
            Some(refused)
        }
    }
}

struct Item {
    bit_transport: bool,
    count: usize,
    key: (u8, u16),
    address: usize,
}

impl Item {
    fn parse(item: &[u8]) -> Option<Item> {
        if item.get(..3)? != [0x12, 0x0A, 0x10] {
            return None;
        }
        Some(Item {
            bit_transport: item[3] == 0x01,
            count: usize::from(u16::from_be_bytes([item[4], item[5]])),
            key: (
                item[8],
                if item[8] == 0x84 {
                    u16::from_be_bytes([item[6], item[7]])
                } else {
                    0
                },
            ),
            address: usize::from(item[9]) << 16
                | usize::from(item[10]) << 8
                | usize::from(item[11]),
        })
    }

    /// (data transport size, bytes, length in bits) or an item error.
    fn read(&self, memory: &Memory) -> Result<(u8, Vec<u8>, usize), u8> {
        let area = memory.areas.get(&self.key).ok_or(0x0A)?;
        let byte = self.address / 8;
        if self.bit_transport {
            let value = area.get(byte).ok_or(0x05)? >> (self.address % 8) & 1;
            return Ok((0x03, vec![value], 1));
        }
        let bytes = area.get(byte..byte + self.count).ok_or(0x05)?;
        Ok((0x04, bytes.to_vec(), bytes.len() * 8))
    }

    fn write(&self, memory: &mut Memory, bytes: &[u8]) -> u8 {
        let Some(area) = memory.areas.get_mut(&self.key) else {
            return 0x0A;
        };
        let byte = self.address / 8;
        if self.bit_transport {
            let (Some(target), Some(value)) = (area.get_mut(byte), bytes.first()) else {
                return 0x05;
            };
            let mask = 1 << (self.address % 8);
            *target = if *value & 1 == 1 {
                *target | mask
            } else {
                *target & !mask
            };
            return 0xFF;
        }
        match area.get_mut(byte..byte + bytes.len()) {
            Some(target) => {
                target.copy_from_slice(bytes);
                0xFF
            }
            None => 0x05,
        }
    }
}
