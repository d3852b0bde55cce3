//! What an HTTP body becomes in a `{"timestamp", "value"}` message. Pure, so the rules are
//! tested without a server.

use base64::Engine as _;
use serde_json::Value as Json;

/// The most of an answer the driver reads (1 MiB): a REST resource a gateway polls is far
/// smaller, and a server must not make the gateway hold more.
pub const MAX_BODY: usize = 1024 * 1024;

/// JSON when the body parses as JSON, else its text, else (not UTF-8) its bytes in base64;
/// an empty body is `null`.
pub fn value(bytes: &[u8]) -> Json {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Json::Null;
    }
    if let Ok(json) = serde_json::from_slice(bytes) {
        return json;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Json::String(text.to_string()),
        Err(_) => Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_then_text_then_base64() {
        assert_eq!(
            value(br#"{"temperature": 21.5}"#),
            json!({"temperature": 21.5})
        );
        assert_eq!(value(b"42"), json!(42));
        assert_eq!(value(b"running"), json!("running"));
        assert_eq!(value(b"{broken"), json!("{broken"));
        assert_eq!(value(&[0xff, 0x00, 0x10]), json!("/wAQ"));
        assert_eq!(value(b""), Json::Null);
        assert_eq!(value(b" \n"), Json::Null);
    }
}
