//! What `stash` keeps for `$last("label")` and `$last()`: the JSON text of the last payload per
//! label and of the last one stashed under any label. Shared cheaply with the `$last` function
//! of an evaluation, and copied on write only while an evaluation holds it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::expression::JValue;
use bytes::Bytes;

#[derive(Debug, Clone, Default)]
pub struct Stash(Arc<Stored>);

#[derive(Debug, Clone, Default)]
struct Stored {
    by_label: HashMap<String, Bytes>,
    latest: Option<Bytes>,
}

impl Stash {
    /// Keeps `payload` (JSON text) under `label`.
    pub fn put(&mut self, label: &str, payload: Bytes) {
        let stored = Arc::make_mut(&mut self.0);
        stored.latest = Some(payload.clone());
        stored.by_label.insert(label.to_string(), payload);
    }

    /// `$last(label)` or `$last()`: the stashed payload, undefined before the first one.
    pub fn last(&self, args: &[JValue]) -> Result<JValue, String> {
        let stored = match args {
            [] => self.0.latest.as_ref(),
            [JValue::String(label)] => self.0.by_label.get(&**label),
            [JValue::Undefined] => None,
            _ => {
                return Err(
                    "$last takes one string, the label of a `stash` rule, or nothing".into(),
                );
            }
        };
        match stored {
            None => Ok(JValue::Undefined),
            Some(text) => serde_json::from_slice(text).map_err(|e| format!("stashed payload: {e}")),
        }
    }
}
