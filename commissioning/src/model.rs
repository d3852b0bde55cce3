//! Typed resources, with every property the gateway implements. Unknown properties are
//! rejected (`deny_unknown_fields`) so a typo is an error, not a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value as Json;

use crate::resolve::REF_KEY;

/// `!ref resource` after resolution: which resource of which service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    pub service: String,
    pub resource: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.service, self.resource)
    }
}

impl<'de> Deserialize<'de> for ResourceRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = ResourceRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a !ref to a resource")
            }
            /// `service::resource`, as `!sub '${resource}'` gives it and Connectware's
            /// documentation types these properties (a string). A bare name of this service's
            /// resource is turned into a reference before typing, so one arriving here is
            /// unknown.
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ResourceRef, E> {
                match text.split_once("::") {
                    Some((service, resource)) if !service.is_empty() && !resource.is_empty() => {
                        Ok(ResourceRef {
                            service: service.to_string(),
                            resource: resource.to_string(),
                        })
                    }
                    _ => Err(E::custom(format!(
                        "`{text}` is not a resource of this service; refer to one with `!ref <resource>` (or `<service>::<resource>` for another service's)"
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ResourceRef, A::Error> {
                let mut target: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != REF_KEY {
                        return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
                    }
                    target = Some(map.next_value()?);
                }
                let target =
                    target.ok_or_else(|| de::Error::invalid_type(de::Unexpected::Map, &self))?;
                let (service, resource) = target
                    .split_once("::")
                    .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(&target), &self))?;
                Ok(ResourceRef {
                    service: service.to_string(),
                    resource: resource.to_string(),
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    Modbus,
    Opcua,
    Mqtt,
    Http,
    S7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionTargetState {
    #[default]
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MappingTargetState {
    #[default]
    Enabled,
    Disabled,
}

/// Reconnect back-off: wait `initial_delay` ms, multiply by `increment_factor` after each
/// failure, never more than `max_delay` ms.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionStrategy {
    #[serde(default = "default_initial_delay")]
    pub initial_delay: u64,
    #[serde(default = "default_increment_factor")]
    pub increment_factor: f64,
    #[serde(default = "default_max_delay")]
    pub max_delay: u64,
}

fn default_initial_delay() -> u64 {
    1000
}
fn default_increment_factor() -> f64 {
    2.0
}
fn default_max_delay() -> u64 {
    30_000
}

/// `Cybus::Connection` properties apart from the protocol-specific `connection`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConnectionShape {
    pub protocol: Protocol,
    pub connection: Json,
    #[serde(default)]
    pub target_state: ConnectionTargetState,
    #[serde(default)]
    pub agent_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connection {
    pub protocol: Protocol,
    pub params: ConnectionParams,
    pub target_state: ConnectionTargetState,
    pub agent_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ConnectionParams {
    Modbus(ModbusConnection),
    Opcua(OpcuaConnection),
    Mqtt(MqttConnection),
    /// Boxed: its TLS, OAuth and probe settings make it the largest by far.
    Http(Box<HttpConnection>),
    S7(S7Connection),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModbusConnection {
    /// For `tcp` and `rtuOverTcp`.
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_modbus_port")]
    pub port: u16,
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// Milliseconds to wait for a response.
    #[serde(default)]
    pub socket_timeout: Option<u64>,
    #[serde(default)]
    pub batch_read_enabled: bool,
    #[serde(default)]
    pub max_batch_size: Option<u16>,
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
    /// `tcp` (the default), `rtu` on a serial line, or `rtuOverTcp` through a serial gateway.
    #[serde(default)]
    pub transport: ModbusTransport,
    /// For `rtu`: the serial device, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// 5-8.
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: ModbusParity,
    /// 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
}

fn default_modbus_port() -> u16 {
    502
}
fn default_baud_rate() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

/// How Modbus frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ModbusTransport {
    /// Modbus TCP (MBAP header).
    #[default]
    Tcp,
    /// RTU frames on a serial line (`device`).
    Rtu,
    /// RTU frames in a TCP stream, as serial-to-Ethernet gateways pass them on.
    RtuOverTcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModbusParity {
    #[default]
    None,
    Even,
    Odd,
}
fn default_unit_id() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaConnection {
    pub host: String,
    #[serde(default = "default_opcua_port")]
    pub port: u16,
    #[serde(default)]
    pub resource_path: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub options: Option<OpcuaOptions>,
    /// Client certificate (PEM) for certificate authentication and message security.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// Private key (PEM) of the client certificate.
    #[serde(default)]
    pub client_private_key: Option<String>,
    /// Server certificates (PEM) to trust.
    #[serde(default)]
    pub trusted_server_certificates: Vec<String>,
    /// Connectware documents it here and in `options`; `options.connectionStrategy` wins.
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
}

impl OpcuaConnection {
    /// The reconnect back-off: `options.connectionStrategy`, else `connectionStrategy`.
    pub fn strategy(&self) -> Option<&ConnectionStrategy> {
        self.options
            .as_ref()
            .and_then(|o| o.connection_strategy.as_ref())
            .or(self.connection_strategy.as_ref())
    }
}

fn default_opcua_port() -> u16 {
    4840
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaOptions {
    #[serde(default)]
    pub security_policy: Option<SecurityPolicy>,
    #[serde(default)]
    pub message_security_mode: Option<MessageSecurityMode>,
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SecurityPolicy {
    None,
    Basic256Sha256,
    #[serde(rename = "Aes128_Sha256_RsaOaep")]
    Aes128Sha256RsaOaep,
    #[serde(rename = "Aes256_Sha256_RsaPss")]
    Aes256Sha256RsaPss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum MessageSecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MqttConnection {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub scheme: MqttScheme,
    /// 4 (MQTT 3.1.1, the default) or 5 (MQTT 5.0).
    #[serde(default)]
    pub protocol_version: MqttVersion,
    /// The HTTP path of `ws`/`wss` connections; `/mqtt` unless given.
    #[serde(default)]
    pub websocket_path: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds.
    #[serde(default)]
    pub keepalive: Option<u16>,
    #[serde(default)]
    pub clean: Option<bool>,
    #[serde(default)]
    pub ca_cert: Option<String>,
    #[serde(default)]
    pub client_cert: Option<String>,
    #[serde(default)]
    pub client_private_key: Option<String>,
    #[serde(default)]
    pub mutual_authentication: bool,
    #[serde(default)]
    pub trust_all_certificates: bool,
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
}

/// The MQTT protocol level spoken to a remote broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum MqttVersion {
    #[default]
    V311,
    V5,
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u8::deserialize(deserializer)? {
            4 => Ok(MqttVersion::V311),
            5 => Ok(MqttVersion::V5),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(other.into()),
                &"4 (MQTT 3.1.1) or 5 (MQTT 5.0)",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttScheme {
    #[default]
    Mqtt,
    Mqtts,
    Ws,
    Wss,
}

/// `protocol: Http`: a REST server the gateway polls and writes to. Property names as
/// Connectware documents them (see `connectware.rs`); `requestTimeout` is Ironbridge's own.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConnection {
    #[serde(default)]
    pub scheme: HttpScheme,
    pub host: String,
    /// 443 for https, 80 for http unless given.
    #[serde(default)]
    pub port: Option<u16>,
    /// Put before every endpoint's path (`/api/v1`).
    #[serde(default)]
    pub prefix: String,
    /// Sent with every request; a bearer token is `Authorization: Bearer ...`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query variables added to every request.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Basic authentication.
    #[serde(default)]
    pub auth: Option<HttpBasicAuth>,
    /// OAuth 2.0 client credentials grant: a bearer token fetched from `auth_url` and renewed
    /// before it expires.
    #[serde(default)]
    pub oauth_client_credentials: Option<OAuthClientCredentials>,
    /// Milliseconds between probes that tell whether the server is still there.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: u64,
    /// Milliseconds a probe may take; 0 (Connectware's default) means `requestTimeout`.
    #[serde(default)]
    pub probe_timeout: u64,
    #[serde(default = "default_probe_path")]
    pub probe_path: String,
    #[serde(default)]
    pub probe_method: HttpProbeMethod,
    /// Milliseconds a request (a poll, a read, a write) may take.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    #[serde(default)]
    pub ca_cert: Option<String>,
    #[serde(default)]
    pub client_cert: Option<String>,
    #[serde(default)]
    pub client_private_key: Option<String>,
    #[serde(default)]
    pub mutual_authentication: bool,
    #[serde(default)]
    pub trust_all_certificates: bool,
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
}

impl HttpConnection {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        })
    }
}

fn default_probe_interval() -> u64 {
    10_000
}
fn default_probe_path() -> String {
    "/".into()
}
fn default_request_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    Http,
    #[default]
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpProbeMethod {
    Get,
    #[default]
    Head,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// Connectware spells these properties in snake case.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientCredentials {
    pub auth_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default = "default_grant_type")]
    pub grant_type: String,
    #[serde(default)]
    pub audience: Option<String>,
}

fn default_grant_type() -> String {
    "client_credentials".into()
}

/// An HTTP endpoint: `subscribe` polls `path` every `interval` ms (or on `cronExpression`),
/// `read` fetches it on `/req`, `write` sends the message with `method` on `/set`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpAddress {
    pub path: String,
    /// For `write`: POST (the default), PUT or PATCH. Reads use GET.
    #[serde(default)]
    pub method: Option<HttpWriteMethod>,
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub cron_expression: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpWriteMethod {
    Post,
    Put,
    Patch,
}

/// `protocol: S7`: a Siemens S7 CPU (S7-300/400/1200/1500 with PUT/GET access, LOGO!) over
/// ISO-on-TCP. The CPU is found by `rack` and `slot`, or by explicit TSAPs (LOGO!, CPs).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S7Connection {
    pub host: String,
    #[serde(default = "default_s7_port")]
    pub port: u16,
    #[serde(default)]
    pub rack: u8,
    #[serde(default = "default_s7_slot")]
    pub slot: u8,
    /// Milliseconds between polls of subscribe endpoints without an `interval` (default 1000).
    #[serde(default)]
    pub poll_interval: Option<u64>,
    #[serde(default)]
    pub connection_strategy: Option<ConnectionStrategy>,
    /// The TSAP Ironbridge connects from (default 0x0100, a programming device).
    #[serde(default, rename = "localTSAP")]
    pub local_tsap: Option<u16>,
    /// The TSAP of the CPU; when given, `rack` and `slot` are not used (LOGO!: 0x0200).
    #[serde(default, rename = "remoteTSAP")]
    pub remote_tsap: Option<u16>,
    /// The PDU size asked for (default 960); the CPU answers the size both use.
    #[serde(default)]
    pub pdu_size: Option<u16>,
    /// Milliseconds to wait for an answer (default 5000).
    #[serde(default)]
    pub request_timeout: Option<u64>,
}

fn default_s7_port() -> u16 {
    102
}
fn default_s7_slot() -> u8 {
    1
}

/// An S7 endpoint: the variable's `address` (see `s7_address`), polled every `interval` ms
/// (the connection's `pollInterval` unless given) or on `cronExpression`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S7Address {
    pub address: String,
    /// Reads the address's bytes as another type of the same size, e.g. `REAL` for `DB1.DBD4`.
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub cron_expression: Option<String>,
}

impl S7Address {
    /// The variable the endpoint names. Validation has checked it; the error is for a spec
    /// built in code.
    pub fn variable(&self) -> Result<crate::s7_address::S7Variable, String> {
        let variable = crate::s7_address::S7Variable::parse(&self.address)?;
        match &self.data_type {
            None => Ok(variable),
            Some(name) => {
                let data_type = crate::s7_address::S7Type::from_name(name).ok_or_else(|| {
                    format!("`{name}` is not an S7 type; use BOOL, BYTE, CHAR, WORD, INT, DWORD, DINT, REAL, LREAL or LINT")
                })?;
                variable.read_as(data_type)
            }
        }
    }
}

/// `Cybus::Endpoint` properties apart from the protocol-specific address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EndpointShape {
    pub protocol: Protocol,
    pub connection: ResourceRef,
    #[serde(default)]
    pub subscribe: Option<Json>,
    #[serde(default)]
    pub read: Option<Json>,
    #[serde(default)]
    pub write: Option<Json>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub qos: Option<Qos>,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub connection: ResourceRef,
    pub operation: Operation,
    pub address: Address,
    /// The topic under the service root: `topic` or the resource id.
    pub topic: String,
    pub qos: Qos,
    pub retain: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Subscribe,
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Address {
    Modbus(ModbusAddress),
    Opcua(OpcuaAddress),
    Mqtt(MqttAddress),
    Http(HttpAddress),
    S7(S7Address),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModbusAddress {
    pub fc: u8,
    pub address: u16,
    #[serde(default = "default_length")]
    pub length: u16,
    #[serde(default)]
    pub data_type: Option<ModbusDataType>,
    #[serde(default)]
    pub unit_id: Option<u8>,
    /// Milliseconds between polls (default 1000).
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub cron_expression: Option<String>,
}

fn default_length() -> u16 {
    1
}

/// Parses a `cronExpression`. Six fields start with seconds; five (minute precision, as in
/// crontab) get a leading `0` seconds field.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    use std::str::FromStr as _;
    let fields = expression.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expression}")
    } else {
        expression.to_string()
    };
    cron::Schedule::from_str(&full)
        .map_err(|e| format!("invalid cronExpression {expression:?}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ModbusDataType {
    Raw,
    Base64,
    Boolean,
    #[serde(rename = "int16BE")]
    Int16Be,
    #[serde(rename = "int16LE")]
    Int16Le,
    #[serde(rename = "uint16BE")]
    Uint16Be,
    #[serde(rename = "uint16LE")]
    Uint16Le,
    #[serde(rename = "int32BE")]
    Int32Be,
    #[serde(rename = "int32LE")]
    Int32Le,
    #[serde(rename = "uint32BE")]
    Uint32Be,
    #[serde(rename = "uint32LE")]
    Uint32Le,
    #[serde(rename = "int64BE")]
    Int64Be,
    #[serde(rename = "int64LE")]
    Int64Le,
    #[serde(rename = "uint64BE")]
    Uint64Be,
    #[serde(rename = "uint64LE")]
    Uint64Le,
    #[serde(rename = "floatBE")]
    FloatBe,
    #[serde(rename = "floatLE")]
    FloatLe,
    #[serde(rename = "floatBEWS")]
    FloatBeWs,
    #[serde(rename = "floatLEWS")]
    FloatLeWs,
    #[serde(rename = "doubleBE")]
    DoubleBe,
    #[serde(rename = "doubleLE")]
    DoubleLe,
    /// Text, two characters per register, high byte first.
    #[serde(rename = "stringBE")]
    StringBe,
    #[serde(rename = "stringLE")]
    StringLe,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaAddress {
    #[serde(default)]
    pub node_id: Option<String>,
    /// From the Root folder (`/0:Objects/2:Machine`) or, without the leading `/`, from the
    /// Objects folder (`2:Machine/2:Speed`), as Connectware's examples write it.
    #[serde(default)]
    pub browse_path: Option<String>,
    /// Put before `browsePath` with a `/` between them.
    #[serde(default)]
    pub browse_path_prefix: Option<String>,
    #[serde(default)]
    pub node_type: Option<OpcuaNodeType>,
    /// `interval` is the name older Connectware files use for it.
    #[serde(default, alias = "interval")]
    pub sampling_interval: Option<u64>,
    #[serde(default)]
    pub publish_interval: Option<u64>,
}

impl OpcuaAddress {
    /// `browsePathPrefix` and `browsePath` joined, when there is a browse path.
    pub fn full_browse_path(&self) -> Option<String> {
        let path = self.browse_path.as_deref()?;
        Some(match self.browse_path_prefix.as_deref() {
            Some(prefix) => format!(
                "{}/{}",
                prefix.trim_end_matches('/'),
                path.trim_start_matches('/')
            ),
            None => path.to_string(),
        })
    }
}

/// Connectware's `nodeType`. Ironbridge reads, writes and subscribes to variables; a method
/// call or an object is refused when the file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OpcuaNodeType {
    Variable,
    Object,
    Method,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MqttAddress {
    pub topic: String,
    #[serde(default)]
    pub qos: Option<Qos>,
    #[serde(default)]
    pub retain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Qos(pub u8);

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u8::deserialize(deserializer)?;
        if value > 2 {
            return Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(value.into()),
                &"QoS 0, 1 or 2",
            ));
        }
        Ok(Qos(value))
    }
}

/// One step of a rule chain: `- transform: {expression: ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Rule {
    Parse(ParseRule),
    Transform(ExpressionRule),
    Filter(ExpressionRule),
    SetContextVars(SetContextVarsRule),
    Cov(CovRule),
    Burst(BurstRule),
    Collect(CollectRule),
    Stash(StashRule),
}

