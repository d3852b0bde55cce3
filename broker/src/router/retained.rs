//! Retained messages: the last retained message per topic, bounded in count.

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use tokio::time::Instant;
use tracing::warn;

use crate::message::Message;
use crate::topic;

pub(crate) struct RetainedStore {
    messages: HashMap<ByteString, Arc<Message>>,
    limit: usize,
    warned_full: bool,
}

impl RetainedStore {
    pub fn new(limit: usize) -> RetainedStore {
        RetainedStore {
            messages: HashMap::new(),
            limit,
            warned_full: false,
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Sets, replaces, or (with an empty payload) clears the retained message of its topic. A new
    /// topic is not kept while the store is full (logged once).
    pub fn store(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.messages.remove(&message.topic);
            return;
        }
        if self.messages.len() >= self.limit && !self.messages.contains_key(&message.topic) {
            if !self.warned_full {
                warn!(limit = self.limit, topic = %message.topic, "Retained store is full; new retained topics are not kept");
                self.warned_full = true;
            }
            return;
        }
        self.messages.insert(message.topic.clone(), message.clone());
    }

    /// Calls `found` for every unexpired retained message matching `filter`; drops expired ones.
    ///
    /// A linear scan: subscribing is rare next to publishing, and a plant's retained set (one per
    /// tag) stays in the tens of thousands.
    pub fn collect(&mut self, filter: &str, now: Instant, mut found: impl FnMut(&Arc<Message>)) {
        if !filter.contains(['+', '#']) {
            match self.messages.get(filter) {
                Some(message) if message.is_expired(now) => {
                    self.messages.remove(filter);
                }
                Some(message) => found(message),
                None => {}
            }
            return;
        }
        self.messages.retain(|_, message| !message.is_expired(now));
        for message in self.messages.values() {
            if topic::matches(filter, &message.topic) {
                found(message);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Message>> {
        self.messages.values()
    }
}
