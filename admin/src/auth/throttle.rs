//! Slows down password guessing: after `FREE_FAILURES` failed logins under one key (the caller
//! picks them: a user name from one address, an address), further attempts wait an exponentially growing time (capped), answered with 429.
//! Success clears the user's record. Memory is bounded: at most `MAX_ENTRIES` keys are kept,
//! stale ones first to go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FREE_FAILURES: u32 = 5;
const MAX_DELAY: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(900);
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl Throttle {
    /// How long the caller must wait before trying `keys` again; `None` if it may try now.
    pub fn retry_after(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| entries.get(key))
            .filter_map(|entry| {
                let wait = delay(entry.failures).checked_sub(now.duration_since(entry.last))?;
                (!wait.is_zero()).then_some(wait)
            })
            .max()
    }

    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() + keys.len() > MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
            if entries.len() + keys.len() > MAX_ENTRIES {
                entries.clear();
            }
        }
        for key in keys {
            let entry = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if now.duration_since(entry.last) >= FORGET_AFTER {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
        }
    }

    pub fn succeeded(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }
}

fn delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => Duration::from_secs(1u64 << extra.min(16)).min(MAX_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_after_free_failures_and_resets_on_success() {
        let throttle = Throttle::default();
        let keys = vec!["user:alice".to_string(), "addr:10.0.0.1".to_string()];
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed(&keys, t0);
        }
        assert_eq!(throttle.retry_after(&keys, t0), None);
        throttle.failed(&keys, t0);
        assert_eq!(
            throttle.retry_after(&keys, t0),
            Some(Duration::from_secs(1))
        );
        throttle.failed(&keys, t0);
        assert_eq!(
            throttle.retry_after(&keys, t0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            throttle.retry_after(&keys, t0 + Duration::from_secs(3)),
            None
        );
        throttle.succeeded("user:alice");
        // The address still counts: the same guesser trying another user name waits too.
        assert!(
            throttle
                .retry_after(&["user:bob".into(), "addr:10.0.0.1".into()], t0)
                .is_some()
        );
        assert_eq!(throttle.retry_after(&["user:alice".into()], t0), None);
    }
}
