//! The Connectware schema Ironbridge follows, in one place: every property of every part of a
//! commissioning file that Connectware documents, with the page that documents it and what
//! Ironbridge does with it. Users arrive with files written for Connectware, so:
//!
//! - an [`Support::Implemented`] property means what Connectware's page says;
//! - an [`Support::Ignored`] property is accepted with a warning that says why it has no
//!   effect, and the file still installs;
//! - an [`Support::Extension`] is Ironbridge's own (documented in the README);
//! - anything else is an error that suggests the nearest known name (`typed.rs`).
//!
//! Closing a gap is a change of one line here plus the model field. A test checks that this
//! table and the serde models agree: every implemented property is a field, no ignored one is.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::resolve::position_of;

/// What Ironbridge does with a documented property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Implemented,
    /// Accepted and ignored; the text says why, for the warning.
    Ignored(&'static str),
    /// Not in Connectware's schema: Ironbridge's own addition.
    Extension,
}

/// One part of a file with its own set of properties: a resource type's `properties`, or a
/// protocol's `connection` or endpoint address.
#[derive(Debug)]
pub struct Section {
    pub name: &'static str,
    /// Where Connectware documents these properties.
    pub source: &'static str,
    pub properties: &'static [(&'static str, Support)],
}

use Support::{Extension, Ignored, Implemented};

pub const CONNECTION: Section = Section {
    name: "Cybus::Connection",
    source: "https://docs.cybus.io/documentation/services/service-commissioning-files/resources/cybus-connection",
    properties: &[
        ("protocol", Implemented),
        ("connection", Implemented),
        ("targetState", Implemented),
        ("agentName", Implemented),
    ],
};

pub const ENDPOINT: Section = Section {
    name: "Cybus::Endpoint",
    source: "https://docs.cybus.io/documentation/services/service-commissioning-files/resources/cybus-endpoint",
    properties: &[
        ("protocol", Implemented),
        ("connection", Implemented),
        ("subscribe", Implemented),
        ("read", Implemented),
        ("write", Implemented),
        ("topic", Implemented),
        ("qos", Implemented),
        ("retain", Implemented),
        ("rules", Implemented),
        (
            "targetState",
            Ignored(
                "an endpoint runs while its connection is connected; disable the service or set the connection's `targetState` instead",
            ),
        ),
    ],
};

pub const MAPPING: Section = Section {
    name: "Cybus::Mapping",
    source: "https://docs.cybus.io/documentation/services/service-commissioning-files/resources/cybus-mapping",
    properties: &[
        ("mappings", Implemented),
        ("targetState", Implemented),
        ("agentName", Implemented),
        (
            "inputBuffering",
            Ignored(
                "every mapping entry already takes its messages one at a time, in order, through a bounded queue",
            ),
        ),
    ],
};

pub const OPCUA_CONNECTION: Section = Section {
    name: "Opcua connection",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/opc-ua/opc-ua-client/opcuaconnection",
    properties: &[
        ("host", Implemented),
        ("port", Implemented),
        ("resourcePath", Implemented),
        ("username", Implemented),
        ("password", Implemented),
        ("options", Implemented),
        ("connectionStrategy", Implemented),
        ("clientCertificate", Extension),
        ("clientPrivateKey", Extension),
        ("trustedServerCertificates", Extension),
    ],
};

pub const OPCUA_OPTIONS: Section = Section {
    name: "Opcua connection options",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/opc-ua/opc-ua-client/opcuaconnection",
    properties: &[
        ("securityPolicy", Implemented),
        ("messageSecurityMode", Implemented),
        ("connectionStrategy", Implemented),
    ],
};

pub const OPCUA_ENDPOINT: Section = Section {
    name: "Opcua endpoint",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/opc-ua/opc-ua-client/opcuaendpoint",
    properties: &[
        ("nodeId", Implemented),
        ("browsePath", Implemented),
        ("browsePathPrefix", Implemented),
        ("nodeType", Implemented),
        ("publishInterval", Implemented),
        ("samplingInterval", Implemented),
        // Not on the current page, but in many published files (`subscribe: {nodeId,
        // interval}`): the sampling interval of older Connectware versions.
        ("interval", Implemented),
        (
            "fields",
            Ignored("OPC UA events are not supported; the endpoint reads the node's value"),
        ),
        (
            "eventTypes",
            Ignored("OPC UA events are not supported; the endpoint reads the node's value"),
        ),
    ],
};

