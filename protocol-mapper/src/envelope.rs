//! Payloads: endpoint data, requests on `/req` and `/set`, answers on `/res`,
//! and connection status. Pure.

use serde_json::{Value as Json, json};

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `{"timestamp": <unix ms>, "value": ...}`
pub fn data(value: Json, timestamp: i64) -> Vec<u8> {
    json!({"timestamp": timestamp, "value": value})
        .to_string()
        .into_bytes()
}

/// A request: `{"id": any?, "value": v}`, or a bare JSON value taken as `value`. A payload that
/// is not JSON is an error answered on `/res` (without an id).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMessage {
    pub id: Option<Json>,
    pub value: Json,
}

pub fn parse_request(payload: &[u8]) -> Result<RequestMessage, String> {
    let json: Json =
        serde_json::from_slice(payload).map_err(|e| format!("the request is not JSON: {e}"))?;
    match json {
        Json::Object(mut map) if map.contains_key("value") || map.contains_key("id") => {
            Ok(RequestMessage {
                id: map.remove("id"),
                value: map.remove("value").unwrap_or(Json::Null),
            })
        }
        other => Ok(RequestMessage {
            id: None,
            value: other,
        }),
    }
}

/// `{"id", "timestamp", "result": {"value"}}`
pub fn result(id: Option<Json>, value: Json, timestamp: i64) -> Vec<u8> {
    json!({"id": id, "timestamp": timestamp, "result": {"value": value}})
        .to_string()
        .into_bytes()
}

/// `{"id", "timestamp", "error": {"message", "code"?}}`
pub fn error(id: Option<Json>, message: &str, code: Option<Json>, timestamp: i64) -> Vec<u8> {
    let mut error = json!({"message": message});
    if let Some(code) = code {
        error["code"] = code;
    }
    json!({"id": id, "timestamp": timestamp, "error": error})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_and_without_envelope() {
        assert_eq!(
            parse_request(br#"{"id": 7, "value": 12.5}"#),
            Ok(RequestMessage {
                id: Some(json!(7)),
                value: json!(12.5)
            })
        );
        assert_eq!(
            parse_request(b"42"),
            Ok(RequestMessage {
                id: None,
                value: json!(42)
            })
        );
        assert_eq!(
            parse_request(br#"{"id": "a"}"#),
            Ok(RequestMessage {
                id: Some(json!("a")),
                value: Json::Null
            })
        );
        assert_eq!(
            parse_request(br#"{"speed": 3}"#),
            Ok(RequestMessage {
                id: None,
                value: json!({"speed": 3})
            })
        );
        assert!(parse_request(b"not json").is_err());
    }

    #[test]
    fn answers() {
        let ok: Json = serde_json::from_slice(&result(Some(json!(1)), json!(5), 10)).expect("json");
        assert_eq!(
            ok,
            json!({"id": 1, "timestamp": 10, "result": {"value": 5}})
        );
        let err: Json =
            serde_json::from_slice(&error(None, "no", Some(json!(2)), 10)).expect("json");
        assert_eq!(
            err,
            json!({"id": null, "timestamp": 10, "error": {"message": "no", "code": 2}})
        );
    }
}
