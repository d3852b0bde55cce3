//! Reconnect delays from a `connectionStrategy`: start at `initialDelay`, multiply by
//! `incrementFactor` after each failure, never above `maxDelay`, with up to 20 % random jitter so
//! a plant full of gateways does not reconnect in lockstep; reset after a success. Pure apart from
//! the jitter's random number, which the caller may fix.

use std::time::Duration;

use commissioning::model::ConnectionStrategy;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(strategy: Option<&ConnectionStrategy>) -> Backoff {
        let (initial, factor, max) = match strategy {
            Some(s) => (s.initial_delay, s.increment_factor, s.max_delay),
            None => (1000, 2.0, 30_000),
        };
        let initial = Duration::from_millis(initial.max(1));
        let max = Duration::from_millis(max).max(initial);
        Backoff {
            initial,
            factor: factor.max(1.0),
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; `jitter` in [0, 1) picks within the 20 % band.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(self.factor).min(self.max);
        base.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let strategy = ConnectionStrategy {
            initial_delay: 100,
            increment_factor: 2.0,
            max_delay: 500,
        };
        let mut b = Backoff::new(Some(&strategy));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(
            b.next_delay(1.0).as_millis(),
            400,
            "jitter shortens by at most 20 %"
        );
        b.reset();
        assert_eq!(b.next_delay(0.0).as_millis(), 100);
    }
}
