//! Each connection kind builds its running part from its resolved spec (the model is vector's
//! `SourceConfig::build`). This is the one place that knows which protocols exist: a new
//! protocol is a driver module, an impl of [`BuildConnection`] for its spec, and one arm in the
//! impl for [`ConnectionParams`].

use std::path::{Path, PathBuf};

use broker::bus::{Link, RemoteBroker};
use commissioning::model::{
    ConnectionParams, ConnectionTargetState, HttpConnection, ModbusConnection, MqttConnection,
    OpcuaConnection, S7Connection,
};

use crate::driver::{ConnectionHandle, DriverError};
use crate::mqtt::{QueueLimits, QueueSettings};

/// What every connection is started with besides its spec.
pub struct ConnectionContext<'a> {
    pub service: &'a str,
    pub resource: &'a str,
    pub target: ConnectionTargetState,
    /// The connection's link to the broker: data, answers and its retained status go out
    /// through it, requests come in.
    pub link: Link,
    /// The gateway's data directory; drivers keep what must outlive a restart below
    /// [`service_folders`].
    pub data_dir: &'a Path,
    /// Bounds of store-and-forward queues.
    pub queue_limits: QueueLimits,
}

/// A started connection.
pub struct RunningConnection {
    pub handle: ConnectionHandle,
    /// MQTT connections: what mappings forward to and subscribe through.
    pub remote: Option<RemoteBroker>,
}

impl From<ConnectionHandle> for RunningConnection {
    fn from(handle: ConnectionHandle) -> RunningConnection {
        RunningConnection {
            handle,
            remote: None,
        }
    }
}

/// A connection spec that can start itself.
pub trait BuildConnection {
    /// Starts the connection. An error means it could not start at all (settings it cannot
    /// use); a device that is merely unreachable is a running connection that reconnects.
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError>;
}

impl BuildConnection for ConnectionParams {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        match self {
            ConnectionParams::Modbus(spec) => spec.build(cx),
            ConnectionParams::Opcua(spec) => spec.build(cx),
            ConnectionParams::Mqtt(spec) => spec.build(cx),
            ConnectionParams::Http(spec) => spec.build(cx),
            ConnectionParams::S7(spec) => spec.build(cx),
        }
    }
}

impl BuildConnection for ModbusConnection {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        let handle = crate::modbus::connection::start(
            cx.service,
            cx.resource,
            self.clone(),
            cx.target,
            cx.link,
        );
        Ok(handle.into())
    }
}

impl BuildConnection for HttpConnection {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        let handle = crate::http::connection::start(
            cx.service,
            cx.resource,
            self.clone(),
            cx.target,
            cx.link,
        );
        Ok(handle.into())
    }
}

impl BuildConnection for S7Connection {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        let handle =
            crate::s7::connection::start(cx.service, cx.resource, self.clone(), cx.target, cx.link);
        Ok(handle.into())
    }
}

impl BuildConnection for OpcuaConnection {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        let pki = opcua_pki(cx.data_dir, cx.service).join(cx.resource);
        let handle = crate::opcua::connection::start(
            cx.service,
            cx.resource,
            self.clone(),
            cx.target,
            pki,
            cx.link,
        );
        Ok(handle.into())
    }
}

impl BuildConnection for MqttConnection {
    fn build(&self, cx: ConnectionContext<'_>) -> Result<RunningConnection, DriverError> {
        let queue = QueueSettings {
            path: forwarding(cx.data_dir, cx.service).join(format!("{}.sqlite", cx.resource)),
            limits: cx.queue_limits,
        };
        let (handle, remote) = crate::mqtt::connection::start(
            cx.service,
            cx.resource,
            self.clone(),
            cx.target,
            queue,
            cx.link,
        )?;
        Ok(RunningConnection {
            handle,
            remote: Some(remote),
        })
    }
}

/// The folders where a service's connections keep data across restarts, with what each holds;
/// they go when the service is deleted (disabling keeps them).
pub fn service_folders(data_dir: &Path, service: &str) -> [(PathBuf, &'static str); 2] {
    [
        (opcua_pki(data_dir, service), "OPC UA certificate folder"),
        (forwarding(data_dir, service), "store-and-forward queues"),
    ]
}

/// Generated OPC UA client keys and trusted certificates, a folder per connection.
fn opcua_pki(data_dir: &Path, service: &str) -> PathBuf {
    data_dir.join("opcua-pki").join(service)
}

/// Store-and-forward queues of MQTT connections, a file per connection.
fn forwarding(data_dir: &Path, service: &str) -> PathBuf {
    data_dir.join("forwarding").join(service)
}
