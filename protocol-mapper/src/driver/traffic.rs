//! What a connection has done since it started: values it published, endpoint errors, requests
//! it answered, attempts that failed and sessions it lost.
//!
//! Counted by the state machine and the reporter, never by a driver, so every protocol counts
//! the same things the same way. Read by the service status route, the web console and
//! `/metrics`; the counters start at zero when the connection (re)starts, like Prometheus
//! counters of a restarted process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

/// The live counters, shared by a connection's task and its handle.
#[derive(Debug, Default)]
pub struct Traffic {
    values: AtomicU64,
    last_value_at: AtomicI64,
    endpoint_errors: AtomicU64,
    requests_succeeded: AtomicU64,
    requests_failed: AtomicU64,
    failed_attempts: AtomicU64,
    sessions_lost: AtomicU64,
    /// Per endpoint id, so an operator sees which tag went quiet. Only the connection's task
    /// writes; the lock is never contended but by a status read.
    endpoints: Mutex<HashMap<String, EndpointStats>>,
}

/// What one endpoint of a connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    pub values: u64,
    /// When the gateway published the last of them (Unix milliseconds).
    pub last_value_at: Option<i64>,
    /// Failed reads, subscriptions or values.
    pub errors: u64,
}

/// The counters at one moment, as the status route and the console show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStats {
    /// Values read or received from the device and published (or handed to an endpoint's
    /// rules).
    pub values: u64,
    /// When the gateway published the last of them (Unix milliseconds); `None` before the
    /// first.
    pub last_value_at: Option<i64>,
    /// Reads, subscriptions and values of endpoints that failed (each failed poll counts).
    pub endpoint_errors: u64,
    /// `/req` and `/set` messages answered, successfully or not.
    pub requests: u64,
    /// Of those, the ones answered with an error: refused by the device, malformed, or asked
    /// while not connected.
    pub requests_failed: u64,
    /// Attempts to open a session that failed.
    pub failed_attempts: u64,
    /// Sessions that were up and then lost.
    pub sessions_lost: u64,
}

impl Traffic {
    pub(super) fn value_published(&self, endpoint: &str) {
        self.values.fetch_add(1, Ordering::Relaxed);
        // The gateway's clock, not the value's timestamp: a PLC whose clock is off must not
        // make its data look stale or fresh.
        let now = crate::envelope::now_millis();
        self.last_value_at.fetch_max(now, Ordering::Relaxed);
        self.update(endpoint, |stats| {
            stats.values += 1;
            stats.last_value_at = Some(now);
        });
    }

    pub(super) fn endpoint_failed(&self, endpoint: &str) {
        self.endpoint_errors.fetch_add(1, Ordering::Relaxed);
        self.update(endpoint, |stats| stats.errors += 1);
    }

    /// Forgets a removed endpoint.
    pub(super) fn endpoint_removed(&self, endpoint: &str) {
        self.endpoints().remove(endpoint);
    }

    pub fn endpoint(&self, endpoint: &str) -> Option<EndpointStats> {
        self.endpoints().get(endpoint).copied()
    }

    fn update(&self, endpoint: &str, change: impl FnOnce(&mut EndpointStats)) {
        let mut endpoints = self.endpoints();
        // Looked up before inserting: the id is copied once per endpoint, not once per value.
        match endpoints.get_mut(endpoint) {
            Some(stats) => change(stats),
            None => change(endpoints.entry(endpoint.to_string()).or_default()),
        }
    }

    fn endpoints(&self) -> std::sync::MutexGuard<'_, HashMap<String, EndpointStats>> {
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn request_answered(&self, succeeded: bool) {
        let counter = match succeeded {
            true => &self.requests_succeeded,
            false => &self.requests_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn attempt_failed(&self) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn session_lost(&self) {
        self.sessions_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> TrafficStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let last_value_at = self.last_value_at.load(Ordering::Relaxed);
        // Two counters rather than a total and its failures: read apart, a total could
        // otherwise be smaller than its part.
        let requests_failed = get(&self.requests_failed);
        TrafficStats {
            values: get(&self.values),
            last_value_at: (last_value_at > 0).then_some(last_value_at),
            endpoint_errors: get(&self.endpoint_errors),
            requests: get(&self.requests_succeeded) + requests_failed,
            requests_failed,
            failed_attempts: get(&self.failed_attempts),
            sessions_lost: get(&self.sessions_lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_has_done_nothing() {
        assert_eq!(Traffic::default().stats(), TrafficStats::default());
    }

    #[test]
    fn a_value_counts_and_is_timed_by_the_gateway_clock() {
        let traffic = Traffic::default();
        let before = crate::envelope::now_millis();
        traffic.value_published("line::speed");
        traffic.value_published("line::speed");
        let stats = traffic.stats();
        assert_eq!(stats.values, 2);
        let at = stats.last_value_at.expect("a time after a value");
        assert!(at >= before && at <= crate::envelope::now_millis(), "{at}");
    }

    #[test]
    fn each_endpoint_counts_its_own_values_and_errors_until_removed() {
        let traffic = Traffic::default();
        traffic.value_published("line::speed");
        traffic.value_published("line::speed");
        traffic.endpoint_failed("line::feed");
        let speed = traffic.endpoint("line::speed").expect("speed");
        assert_eq!((speed.values, speed.errors), (2, 0));
        assert!(speed.last_value_at.is_some());
        let feed = traffic.endpoint("line::feed").expect("feed");
        assert_eq!((feed.values, feed.last_value_at, feed.errors), (0, None, 1));
        assert_eq!(traffic.stats().endpoint_errors, 1);

        traffic.endpoint_removed("line::speed");
        assert_eq!(traffic.endpoint("line::speed"), None);
        assert_eq!(traffic.stats().values, 2, "the connection's totals stay");
    }

    #[test]
    fn failed_requests_are_counted_among_all_requests() {
        let traffic = Traffic::default();
        traffic.request_answered(true);
        traffic.request_answered(false);
        traffic.request_answered(false);
        let stats = traffic.stats();
        assert_eq!((stats.requests, stats.requests_failed), (3, 2));
    }
}
