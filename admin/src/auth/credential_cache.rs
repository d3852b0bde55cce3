//! Remembers recently verified passwords so a reconnect storm does not pay argon2 for every
//! client again: after a plant network outage a thousand MQTT clients come back at once, with the
//! same passwords they had a minute earlier.
//!
//! An entry is an HMAC-SHA256 of user name and password under a random key that lives only in
//! this process, plus the argon2 hash it was verified against. It is used only while the user's
//! stored hash is unchanged (a password change invalidates it), for at most `TTL`, and only for
//! a correct password: wrong and unknown passwords always take the full argon2 path (and the
//! login throttle). The map is bounded by `MAX_ENTRIES`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const TTL: Duration = Duration::from_secs(3600);
const MAX_ENTRIES: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

pub struct CredentialCache {
    key: [u8; 32],
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// The stored argon2 hash the password was verified against.
    hash: String,
    mac: Vec<u8>,
    verified: Instant,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache {
            key: rand::random(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl CredentialCache {
    fn mac(&self, user: &str, password: &[u8]) -> HmacSha256 {
        // A fresh HMAC key is always valid for HMAC (any length works).
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password);
        mac
    }

    /// True when this exact password was verified for `user` against `current_hash` recently.
    pub fn matches(&self, user: &str, password: &[u8], current_hash: &str, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.get(user) else {
            return false;
        };
        entry.hash == current_hash
            && now.duration_since(entry.verified) < TTL
            // Constant-time comparison.
            && self.mac(user, password).verify_slice(&entry.mac).is_ok()
    }

    pub fn remember(&self, user: &str, password: &[u8], hash: &str, now: Instant) {
        let mac = self.mac(user, password).finalize().into_bytes().to_vec();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(user) {
            entries.retain(|_, e| now.duration_since(e.verified) < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            user.to_string(),
            Entry {
                hash: hash.to_string(),
                mac,
                verified: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_against_the_same_hash_within_the_ttl() {
        let cache = CredentialCache::default();
        let now = Instant::now();
        assert!(
            !cache.matches("alice", b"secret", "h1", now),
            "nothing remembered yet"
        );
        cache.remember("alice", b"secret", "h1", now);
        assert!(cache.matches("alice", b"secret", "h1", now));
        assert!(
            !cache.matches("alice", b"Secret", "h1", now),
            "another password"
        );
        assert!(!cache.matches("bob", b"secret", "h1", now), "another user");
        assert!(
            !cache.matches("alice", b"secret", "h2", now),
            "the password was changed"
        );
        assert!(
            !cache.matches("alice", b"secret", "h1", now + TTL),
            "expired"
        );
        let other = CredentialCache::default();
        other.remember("alice", b"secret", "h1", now);
        assert!(!cache.matches("alice", b"other", "h1", now));
    }
}
