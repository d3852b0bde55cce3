//! The `collect` rule: keeps the last payload per label and emits all of them as one object on
//! every input, `{"<label>": <payload>, ...}` in label order. The label is the subscription's
//! `label` (which may use its named wildcards), else the concrete topic; the rule's own `label`
//! overrides both. New labels beyond [`MAX_LABELS`], and payloads that would take the whole
//! collection past [`MAX_BYTES`], are refused, so a wildcard over an open set of topics cannot
//! grow it without bound.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

pub const MAX_LABELS: usize = 10_000;
pub const MAX_BYTES: usize = 16 << 20;

#[derive(Debug)]
pub struct Collect {
    values: BTreeMap<String, Bytes>,
    /// Labels and payloads held, in bytes.
    size: usize,
    max_labels: usize,
}

impl Default for Collect {
    fn default() -> Collect {
        Collect::with_max_labels(MAX_LABELS)
    }
}

impl Collect {
    pub fn with_max_labels(max_labels: usize) -> Collect {
        Collect {
            values: BTreeMap::new(),
            size: 0,
            max_labels,
        }
    }

    /// Records `item` (JSON text) under `label` and returns the whole collection.
    pub fn add(&mut self, label: String, item: Bytes) -> Result<Bytes, String> {
        if self.values.len() >= self.max_labels && !self.values.contains_key(&label) {
            return Err(format!(
                "`collect` already holds {} labels; `{label}` is refused",
                self.max_labels
            ));
        }
        let replaced = self
            .values
            .get(&label)
            .map_or(0, |old| old.len() + label.len());
        let size = self.size - replaced + label.len() + item.len();
        if size > MAX_BYTES {
            return Err(format!(
                "`collect` would hold more than {} MiB; `{label}` is refused",
                MAX_BYTES >> 20
            ));
        }
        self.size = size;
        self.values.insert(label, item);
        let mut object = BytesMut::with_capacity(size + 4 * self.values.len() + 2);
        object.put_u8(b'{');
        for (i, (label, value)) in self.values.iter().enumerate() {
            if i > 0 {
                object.put_u8(b',');
            }
            let key = serde_json::to_string(label).map_err(|e| e.to_string())?;
            object.put_slice(key.as_bytes());
            object.put_u8(b':');
            object.put_slice(value);
        }
        object.put_u8(b'}');
        Ok(object.freeze())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn last_payload_per_label_on_every_input() {
        let mut c = Collect::default();
        let add = |c: &mut Collect, label: &str, v: &'static str| {
            String::from_utf8(
                c.add(label.into(), Bytes::from_static(v.as_bytes()))
                    .unwrap()
                    .to_vec(),
            )
            .unwrap()
        };
        assert_eq!(add(&mut c, "temp", "21"), r#"{"temp":21}"#);
        assert_eq!(
            add(&mut c, "press", "{\"bar\":2}"),
            r#"{"press":{"bar":2},"temp":21}"#
        );
        assert_eq!(
            add(&mut c, "temp", "22"),
            r#"{"press":{"bar":2},"temp":22}"#
        );
        assert_eq!(
            add(&mut c, "m\"1", "1"),
            r#"{"m\"1":1,"press":{"bar":2},"temp":22}"#
        );
    }

    #[test]
    fn labels_are_bounded() {
        let mut c = Collect::with_max_labels(3);
        for i in 0..3 {
            c.add(format!("l{i}"), Bytes::from_static(b"0")).unwrap();
        }
        assert!(c.add("one-more".into(), Bytes::from_static(b"0")).is_err());
        assert!(
            c.add("l1".into(), Bytes::from_static(b"1")).is_ok(),
            "known labels still update"
        );
        let big = Bytes::from(vec![b'1'; MAX_BYTES]);
        assert!(c.add("l2".into(), big).unwrap_err().contains("MiB"));
        let object = c.add("l2".into(), Bytes::from_static(b"2")).unwrap();
        assert_eq!(
            &object[..],
            br#"{"l0":0,"l1":1,"l2":2}"#,
            "a refusal changes nothing"
        );
    }
}
