//! The router's index from client id to session. The ids live in the sessions; the index holds
//! only session keys, so a connected client's id is stored once, not once more as a map key.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use slab::Slab;

use super::sessions::Session;
use crate::message::SessionKey;

type Sessions = Slab<Box<Session>>;

/// Session keys by the client id of their session. Hashed with a per-process random key, as
/// `std`'s maps are: clients choose their ids, and must not be able to choose collisions.
#[derive(Default)]
pub(super) struct ClientIds {
    table: HashTable<SessionKey>,
    hasher: RandomState,
}

impl ClientIds {
    pub fn get(&self, client_id: &str, sessions: &Sessions) -> Option<SessionKey> {
        let hash = self.hasher.hash_one(client_id);
        self.table
            .find(hash, |&key| has_id(sessions, key, client_id))
            .copied()
    }

    /// Indexes session `key` under its client id, in place of any session indexed under it.
    pub fn insert(&mut self, key: SessionKey, sessions: &Sessions) {
        let Some(session) = sessions.get(key) else {
            return;
        };
        let client_id = &*session.client_id;
        let hasher = &self.hasher;
        let hash = hasher.hash_one(client_id);
        let rehash = |&other: &SessionKey| {
            sessions
                .get(other)
                .map_or(0, |s| hasher.hash_one(&*s.client_id))
        };
        match self
            .table
            .entry(hash, |&other| has_id(sessions, other, client_id), rehash)
        {
            hashbrown::hash_table::Entry::Occupied(mut entry) => *entry.get_mut() = key,
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert(key);
            }
        }
    }

    /// Forgets session `key`, indexed under `client_id`; another session under the same id
    /// stays.
    pub fn remove(&mut self, client_id: &str, key: SessionKey) {
        let hash = self.hasher.hash_one(client_id);
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == key) {
            entry.remove();
        }
    }
}

fn has_id(sessions: &Sessions, key: SessionKey, client_id: &str) -> bool {
    sessions
        .get(key)
        .is_some_and(|s| *s.client_id == *client_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SessionOwner;
    use crate::queue::session_queue;

    fn add(sessions: &mut Sessions, client_id: &str) -> SessionKey {
        let (tx, _rx) = session_queue(1, 1);
        sessions.insert(Box::new(Session::new(
            client_id.into(),
            SessionOwner::Anonymous,
            tx,
            None,
        )))
    }

    #[test]
    fn finds_sessions_by_the_id_they_hold() {
        let mut sessions = Sessions::new();
        let mut ids = ClientIds::default();
        let keys: Vec<SessionKey> = (0..100)
            .map(|i| add(&mut sessions, &format!("client-{i}")))
            .collect();
        for &key in &keys {
            ids.insert(key, &sessions);
        }
        for (i, &key) in keys.iter().enumerate() {
            assert_eq!(ids.get(&format!("client-{i}"), &sessions), Some(key));
        }
        assert_eq!(ids.get("client-100", &sessions), None);
    }

    #[test]
    fn a_new_session_under_an_old_id_replaces_it_and_removing_the_old_one_keeps_it() {
        let mut sessions = Sessions::new();
        let mut ids = ClientIds::default();
        let old = add(&mut sessions, "machine");
        ids.insert(old, &sessions);
        let new = add(&mut sessions, "machine");
        ids.insert(new, &sessions);
        assert_eq!(ids.get("machine", &sessions), Some(new));
        ids.remove("machine", old);
        assert_eq!(ids.get("machine", &sessions), Some(new));
        sessions.remove(new);
        ids.remove("machine", new);
        assert_eq!(ids.get("machine", &sessions), None);
    }
}
