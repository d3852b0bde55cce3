//! The endpoints of a driver that polls (Modbus, HTTP, S7) and when each reads next: every
//! `interval` ms (1000 unless given) at a fixed rate, or at the times of its `cronExpression`.
//! Endpoints of one rate share one schedule, so a driver reads them together and can batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commissioning::model::Operation;

use super::{DriverError, EndpointSpec};

/// A polling driver's endpoints with their protocol address `A`. Only `subscribe` endpoints are
/// polled; read and write endpoints wait for requests.
pub struct PolledEndpoints<A> {
    endpoints: BTreeMap<String, Polled<A>>,
}

pub struct Polled<A> {
    pub spec: EndpointSpec,
    pub address: A,
    poll: PollSchedule,
}

impl<A> Default for PolledEndpoints<A> {
    fn default() -> Self {
        PolledEndpoints {
            endpoints: BTreeMap::new(),
        }
    }
}

impl<A> PolledEndpoints<A> {
    /// Adds (or replaces) an endpoint; a subscribe endpoint is due at once or at its next cron
    /// time. An unusable cron expression refuses the endpoint.
    pub fn insert(
        &mut self,
        spec: EndpointSpec,
        address: A,
        interval_ms: Option<u64>,
        cron_expression: Option<&str>,
    ) -> Result<(), DriverError> {
        let mut poll =
            PollSchedule::new(interval_ms, cron_expression).map_err(DriverError::Endpoint)?;
        // An endpoint polled at the same rate as others joins their schedule, so endpoints
        // added one after another are read together in one batch rather than each in a poll
        // of its own a few microseconds apart.
        if spec.operation == Operation::Subscribe
            && let Some(group) = self
                .polled()
                .map(|(_, e)| &e.poll)
                .find(|other| other.same_rate(&poll))
        {
            poll.next_due = group.next_due;
        }
        self.endpoints.insert(
            spec.id.clone(),
            Polled {
                spec,
                address,
                poll,
            },
        );
        Ok(())
    }

    pub fn remove(&mut self, id: &str) {
        self.endpoints.remove(id);
    }

    pub fn get(&self, id: &str) -> Option<&Polled<A>> {
        self.endpoints.get(id)
    }

    fn polled(&self) -> impl Iterator<Item = (&String, &Polled<A>)> {
        self.endpoints
            .iter()
            .filter(|(_, e)| e.spec.operation == Operation::Subscribe)
    }

    /// When the next poll is due, if any endpoint polls.
    pub fn next_due(&self) -> Option<Instant> {
        self.polled().map(|(_, e)| e.poll.next_due()).min()
    }

    /// The endpoints whose poll is due, with their addresses.
    pub fn due(&self, now: Instant) -> Vec<(String, A)>
    where
        A: Clone,
    {
        self.polled()
            .filter(|(_, e)| e.poll.is_due(now))
            .map(|(id, e)| (id.clone(), e.address.clone()))
            .collect()
    }

    /// After polling `due`: when each polls next.
    pub fn polled_at(&mut self, due: &[(String, A)], now: Instant) {
        for (id, _) in due {
            if let Some(endpoint) = self.endpoints.get_mut(id) {
                endpoint.poll.advance(now);
            }
        }
    }
}

/// How long to wait when a cron expression has no next time (it cannot happen for a valid
/// expression, but a schedule must not spin).
const NO_NEXT_TIME: Duration = Duration::from_secs(3600);

struct PollSchedule {
    every: Duration,
    cron: Option<cron::Schedule>,
    next_due: Instant,
}

impl PollSchedule {
    /// A schedule whose first poll is due at once (an interval) or at the next cron time.
    fn new(interval_ms: Option<u64>, cron_expression: Option<&str>) -> Result<Self, String> {
        let cron = cron_expression
            .map(commissioning::model::parse_cron)
            .transpose()?;
        let now = Instant::now();
        let next_due = match &cron {
            Some(schedule) => next_cron(schedule, now),
            None => now,
        };
        Ok(PollSchedule {
            every: Duration::from_millis(interval_ms.unwrap_or(1000).max(1)),
            cron,
            next_due,
        })
    }

    fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Both poll at a fixed interval, the same one.
    fn same_rate(&self, other: &PollSchedule) -> bool {
        self.cron.is_none() && other.cron.is_none() && self.every == other.every
    }

    fn is_due(&self, now: Instant) -> bool {
        self.next_due <= now
    }

    /// After a poll: the next cron time, or one interval after the poll was due (not after it
    /// finished, so slow answers do not stretch the period). A poll that fell behind runs once
    /// at once rather than in a burst.
    fn advance(&mut self, now: Instant) {
        self.next_due = match &self.cron {
            Some(schedule) => next_cron(schedule, now),
            None => (self.next_due + self.every).max(now),
        };
    }
}

fn next_cron(schedule: &cron::Schedule, now: Instant) -> Instant {
    let wall = chrono::Utc::now();
    schedule
        .after(&wall)
        .next()
        .and_then(|at| (at - wall).to_std().ok())
        .map_or(now + NO_NEXT_TIME, |wait| now + wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_that_does_not_burst() {
        let mut poll = PollSchedule::new(Some(100), None).expect("valid");
        let start = poll.next_due();
        assert!(poll.is_due(start));
        poll.advance(start + Duration::from_millis(30));
        assert_eq!(poll.next_due(), start + Duration::from_millis(100));
        // Far behind: once at once, not once per missed period.
        let late = start + Duration::from_millis(1000);
        poll.advance(late);
        assert_eq!(poll.next_due(), late);
    }

    #[test]
    fn endpoints_of_one_rate_are_due_together() {
        let spec = |id: &str| EndpointSpec {
            id: id.into(),
            topic: id.into(),
            operation: Operation::Subscribe,
            address: commissioning::model::Address::Mqtt(commissioning::model::MqttAddress {
                topic: id.into(),
                qos: None,
                retain: false,
            }),
            qos: broker::QoS::AtMostOnce,
            retain: false,
            rules: None,
        };
        let mut endpoints = PolledEndpoints::default();
        endpoints
            .insert(spec("a"), (), Some(100), None)
            .expect("valid");
        std::thread::sleep(Duration::from_millis(5));
        endpoints
            .insert(spec("b"), (), Some(100), None)
            .expect("valid");
        endpoints
            .insert(spec("c"), (), Some(250), None)
            .expect("valid");
        let first = endpoints.next_due().expect("due");
        assert_eq!(endpoints.due(first).len(), 2, "a and b at once, c later");
    }

    #[test]
    fn cron_waits_for_its_next_time() {
        let poll = PollSchedule::new(None, Some("* * * * *")).expect("valid");
        let wait = poll.next_due() - Instant::now();
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
        assert!(PollSchedule::new(None, Some("nonsense")).is_err());
    }
}