pub const MODBUS_CONNECTION: Section = Section {
    name: "Modbus connection",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/modbus-tcp/modbusconnection",
    properties: &[
        ("host", Implemented),
        ("port", Implemented),
        ("unitId", Implemented),
        ("transport", Extension),
        ("device", Extension),
        ("baudRate", Extension),
        ("dataBits", Extension),
        ("parity", Extension),
        ("stopBits", Extension),
        ("socketTimeout", Implemented),
        ("batchReadEnabled", Implemented),
        ("maxBatchSize", Implemented),
        ("connectionStrategy", Implemented),
    ],
};

pub const MODBUS_ENDPOINT: Section = Section {
    name: "Modbus endpoint",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/modbus-tcp/modbusendpoint",
    properties: &[
        ("fc", Implemented),
        ("address", Implemented),
        ("length", Implemented),
        ("dataType", Implemented),
        ("unitId", Implemented),
        ("interval", Implemented),
        ("cronExpression", Implemented),
    ],
};

pub const MQTT_CONNECTION: Section = Section {
    name: "Mqtt connection",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/mqtt/mqttconnection",
    properties: &[
        ("host", Implemented),
        ("port", Implemented),
        ("scheme", Implemented),
        ("protocolVersion", Implemented),
        ("websocketPath", Implemented),
        ("clientId", Implemented),
        ("username", Implemented),
        ("password", Implemented),
        ("keepalive", Implemented),
        ("clean", Implemented),
        ("caCert", Implemented),
        ("clientCert", Implemented),
        ("clientPrivateKey", Implemented),
        ("mutualAuthentication", Implemented),
        ("trustAllCertificates", Implemented),
        ("connectionStrategy", Implemented),
    ],
};

pub const MQTT_ENDPOINT: Section = Section {
    name: "Mqtt endpoint",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/mqtt/mqttendpoint",
    properties: &[
        ("topic", Implemented),
        ("qos", Implemented),
        ("retain", Implemented),
    ],
};

pub const HTTP_CONNECTION: Section = Section {
    name: "Http connection",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/http-rest/httpconnection",
    properties: &[
        ("scheme", Implemented),
        ("host", Implemented),
        ("port", Implemented),
        ("prefix", Implemented),
        ("headers", Implemented),
        ("query", Implemented),
        ("auth", Implemented),
        ("oauthClientCredentials", Implemented),
        ("probeInterval", Implemented),
        ("probeTimeout", Implemented),
        ("probePath", Implemented),
        ("probeMethod", Implemented),
        ("mutualAuthentication", Implemented),
        ("trustAllCertificates", Implemented),
        ("caCert", Implemented),
        ("clientCert", Implemented),
        ("clientPrivateKey", Implemented),
        ("connectionStrategy", Implemented),
        ("requestTimeout", Extension),
    ],
};

pub const HTTP_ENDPOINT: Section = Section {
    name: "Http endpoint",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/http-rest/httpendpoint",
    properties: &[
        ("path", Implemented),
        ("method", Implemented),
        ("interval", Implemented),
        ("cronExpression", Implemented),
        ("headers", Implemented),
        ("query", Implemented),
    ],
};

pub const HTTP_SERVER: Section = Section {
    name: "Cybus::Server::Http",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/http-server/httpserver",
    properties: &[
        ("basePath", Implemented),
        ("requestMaxBodySize", Implemented),
    ],
};

pub const HTTP_NODE: Section = Section {
    name: "Cybus::Node::Http",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/http-server/httpnode",
    properties: &[
        ("parent", Implemented),
        ("method", Implemented),
        ("route", Implemented),
        ("topic", Extension),
    ],
};

