//! The subscription tree: every subscription of every session, keyed by topic level, so a PUBLISH
//! is matched by walking as many nodes as its topic has levels.

use std::collections::HashMap;

use crate::codec::SubscriptionOptions;
use crate::message::SessionKey;

/// One subscription as the router needs it when delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// Subscribers of one `$share/{group}/{filter}`: each message goes to one of them, round robin.
#[derive(Debug, Default)]
pub struct SharedGroup {
    pub name: Box<str>,
    pub members: Vec<(SessionKey, Entry)>,
    pub next: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subscribers: Vec<(SessionKey, Entry)>,
    shared: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// A match found while walking the tree.
pub enum Match<'a> {
    Direct(SessionKey, Entry),
    Shared(&'a mut SharedGroup),
}

#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
    count: usize,
}

impl SubscriptionTree {
    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds or replaces the subscription of `session` to `filter` (in `group` when shared).
    /// Returns true when it did not exist before.
    pub fn insert(
        &mut self,
        filter: &str,
        group: Option<&str>,
        session: SessionKey,
        entry: Entry,
    ) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let list = match group {
            None => &mut node.subscribers,
            Some(name) => {
                let index = match node.shared.iter().position(|g| &*g.name == name) {
                    Some(i) => i,
                    None => {
                        node.shared.push(SharedGroup {
                            name: name.into(),
                            ..SharedGroup::default()
                        });
                        node.shared.len() - 1
                    }
                };
                &mut node.shared[index].members
            }
        };
        match list.iter_mut().find(|(key, _)| *key == session) {
            Some(existing) => {
                existing.1 = entry;
                false
            }
            None => {
                list.push((session, entry));
                self.count += 1;
                true
            }
        }
    }

    /// Removes the subscription; returns whether it existed. Empty nodes are pruned.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, session: SessionKey) -> bool {
        let removed = remove_in(&mut self.root, filter.split('/'), group, session);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Calls `visit` for every subscription matching `topic`.
    pub fn for_each_match(&mut self, topic: &str, visit: &mut dyn FnMut(Match<'_>)) {
        let dollar = topic.starts_with('$');
        walk(&mut self.root, Some(topic), true, dollar, visit);
    }
}

fn remove_in<'a>(
    node: &mut Node,
    mut levels: impl Iterator<Item = &'a str>,
    group: Option<&str>,
    session: SessionKey,
) -> bool {
    match levels.next() {
        None => match group {
            None => {
                let before = node.subscribers.len();
                node.subscribers.retain(|(key, _)| *key != session);
                node.subscribers.len() != before
            }
            Some(name) => {
                let Some(index) = node.shared.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let shared = &mut node.shared[index];
                let before = shared.members.len();
                shared.members.retain(|(key, _)| *key != session);
                let removed = shared.members.len() != before;
                if shared.members.is_empty() {
                    node.shared.swap_remove(index);
                }
                removed
            }
        },
        Some(level) => {
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            let removed = remove_in(child, levels, group, session);
            if child.is_empty() {
                node.children.remove(level);
            }
            removed
        }
    }
}

fn emit(node: &mut Node, visit: &mut dyn FnMut(Match<'_>)) {
    for (key, entry) in &node.subscribers {
        visit(Match::Direct(*key, *entry));
    }
    for group in &mut node.shared {
        visit(Match::Shared(group));
    }
}

/// `rest` is the part of the topic not yet matched, `None` once every level is consumed.
fn walk(
    node: &mut Node,
    rest: Option<&str>,
    at_root: bool,
    dollar: bool,
    visit: &mut dyn FnMut(Match<'_>),
) {
    // Wildcards at the first level never match `$` topics (MQTT-4.7.2-1).
    let wildcards = !(at_root && dollar);
    let Some(rest) = rest else {
        emit(node, visit);
        // "a/#" also matches "a" itself.
        if let Some(hash) = node.children.get_mut("#") {
            emit(hash, visit);
        }
        return;
    };
    let (level, next) = match rest.split_once('/') {
        Some((level, next)) => (level, Some(next)),
        None => (rest, None),
    };
    if wildcards {
        if let Some(hash) = node.children.get_mut("#") {
            emit(hash, visit);
        }
        if let Some(plus) = node.children.get_mut("+") {
            walk(plus, next, false, dollar, visit);
        }
    }
    if let Some(child) = node.children.get_mut(level) {
        walk(child, next, false, dollar, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic;

    fn entry() -> Entry {
        Entry {
            options: SubscriptionOptions::default(),
            id: None,
        }
    }

    fn direct_matches(tree: &mut SubscriptionTree, topic: &str) -> Vec<SessionKey> {
        let mut found = Vec::new();
        tree.for_each_match(topic, &mut |m| {
            if let Match::Direct(key, _) = m {
                found.push(key);
            }
        });
        found.sort_unstable();
        found
    }

    /// The tree must agree with the plain matching function for every filter/topic pair.
    #[test]
    fn tree_agrees_with_matches() {
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "a/+/c", "+/b/#", "/+", "+/+", "$SYS/#",
            "$SYS/+/x", "a//c",
        ];
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "/a", "x/b/y", "$SYS/b/x", "$SYS", "a//c", "b",
        ];
        let mut tree = SubscriptionTree::default();
        for (key, filter) in filters.iter().enumerate() {
            tree.insert(filter, None, key, entry());
        }
        for topic_name in topics {
            let expected: Vec<SessionKey> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| topic::matches(f, topic_name))
                .map(|(k, _)| k)
                .collect();
            assert_eq!(
                direct_matches(&mut tree, topic_name),
                expected,
                "topic {topic_name}"
            );
        }
    }

    #[test]
    fn remove_prunes_and_reports() {
        let mut tree = SubscriptionTree::default();
        assert!(tree.insert("a/b", None, 1, entry()));
        assert!(
            !tree.insert("a/b", None, 1, entry()),
            "replacing is not new"
        );
        assert!(tree.insert("a/b", Some("g"), 2, entry()));
        assert_eq!(tree.len(), 2);
        assert!(tree.remove("a/b", None, 1));
        assert!(!tree.remove("a/b", None, 1));
        assert!(tree.remove("a/b", Some("g"), 2));
        assert_eq!(tree.len(), 0);
        assert!(tree.root.is_empty(), "empty nodes are pruned");
    }
}
