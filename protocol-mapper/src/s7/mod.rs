//! Siemens S7 (S7-300/400/1200/1500 with PUT/GET access, LOGO!) over ISO-on-TCP: our own client
//! on tokio. The crates we evaluated were blocking (`rust7`) or too new to rely on
//! (`snap7-client` 0.1); the protocol part a gateway needs is small (see ARCHITECTURE.md).
//!
//! - `frame`: TPKT and COTP, the transport.
//! - `pdu`: S7comm setup, "read var" and "write var", and the decoders the fuzz target drives.
//! - `plan`: packing the variables of one poll into requests that fit the PDU.
//! - `codec`: S7 values to JSON and back.
//! - `client`: one session, one request at a time, with its timeout.
//! - `connection`: the driver on the shared connection state machine.
//! - `simulator`: an in-process CPU for tests, the benchmark and the demo.
mod client;
mod codec;
pub mod connection;
pub mod frame;
pub mod pdu;
mod plan;
pub mod simulator;
