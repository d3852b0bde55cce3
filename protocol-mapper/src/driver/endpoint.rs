//! An endpoint as a connection runs it.

use broker::QoS;
use bytes::Bytes;
use commissioning::model::{Address, Operation};
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// `<service>::<resource>`, unique across services.
    pub id: String,
    /// The full data topic (`services/<id>/<topic>`); requests arrive on `.../req` or `.../set`.
    pub topic: String,
    pub operation: Operation,
    /// The protocol's address; a driver refuses addresses of another protocol.
    pub address: Address,
    pub qos: QoS,
    pub retain: bool,
    /// Set when the endpoint has a rule chain: data goes to the chain's task, which publishes
    /// what comes out, instead of straight to `topic`.
    pub rules: Option<mpsc::Sender<Bytes>>,
}

impl EndpointSpec {
    /// The topic requests arrive on: `.../set` for write endpoints, `.../req` for read ones.
    /// Subscribe endpoints take no requests.
    pub fn request_topic(&self) -> Option<String> {
        match self.operation {
            Operation::Write => Some(format!("{}/set", self.topic)),
            Operation::Read => Some(format!("{}/req", self.topic)),
            Operation::Subscribe => None,
        }
    }

    pub fn response_topic(&self) -> String {
        format!("{}/res", self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commissioning::model::{ModbusAddress, ModbusDataType};

    fn endpoint(operation: Operation) -> EndpointSpec {
        EndpointSpec {
            id: "line::speed".into(),
            topic: "services/line/speed".into(),
            operation,
            address: Address::Modbus(ModbusAddress {
                fc: 3,
                address: 0,
                length: 1,
                data_type: Some(ModbusDataType::Uint16Be),
                unit_id: None,
                interval: None,
                cron_expression: None,
            }),
            qos: QoS::AtMostOnce,
            retain: false,
            rules: None,
        }
    }

    #[test]
    fn reads_take_req_writes_take_set_and_subscriptions_take_nothing() {
        let topics = [Operation::Read, Operation::Write, Operation::Subscribe]
            .map(|operation| endpoint(operation).request_topic());
        assert_eq!(
            topics,
            [
                Some("services/line/speed/req".to_string()),
                Some("services/line/speed/set".to_string()),
                None
            ]
        );
        assert_eq!(
            endpoint(Operation::Read).response_topic(),
            "services/line/speed/res"
        );
    }
}
