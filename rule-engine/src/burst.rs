//! The `burst` rule: collects payloads into one JSON array, emitted when `maxSize` payloads are
//! in or `interval` ms after the first one arrived, whichever comes first. An empty buffer emits
//! nothing. Without `maxSize` the buffer is still bounded: at [`MAX_BURST`] payloads or
//! [`MAX_BURST_BYTES`] it is emitted early.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use commissioning::model::BurstRule;
use tokio::time::Instant;

/// The most payloads one burst holds when `maxSize` does not say.
pub const MAX_BURST: usize = 100_000;
/// The most bytes one burst holds, whatever `maxSize` says.
pub const MAX_BURST_BYTES: usize = 16 << 20;

#[derive(Debug)]
pub struct Burst {
    interval: Option<Duration>,
    max_size: usize,
    items: Vec<Bytes>,
    bytes: usize,
    deadline: Option<Instant>,
}

impl Burst {
    pub fn new(rule: &BurstRule) -> Burst {
        Burst {
            interval: rule.interval.map(Duration::from_millis),
            max_size: rule
                .max_size
                .map_or(MAX_BURST, |n| (n as usize).clamp(1, MAX_BURST)),
            items: Vec::new(),
            bytes: 0,
            deadline: None,
        }
    }

    /// Adds one payload (JSON text); returns the array when this one filled the burst.
    pub fn push(&mut self, item: Bytes, now: Instant) -> Option<Bytes> {
        if self.items.is_empty() {
            self.deadline = self.interval.map(|interval| now + interval);
        }
        self.bytes += item.len();
        self.items.push(item);
        let full = self.items.len() >= self.max_size || self.bytes >= MAX_BURST_BYTES;
        full.then(|| self.take()).flatten()
    }

    /// When the interval runs out, if a burst is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The array if the interval has run out, else nothing.
    pub fn flush_due(&mut self, now: Instant) -> Option<Bytes> {
        match self.deadline {
            Some(deadline) if deadline <= now => self.take(),
            _ => None,
        }
    }

    fn take(&mut self) -> Option<Bytes> {
        self.deadline = None;
        self.bytes = 0;
        if self.items.is_empty() {
            return None;
        }
        let size = self.items.iter().map(|i| i.len() + 1).sum::<usize>() + 1;
        let mut array = BytesMut::with_capacity(size);
        array.put_u8(b'[');
        for (i, item) in self.items.drain(..).enumerate() {
            if i > 0 {
                array.put_u8(b',');
            }
            array.put_slice(&item);
        }
        array.put_u8(b']');
        Some(array.freeze())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn burst(interval: Option<u64>, max_size: Option<u64>) -> Burst {
        Burst::new(&BurstRule { interval, max_size })
    }

    fn item(n: u32) -> Bytes {
        Bytes::from(n.to_string())
    }

    fn text(b: Option<Bytes>) -> Option<String> {
        b.map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn max_size_flushes_at_once() {
        let now = Instant::now();
        let mut b = burst(None, Some(3));
        assert_eq!(b.push(item(1), now), None);
        assert_eq!(b.push(item(2), now), None);
        assert_eq!(text(b.push(item(3), now)).as_deref(), Some("[1,2,3]"));
        assert_eq!(b.deadline(), None);
        assert_eq!(text(b.push(item(4), now)), None);
    }

    #[test]
    fn interval_counts_from_the_first_payload() {
        let t0 = Instant::now();
        let mut b = burst(Some(100), None);
        assert_eq!(b.deadline(), None, "nothing open, nothing to wait for");
        b.push(item(1), t0);
        b.push(item(2), t0 + Duration::from_millis(60));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(100)));
        assert_eq!(b.flush_due(t0 + Duration::from_millis(99)), None);
        assert_eq!(
            text(b.flush_due(t0 + Duration::from_millis(100))).as_deref(),
            Some("[1,2]")
        );
    }

    #[test]
    fn empty_buffer_at_the_interval_emits_nothing() {
        let t0 = Instant::now();
        let mut b = burst(Some(100), Some(2));
        b.push(item(1), t0);
        assert!(b.push(item(2), t0).is_some(), "maxSize came first");
        // The interval of the emitted burst ends with nothing in the buffer.
        assert_eq!(b.flush_due(t0 + Duration::from_millis(500)), None);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn without_max_size_the_buffer_is_still_bounded() {
        let mut b = burst(Some(60_000), None);
        let now = Instant::now();
        let flushed = (0..MAX_BURST as u32)
            .filter_map(|n| b.push(item(n), now))
            .count();
        assert_eq!(flushed, 1);
        let big = Bytes::from(vec![b'1'; 1 << 20]);
        let flushed: Vec<Bytes> = (0..16).filter_map(|_| b.push(big.clone(), now)).collect();
        assert_eq!(flushed.len(), 1, "16 MiB at most");
        assert_eq!(flushed[0].len(), 16 * (1 << 20) + 17);
    }
}