/// `parse: {format}`. The format is checked by name when the file is loaded (so a wrong one
/// is reported along with every other problem) and read with [`ParseFormat::from_name`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParseRule {
    pub format: String,
}

/// What `parse` reads the payload as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseFormat {
    Json,
    Utf8,
    Latin1,
    Ascii,
    Boolean,
    Int8,
    Uint8,
    Int16Be,
    Int16Le,
    Uint16Be,
    Uint16Le,
    Int32Be,
    Int32Le,
    Uint32Be,
    Uint32Le,
    FloatBe,
    FloatLe,
    DoubleBe,
    DoubleLe,
    ToBase64,
    FromBase64,
}

impl ParseFormat {
    pub const ALL: [(ParseFormat, &'static str); 21] = [
        (ParseFormat::Json, "json"),
        (ParseFormat::Utf8, "utf8"),
        (ParseFormat::Latin1, "latin1"),
        (ParseFormat::Ascii, "ascii"),
        (ParseFormat::Boolean, "boolean"),
        (ParseFormat::Int8, "int8"),
        (ParseFormat::Uint8, "uint8"),
        (ParseFormat::Int16Be, "int16BE"),
        (ParseFormat::Int16Le, "int16LE"),
        (ParseFormat::Uint16Be, "uint16BE"),
        (ParseFormat::Uint16Le, "uint16LE"),
        (ParseFormat::Int32Be, "int32BE"),
        (ParseFormat::Int32Le, "int32LE"),
        (ParseFormat::Uint32Be, "uint32BE"),
        (ParseFormat::Uint32Le, "uint32LE"),
        (ParseFormat::FloatBe, "floatBE"),
        (ParseFormat::FloatLe, "floatLE"),
        (ParseFormat::DoubleBe, "doubleBE"),
        (ParseFormat::DoubleLe, "doubleLE"),
        (ParseFormat::ToBase64, "toBase64"),
        (ParseFormat::FromBase64, "fromBase64"),
    ];

    pub fn from_name(name: &str) -> Option<ParseFormat> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionRule {
    pub expression: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetContextVarsRule {
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CovRule {
    pub key: String,
    #[serde(default)]
    pub deadband: Option<f64>,
    #[serde(default)]
    pub deadband_mode: Option<DeadbandMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadbandMode {
    Absolute,
    Relative,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BurstRule {
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub max_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CollectRule {
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StashRule {
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mapping {
    pub mappings: Vec<MappingEntry>,
    #[serde(default)]
    pub target_state: MappingTargetState,
    /// The protocol-mapper agent this mapping runs on (Connectware: `Cybus::Mapping`
    /// `agentName`, https://docs.cybus.io/ "Agents"); the gateway when absent.
    #[serde(default)]
    pub agent_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingEntry {
    pub subscribe: OneOrMany<Source>,
    pub publish: Sink,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One item or a list of them (a mapping's `subscribe`). Deserialized by hand rather than as an
/// untagged enum, so a problem inside an item is reported at its path with its own message, and
/// anything else gets one that names the expected shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping (`endpoint: !ref ...` or `topic: ...`) or a list of them")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one).iter(),
            OneOrMany::Many(many) => many.iter(),
        }
    }
}

/// Where a mapping reads: an endpoint of the gateway or a topic (internal, or of an MQTT
/// connection).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub endpoint: Option<ResourceRef>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub qos: Option<Qos>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub connection: Option<ResourceRef>,
}

/// Where a mapping writes: a write endpoint or a topic.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    #[serde(default)]
    pub endpoint: Option<ResourceRef>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub qos: Option<Qos>,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub connection: Option<ResourceRef>,
}

/// `{resource, operation, context}`: the unit of every access decision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub resource: String,
    pub operation: AccessOperation,
    pub context: AccessContext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessOperation {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessContext {
    Mqtt,
    Http,
}

impl AccessOperation {
    /// As written in commissioning files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOperation::Read => "read",
            AccessOperation::Write => "write",
            AccessOperation::ReadWrite => "readWrite",
        }
    }
}

impl AccessContext {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessContext::Mqtt => "mqtt",
            AccessContext::Http => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub password: String,
    #[serde(default)]
    pub roles: Vec<ResourceRef>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// `Cybus::Server::Http`: routes on the gateway's own HTTP and HTTPS ports below
/// `/data<basePath>`, one per `Cybus::Node::Http`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpServer {
    /// Between `/data` and each node's route: `/press` serves `/data/press/...`.
    #[serde(default)]
    pub base_path: String,
    /// The largest request body accepted, in bytes (1-512000).
    #[serde(default = "default_request_max_body_size")]
    pub request_max_body_size: usize,
}

/// The most a `requestMaxBodySize` may be (Connectware's bound).
pub const HTTP_SERVER_MAX_BODY: usize = 512_000;

fn default_request_max_body_size() -> usize {
    100_000
}

/// `Cybus::Node::Http`: one route of an HTTP server. POST and PUT publish the request body on
/// the node's topic; GET answers the last message on it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpNode {
    pub parent: ResourceRef,
    pub method: HttpNodeMethod,
    /// After the server's `basePath`: `/temperature`.
    pub route: String,
    /// Under the service's topic root; the node's id unless given.
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpNodeMethod {
    Post,
    Put,
    Get,
}

impl HttpNodeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpNodeMethod::Post => "POST",
            HttpNodeMethod::Put => "PUT",
            HttpNodeMethod::Get => "GET",
        }
    }
}

/// The path an HTTP node serves: `/data`, the server's `basePath`, the node's `route`, with
/// one `/` between them whatever the file wrote.
pub fn http_node_path(base_path: &str, route: &str) -> String {
    let mut path = String::from("/data");
    for part in [base_path, route] {
        for segment in part.split('/').filter(|s| !s.is_empty()) {
            path.push('/');
            path.push_str(segment);
        }
    }
    path
}

/// A resource of any supported type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "properties")]
pub enum ResourceKind {
    #[serde(rename = "Cybus::Connection")]
    Connection(Connection),
    #[serde(rename = "Cybus::Endpoint")]
    Endpoint(Endpoint),
    #[serde(rename = "Cybus::Mapping")]
    Mapping(Mapping),
    #[serde(rename = "Cybus::User")]
    User(User),
    #[serde(rename = "Cybus::Role")]
    Role(Role),
    #[serde(rename = "Cybus::Server::Http")]
    HttpServer(HttpServer),
    #[serde(rename = "Cybus::Node::Http")]
    HttpNode(HttpNode),
    #[serde(rename = "Cybus::Server::Opcua")]
    OpcuaServer(OpcuaServer),
    #[serde(rename = "Cybus::Node::Opcua")]
    OpcuaNode(OpcuaNode),
}

impl ResourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ResourceKind::Connection(_) => "Cybus::Connection",
            ResourceKind::Endpoint(_) => "Cybus::Endpoint",
            ResourceKind::Mapping(_) => "Cybus::Mapping",
            ResourceKind::User(_) => "Cybus::User",
            ResourceKind::Role(_) => "Cybus::Role",
            ResourceKind::HttpServer(_) => "Cybus::Server::Http",
            ResourceKind::HttpNode(_) => "Cybus::Node::Http",
            ResourceKind::OpcuaServer(_) => "Cybus::Server::Opcua",
            ResourceKind::OpcuaNode(_) => "Cybus::Node::Opcua",
        }
    }
}

