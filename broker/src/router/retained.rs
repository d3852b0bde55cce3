//! Retained messages: the last retained message per topic, in a tree of topic levels so a
//! subscription finds its retained messages by walking only the branches its filter can match.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::time::Instant;
use tracing::warn;

use crate::message::Message;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }

    /// Every message at or below this node, for `#`.
    fn all(&self, out: &mut Vec<Arc<Message>>) {
        out.extend(self.message.iter().cloned());
        for child in self.children.values() {
            child.all(out);
        }
    }
}

pub(crate) struct RetainedStore {
    root: Node,
    len: usize,
    limit: usize,
    /// Topics and payloads of every kept message, against `max_bytes`.
    bytes: usize,
    max_bytes: usize,
    warned_full: bool,
}

/// What a retained message weighs against the byte bound.
fn weight(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

/// A copy of a message whose topic and payload are allocations of their own. A received
/// message is a slice of its publisher's read buffer (up to 16 KiB, shared with the messages
/// around it); kept for as long as a retained message is, the slice would hold the whole
/// buffer, and the byte bound would count a fraction of what the store really holds.
fn owned(message: &Message) -> Message {
    Message {
        topic: ByteString::from(&*message.topic),
        payload: Bytes::copy_from_slice(&message.payload),
        qos: message.qos,
        retain: message.retain,
        properties: message.properties.clone(),
        expires_at: message.expires_at,
        origin: message.origin,
    }
}

impl RetainedStore {
    pub fn new(limit: usize, max_bytes: usize) -> RetainedStore {
        RetainedStore {
            root: Node::default(),
            len: 0,
            limit,
            bytes: 0,
            max_bytes,
            warned_full: false,
        }
    }

    /// Bytes of topics and payloads kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets, replaces, or (with an empty payload) clears the retained message of its topic.
    /// Returns false when the message is not kept: a new topic while the store holds
    /// `max_retained_messages`, or one that would take the store beyond `max_retained_bytes`
    /// (logged once).
    pub fn store(&mut self, message: &Arc<Message>) -> bool {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return true;
        }
        let replaced = self.find(&message.topic).map_or(0, |old| weight(old));
        if self.bytes - replaced + weight(message) > self.max_bytes {
            self.warn_full(&message.topic);
            return false;
        }
        let full = self.len >= self.limit;
        let mut node = &mut self.root;
        for level in message.topic.split('/') {
            // Look up before inserting: a retained topic is usually updated, not new, and the
            // key allocation is only needed for a new level.
            if !node.children.contains_key(level) {
                if full {
                    self.warn_full(&message.topic);
                    return false;
                }
                node.children.insert(level.into(), Node::default());
            }
            let Some(child) = node.children.get_mut(level) else {
                return false; // inserted just above
            };
            node = child;
        }
        if node.message.is_none() {
            if full {
                self.warn_full(&message.topic);
                return false;
            }
            self.len += 1;
        }
        self.bytes = self.bytes - replaced + weight(message);
        node.message = Some(Arc::new(owned(message)));
        true
    }

    /// The retained message of `topic`, if any.
    fn find(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    fn warn_full(&mut self, topic: &str) {
        if !self.warned_full {
            warn!(
                max_messages = self.limit,
                max_bytes = self.max_bytes,
                topic,
                "Retained store is full; retained messages beyond its limits are not kept"
            );
            self.warned_full = true;
        }
    }

    fn remove(&mut self, topic: &str) {
        if let Some(removed) = remove_in(&mut self.root, topic.split('/')) {
            self.len -= 1;
            self.bytes -= weight(&removed);
        }
    }

    /// Calls `found` for every unexpired retained message matching `filter`; drops expired ones.
    pub fn collect(&mut self, filter: &str, now: Instant, mut found: impl FnMut(&Arc<Message>)) {
        let mut matched = Vec::new();
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&self.root, &levels, true, &mut matched);
        for message in matched {
            if message.is_expired(now) {
                self.remove(&message.topic);
            } else {
                found(&message);
            }
        }
    }

    /// Every retained message, for saving.
    pub fn all(&self) -> Vec<Arc<Message>> {
        let mut out = Vec::with_capacity(self.len);
        self.root.all(&mut out);
        out
    }
}

fn remove_in<'a>(
    node: &mut Node,
    mut levels: impl Iterator<Item = &'a str>,
) -> Option<Arc<Message>> {
    let Some(level) = levels.next() else {
        return node.message.take();
    };
    let child = node.children.get_mut(level)?;
    let removed = remove_in(child, levels);
    if child.is_empty() {
        node.children.remove(level);
    }
    removed
}

