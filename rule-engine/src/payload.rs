//! A message's payload on its way through a chain: the bytes as they arrived, the JSON value
//! they parse to, or both. Rules that only read (filter, cov, stash) parse once and keep the
//! bytes, so a payload no rule changed leaves exactly as it came.

use crate::expression::JValue;
use bytes::Bytes;

pub struct Payload {
    bytes: Option<Bytes>,
    value: Option<JValue>,
}

impl Payload {
    pub fn from_bytes(bytes: Bytes) -> Payload {
        Payload {
            bytes: Some(bytes),
            value: None,
        }
    }

    pub fn from_value(value: JValue) -> Payload {
        Payload {
            bytes: None,
            value: Some(value),
        }
    }

    /// The payload as JSON, parsed on first use.
    pub fn value(&mut self) -> Result<&JValue, String> {
        if self.value.is_none() {
            let bytes = self.bytes.as_deref().unwrap_or_default();
            let value: JValue = serde_json::from_slice(bytes).map_err(|e| {
                format!("the payload is not JSON ({e}); a `parse` rule can read other formats")
            })?;
            self.value = Some(value);
        }
        Ok(self.value.as_ref().unwrap_or(&JValue::Undefined))
    }

    /// The raw bytes when the payload has not been replaced by a value.
    pub fn raw(&self) -> Option<&Bytes> {
        self.bytes.as_ref()
    }

    /// The payload as JSON text, checked: what collect and burst keep and what gets published.
    pub fn json_bytes(&mut self) -> Result<Bytes, String> {
        if let Some(bytes) = &self.bytes {
            if self.value.is_none() {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
                    format!("the payload is not JSON ({e}); a `parse` rule can read other formats")
                })?;
            }
            return Ok(bytes.clone());
        }
        let bytes = encode(self.value.as_ref().unwrap_or(&JValue::Undefined))?;
        self.bytes = Some(bytes.clone());
        Ok(bytes)
    }

    /// The bytes to publish: unchanged input as it came (JSON or not), a new value encoded.
    pub fn into_bytes(self) -> Result<Bytes, String> {
        match (self.bytes, self.value) {
            (Some(bytes), _) => Ok(bytes),
            (None, Some(value)) => encode(&value),
            (None, None) => Ok(Bytes::new()),
        }
    }
}

fn encode(value: &JValue) -> Result<Bytes, String> {
    match value {
        JValue::Undefined => Err("the rules produced no value (undefined)".into()),
        JValue::Lambda(_) | JValue::Builtin { .. } => {
            Err("the rules produced a function, which has no JSON form".into())
        }
        other => other
            .to_json_string()
            .map(Bytes::from)
            .map_err(|e| format!("the result cannot be written as JSON: {e}")),
    }
}