pub const RESOURCE_TYPES: [&str; 9] = [
    "Cybus::Connection",
    "Cybus::Endpoint",
    "Cybus::Mapping",
    "Cybus::User",
    "Cybus::Role",
    "Cybus::Server::Http",
    "Cybus::Node::Http",
    "Cybus::Server::Opcua",
    "Cybus::Node::Opcua",
];

/// `Cybus::Server::Opcua`: the gateway's OPC UA server, one per gateway, at
/// `opc.tcp://<hostname>:<port><resourcePath>`. Its address space is the `Cybus::Node::Opcua`
/// resources of every service, below the Objects folder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaServer {
    #[serde(default = "default_opcua_server_port")]
    pub port: u16,
    #[serde(default = "default_opcua_server_path")]
    pub resource_path: String,
    #[serde(default = "default_opcua_server_uri")]
    pub application_uri: String,
    /// The host name in the endpoint URLs and the server certificate.
    #[serde(default = "default_opcua_server_hostname")]
    pub hostname: String,
    /// More names the certificate carries (other DNS names or addresses of the machine).
    #[serde(default)]
    pub alternate_hostname: Vec<String>,
    #[serde(default)]
    pub allow_anonymous: bool,
    #[serde(default = "default_opcua_server_policies")]
    pub security_policies: Vec<SecurityPolicy>,
    #[serde(default = "default_opcua_server_modes")]
    pub security_modes: Vec<MessageSecurityMode>,
}

