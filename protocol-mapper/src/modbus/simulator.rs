//! An in-process Modbus TCP device on tokio-modbus's server, for tests and the demo: a bank of
//! holding registers, input registers, coils and discrete inputs that the test (or a simulation
//! loop) changes, answering reads and writes like a PLC. Addresses past the bank get exception
//! 0x02 (illegal data address), as a real device does.

use std::future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

/// The simulated device's memory. Each table has `size` entries.
#[derive(Debug, Default)]
pub struct Bank {
    pub holding: Vec<u16>,
    pub input: Vec<u16>,
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    /// Requests answered so far (to observe batching).
    pub requests: u64,
}

pub struct Simulator {
    pub addr: SocketAddr,
    bank: Arc<Mutex<Bank>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Listens on `addr` (port 0 picks one) with `size` entries in every table.
    pub async fn start(addr: SocketAddr, size: usize) -> io::Result<Simulator> {
        let bank = Arc::new(Mutex::new(Bank {
            holding: vec![0; size],
            input: vec![0; size],
            coils: vec![false; size],
            discrete: vec![false; size],
            requests: 0,
        }));
        Simulator::start_with(addr, bank).await
    }

    /// Listens with an existing bank: a "restarted" device keeps its memory.
    pub async fn start_with(addr: SocketAddr, bank: Arc<Mutex<Bank>>) -> io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let server = Server::new(listener);
        let device = Device { bank: bank.clone() };
        let on_connected = move |stream, socket_addr| {
            let device = device.clone();
            async move { accept_tcp_connection(stream, socket_addr, |_| Ok(Some(device.clone()))) }
        };
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            let _ = server
                .serve_until(
                    &on_connected,
                    |_| {},
                    async move { signal.cancelled().await },
                )
                .await;
        });
        Ok(Simulator {
            addr,
            bank,
            stop,
            task,
        })
    }

    pub fn bank(&self) -> MutexGuard<'_, Bank> {
        self.bank.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn shared_bank(&self) -> Arc<Mutex<Bank>> {
        self.bank.clone()
    }

    /// Stops listening and drops every open connection, like a device that lost power.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[derive(Clone)]
struct Device {
    bank: Arc<Mutex<Bank>>,
}

fn range<T: Clone>(table: &[T], address: u16, count: u16) -> Result<Vec<T>, ExceptionCode> {
    let start = usize::from(address);
    table
        .get(start..start + usize::from(count))
        .map(<[T]>::to_vec)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn store<T: Clone>(table: &mut [T], address: u16, values: &[T]) -> Result<(), ExceptionCode> {
    let start = usize::from(address);
    let slot = table
        .get_mut(start..start + values.len())
        .ok_or(ExceptionCode::IllegalDataAddress)?;
    slot.clone_from_slice(values);
    Ok(())
}

impl Service for Device {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let mut bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        bank.requests += 1;
        let answer = match request {
            Request::ReadCoils(a, n) => range(&bank.coils, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => {
                range(&bank.discrete, a, n).map(Response::ReadDiscreteInputs)
            }
            Request::ReadHoldingRegisters(a, n) => {
                range(&bank.holding, a, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(a, n) => {
                range(&bank.input, a, n).map(Response::ReadInputRegisters)
            }
            Request::WriteSingleCoil(a, v) => {
                store(&mut bank.coils, a, &[v]).map(|()| Response::WriteSingleCoil(a, v))
            }
            Request::WriteMultipleCoils(a, v) => store(&mut bank.coils, a, &v)
                .map(|()| Response::WriteMultipleCoils(a, v.len() as u16)),
            Request::WriteSingleRegister(a, v) => {
                store(&mut bank.holding, a, &[v]).map(|()| Response::WriteSingleRegister(a, v))
            }
            Request::WriteMultipleRegisters(a, v) => store(&mut bank.holding, a, &v)
                .map(|()| Response::WriteMultipleRegisters(a, v.len() as u16)),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(answer)
    }
}