// The server page documents the port (4841), `hostname`, `resourcePath` (default
// /UA/CybusOpcuaServer) and `securityModes` (SignAndEncrypt only by default); the other
// properties are node-opcua's server options, which Connectware passes on.
pub const OPCUA_SERVER: Section = Section {
    name: "Cybus::Server::Opcua",
    source: "https://docs.cybus.io/connectors/servers/opc-ua-server",
    properties: &[
        ("port", Implemented),
        ("resourcePath", Implemented),
        ("applicationUri", Implemented),
        ("hostname", Implemented),
        ("alternateHostname", Implemented),
        ("allowAnonymous", Implemented),
        ("securityPolicies", Implemented),
        ("securityModes", Implemented),
    ],
};

pub const OPCUA_NODE: Section = Section {
    name: "Cybus::Node::Opcua",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/opc-ua/opc-ua-server/opcuanode",
    properties: &[
        ("parent", Implemented),
        ("operation", Implemented),
        ("nodeType", Implemented),
        ("browseName", Implemented),
        ("nodeId", Implemented),
        ("dataType", Implemented),
        ("valueRank", Implemented),
        ("initialValue", Implemented),
        ("topic", Extension),
        (
            "historize",
            Ignored("the server keeps no history; clients read and subscribe to current values"),
        ),
        ("interpolation", Ignored("the server keeps no history")),
        ("maxTimeInterval", Ignored("the server keeps no history")),
        ("minTimeInterval", Ignored("the server keeps no history")),
        ("inputArguments", Ignored("method nodes are not supported")),
        ("outputArguments", Ignored("method nodes are not supported")),
    ],
};

// Connectware's page for the classic S7 protocol was not in the documentation we could read;
// its S7+ page (below) documents `host`, `port` 102, `rack` 0 and `slot` 1 the same way, and
// Connectware's published S7 files add `pollInterval` and `connectionStrategy`. The addresses
// follow the notation those files use (nodes7's: `DB10,REAL4`, `DB1,X0.1`, `DB3,S20.10`), plus
// the Step 7 form (`DB1.DBW0`); see `s7_address.rs`.
pub const S7_CONNECTION: Section = Section {
    name: "S7 connection",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/siemens-simatic-s7+/s7plusconnection",
    properties: &[
        ("host", Implemented),
        ("port", Implemented),
        ("rack", Implemented),
        ("slot", Implemented),
        ("pollInterval", Implemented),
        ("connectionStrategy", Implemented),
        ("localTSAP", Extension),
        ("remoteTSAP", Extension),
        ("pduSize", Extension),
        ("requestTimeout", Extension),
    ],
};

pub const S7_ENDPOINT: Section = Section {
    name: "S7 endpoint",
    source: "https://docs.cybus.io/documentation/industry-protocol-details/siemens-simatic-s7+/s7plusendpoint",
    properties: &[
        ("address", Implemented),
        ("dataType", Implemented),
        ("interval", Extension),
        ("cronExpression", Extension),
    ],
};

/// Every section, for the README's support matrix and the consistency test.
pub const SECTIONS: &[&Section] = &[
    &CONNECTION,
    &ENDPOINT,
    &MAPPING,
    &OPCUA_CONNECTION,
    &OPCUA_OPTIONS,
    &OPCUA_ENDPOINT,
    &MODBUS_CONNECTION,
    &MODBUS_ENDPOINT,
    &MQTT_CONNECTION,
    &MQTT_ENDPOINT,
    &HTTP_CONNECTION,
    &HTTP_ENDPOINT,
    &S7_CONNECTION,
    &S7_ENDPOINT,
    &HTTP_SERVER,
    &HTTP_NODE,
    &OPCUA_SERVER,
    &OPCUA_NODE,
];

impl Section {
    /// Takes the ignored properties out of `value` (an object at `path`), each with a warning,
    /// so what remains is typed against the model.
    pub(crate) fn take_ignored(
        &self,
        value: &mut Json,
        path: &str,
        positions: &BTreeMap<String, Pos>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let Json::Object(map) = value else { return };
        for (name, support) in self.properties {
            if let Support::Ignored(why) = support
                && map.remove(*name).is_some()
            {
                let p = join(path, name);
                diagnostics.push(Diagnostic::warning(
                    &p,
                    position_of(positions, &p),
                    format!("ignored: Ironbridge does not implement `{name}` ({why})"),
                ));
            }
        }
    }
}