fn default_opcua_server_port() -> u16 {
    4841
}
fn default_opcua_server_path() -> String {
    "/UA/CybusOpcuaServer".into()
}
fn default_opcua_server_uri() -> String {
    "urn:ironbridge:opcua-server".into()
}
fn default_opcua_server_hostname() -> String {
    "localhost".into()
}
fn default_opcua_server_policies() -> Vec<SecurityPolicy> {
    vec![
        SecurityPolicy::Basic256Sha256,
        SecurityPolicy::Aes128Sha256RsaOaep,
        SecurityPolicy::Aes256Sha256RsaPss,
    ]
}
fn default_opcua_server_modes() -> Vec<MessageSecurityMode> {
    vec![MessageSecurityMode::SignAndEncrypt]
}

impl OpcuaServer {
    /// The endpoints offered: every policy with every mode, `None` only with `None`.
    pub fn endpoints(&self) -> Vec<(SecurityPolicy, MessageSecurityMode)> {
        let mut endpoints = Vec::new();
        for policy in &self.security_policies {
            for mode in &self.security_modes {
                let plain = *policy == SecurityPolicy::None;
                if plain == (*mode == MessageSecurityMode::None) {
                    endpoints.push((*policy, *mode));
                }
            }
        }
        endpoints.dedup();
        endpoints
    }
}