/// Collects the messages under `node` matching the remaining filter `levels`. Wildcards in the
/// first level skip topics starting with `$` (MQTT-4.7.2-1).
fn walk(node: &Node, levels: &[&str], at_root: bool, out: &mut Vec<Arc<Message>>) {
    let Some((&level, rest)) = levels.split_first() else {
        out.extend(node.message.iter().cloned());
        return;
    };
    let visible = |name: &str| !(at_root && name.starts_with('$'));
    match level {
        "#" => {
            // "a/#" also matches "a" itself.
            if !at_root {
                out.extend(node.message.iter().cloned());
            }
            for (name, child) in &node.children {
                if visible(name) {
                    child.all(out);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if visible(name) {
                    walk(child, rest, false, out);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                walk(child, rest, false, out);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A missing retained message fails the test.
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::topic;

    fn retained(topic: &str) -> Arc<Message> {
        Arc::new(Message::new(topic.to_string(), "v", QoS::AtMostOnce, true))
    }

    /// The tree must find exactly what the plain matcher finds, for every filter.
    #[test]
    fn tree_agrees_with_matches() {
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "/a", "x/b/y", "$SYS/b/x", "$SYS", "a//c", "b", "/",
        ];
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "a/+/c", "+/b/#", "/+", "+/+", "$SYS/#",
            "$SYS/+/x", "a//c", "+/#", "/#",
        ];
        let mut store = RetainedStore::new(100, usize::MAX);
        for t in topics {
            store.store(&retained(t));
        }
        assert_eq!(store.len(), topics.len());
        for filter in filters {
            let mut found = Vec::new();
            store.collect(filter, Instant::now(), |m| found.push(m.topic.to_string()));
            found.sort();
            let mut expected: Vec<String> = topics
                .iter()
                .filter(|t| topic::matches(filter, t))
                .map(|t| t.to_string())
                .collect();
            expected.sort();
            assert_eq!(found, expected, "filter {filter}");
        }
    }

    #[test]
    fn clearing_prunes_and_the_limit_holds() {
        let mut store = RetainedStore::new(2, usize::MAX);
        store.store(&retained("a/b"));
        store.store(&retained("a/c"));
        store.store(&retained("a/d"));
        assert_eq!(store.len(), 2, "a third topic is refused");
        store.store(&retained("a/b"));
        assert_eq!(store.len(), 2, "replacing is allowed when full");
        store.store(&Arc::new(Message::new("a/b", "", QoS::AtMostOnce, true)));
        store.store(&Arc::new(Message::new("a/c", "", QoS::AtMostOnce, true)));
        assert_eq!(store.len(), 0);
        assert!(store.root.is_empty(), "empty branches are pruned");
    }

    /// Scenario: retained messages were bounded by count only (1,000,000 of up to 1 MiB).
    #[test]
    fn the_byte_bound_holds_for_new_and_replaced_messages() {
        let message = |topic: &str, size: usize| {
            Arc::new(Message::new(topic, vec![b'x'; size], QoS::AtMostOnce, true))
        };
        let mut store = RetainedStore::new(100, 100);
        assert!(store.store(&message("a", 49)));
        assert!(store.store(&message("b", 49)));
        assert_eq!(store.bytes(), 100);
        assert!(
            !store.store(&message("c", 1)),
            "a new topic beyond the bound"
        );
        assert!(
            !store.store(&message("a", 50)),
            "a replacement that grows beyond it"
        );
        assert!(store.store(&message("a", 9)), "one that shrinks");
        assert_eq!(store.bytes(), 60);
        store.store(&Arc::new(Message::new("b", "", QoS::AtMostOnce, true)));
        assert_eq!(
            (store.len(), store.bytes()),
            (1, 10),
            "clearing frees its bytes"
        );
        assert!(store.store(&message("c", 80)));
    }

    /// A received message is a slice of its publisher's read buffer; the store keeps a copy of
    /// its own, so a small retained message does not keep a whole buffer alive and the byte
    /// bound counts what the store really holds.
    #[test]
    fn keeps_its_own_copy_of_topic_and_payload() {
        let read_buffer = Bytes::from(b"t/1hello and the rest of a 16 KiB read".to_vec());
        let received = Arc::new(Message {
            topic: ByteString::try_from(read_buffer.slice(0..3)).unwrap(),
            payload: read_buffer.slice(3..8),
            ..Message::new("x", "", QoS::AtMostOnce, true)
        });
        let mut store = RetainedStore::new(10, 1000);
        assert!(store.store(&received));
        let kept = store.find("t/1").unwrap();
        assert_eq!((&*kept.topic, &kept.payload[..]), ("t/1", &b"hello"[..]));
        assert!(!std::ptr::eq(
            kept.payload.as_ptr(),
            received.payload.as_ptr()
        ));
        assert!(!std::ptr::eq(kept.topic.as_ptr(), received.topic.as_ptr()));
    }
}
