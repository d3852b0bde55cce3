//! Retained messages: the last retained message per topic, in a tree of topic levels so a
//! subscription finds its retained messages by walking only the branches its filter can match.

use std::collections::HashMap;
use std::sync::Arc;

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
    warned_full: bool,
}

impl RetainedStore {
    pub fn new(limit: usize) -> RetainedStore {
        RetainedStore {
            root: Node::default(),
            len: 0,
            limit,
            warned_full: false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets, replaces, or (with an empty payload) clears the retained message of its topic. A new
    /// topic is not kept while the store is full (logged once).
    pub fn store(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return;
        }
        let full = self.len >= self.limit;
        let mut node = &mut self.root;
        for level in message.topic.split('/') {
            // Look up before inserting: a retained topic is usually updated, not new, and the
            // key allocation is only needed for a new level.
            if !node.children.contains_key(level) {
                if full {
                    self.warn_full(&message.topic);
                    return;
                }
                node.children.insert(level.into(), Node::default());
            }
            let Some(child) = node.children.get_mut(level) else {
                return; // inserted just above
            };
            node = child;
        }
        if node.message.is_none() {
            if full {
                self.warn_full(&message.topic);
                return;
            }
            self.len += 1;
        }
        node.message = Some(message.clone());
    }

    fn warn_full(&mut self, topic: &str) {
        if !self.warned_full {
            warn!(
                limit = self.limit,
                topic, "Retained store is full; new retained topics are not kept"
            );
            self.warned_full = true;
        }
    }

    fn remove(&mut self, topic: &str) {
        if remove_in(&mut self.root, topic.split('/')) {
            self.len -= 1;
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

fn remove_in<'a>(node: &mut Node, mut levels: impl Iterator<Item = &'a str>) -> bool {
    let Some(level) = levels.next() else {
        return node.message.take().is_some();
    };
    let Some(child) = node.children.get_mut(level) else {
        return false;
    };
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
        let mut store = RetainedStore::new(100);
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
        let mut store = RetainedStore::new(2);
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
}