/// `Cybus::Node::Opcua`: a folder (`Object`) or a `Variable` of the gateway's OPC UA server.
/// A variable is fed from its topic (`serverProvides`: `{"value"}` or the whole payload), or
/// publishes what clients write to it there (`serverReceives`), or both.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpcuaNode {
    /// The server (for a top node) or the node above.
    pub parent: ResourceRef,
    pub node_type: OpcuaServerNodeType,
    pub browse_name: String,
    /// `ns=1;s=spindleSpeed`: the identifier is kept, in the gateway's namespace;
    /// `<service>.<resource>` unless given.
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub data_type: Option<OpcuaServerDataType>,
    /// -1 (a scalar, the default) or 1 (an array).
    #[serde(default = "scalar_rank")]
    pub value_rank: i32,
    #[serde(default)]
    pub operation: Option<OpcuaNodeOperation>,
    #[serde(default)]
    pub initial_value: Option<Json>,
    /// Under the service's topic root; the node's id unless given.
    #[serde(default)]
    pub topic: Option<String>,
}

fn scalar_rank() -> i32 {
    -1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OpcuaServerNodeType {
    Object,
    Variable,
    Method,
}

/// The built-in types a variable of the gateway's server can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum OpcuaServerDataType {
    Boolean,
    SByte,
    Byte,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float,
    Double,
    String,
    DateTime,
    ByteString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OpcuaNodeOperation {
    /// Clients read (and subscribe to) the value the topic brings.
    #[default]
    ServerProvides,
    /// Clients write; each write is published on the topic.
    ServerReceives,
    ServerProvidesReceives,
}

impl OpcuaNodeOperation {
    pub fn provides(self) -> bool {
        matches!(
            self,
            OpcuaNodeOperation::ServerProvides | OpcuaNodeOperation::ServerProvidesReceives
        )
    }
    pub fn receives(self) -> bool {
        matches!(
            self,
            OpcuaNodeOperation::ServerReceives | OpcuaNodeOperation::ServerProvidesReceives
        )
    }
}
