//! Packs the variables due in one poll into as few "read var" requests as the negotiated PDU
//! size allows. Variables of one area that lie close together are read as one range (a gap of
//! a few bytes costs less than another item); a range longer than one answer can carry is
//! split; the pieces are packed into requests of at most [`MAX_ITEMS`] items whose requests and
//! answers both fit the PDU. 1,000 REALs side by side in a data block are 9 requests at a PDU of
//! 480 bytes, 5 at 960.

use super::pdu::{ACK_HEADER, DATA_ITEM_HEADER, JOB_HEADER, Place, READ_ITEM, ReadItem};

/// Items per request: what snap7 and the CPUs' documentation allow in one "read var".
pub const MAX_ITEMS: usize = 20;

/// Two variables this many bytes apart or closer are read as one range: reading the gap costs
/// less than the 12 + 4 bytes of one more item.
const MERGE_GAP: u32 = 16;

/// A piece of an answer smaller than this is not worth an item of its own when splitting a
/// range to fill a request; the piece goes into the next request.
const SMALLEST_SPLIT: u32 = 16;

/// The bytes one variable covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub place: Place,
    pub len: u32,
}

/// A region read as one: its place and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub place: Place,
    pub len: u32,
}

/// A part of a range read by one item of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub range: usize,
    /// From the start of the range.
    pub offset: u32,
    pub len: u16,
}

impl Chunk {
    pub fn item(&self, ranges: &[Range]) -> ReadItem {
        let range = ranges[self.range];
        ReadItem {
            place: Place {
                byte: range.place.byte + self.offset,
                ..range.place
            },
            len: self.len,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ranges: Vec<Range>,
    /// For each wanted variable, in the order given: its range and its offset in it.
    pub members: Vec<(usize, u32)>,
    pub requests: Vec<Vec<Chunk>>,
}

/// Plans the reads of `wanted` for a PDU of `pdu_size` bytes. With `merge` false each variable
/// is its own range (used to tell which of the variables of a refused range is the bad one).
pub fn plan(wanted: &[Wanted], pdu_size: u16, merge: bool) -> Plan {
    let mut order: Vec<usize> = (0..wanted.len()).collect();
    order.sort_by_key(|&i| (wanted[i].place, wanted[i].len));
    let mut plan = Plan {
        members: vec![(0, 0); wanted.len()],
        ..Plan::default()
    };
    for i in order {
        let w = wanted[i];
        let last = plan.ranges.len().saturating_sub(1);
        let joins = plan.ranges.last_mut().filter(|r| {
            merge
                && (r.place.area, r.place.db) == (w.place.area, w.place.db)
                && w.place.byte <= r.place.byte + r.len + MERGE_GAP
        });
        match joins {
            Some(range) => {
                let end = (w.place.byte + w.len).max(range.place.byte + range.len);
                range.len = end - range.place.byte;
                plan.members[i] = (last, w.place.byte - range.place.byte);
            }
            None => {
                plan.ranges.push(Range {
                    place: w.place,
                    len: w.len,
                });
                plan.members[i] = (plan.ranges.len() - 1, 0);
            }
        }
    }
    plan.requests = pack(&plan.ranges, usize::from(pdu_size));
    plan
}

/// What an item of `len` bytes takes in an answer: its header, its bytes and a fill byte after
/// an odd length (counted always: at most one byte too many, on the last item).
fn answer_bytes(len: u32) -> u32 {
    DATA_ITEM_HEADER as u32 + len + len % 2
}

fn pack(ranges: &[Range], pdu_size: usize) -> Vec<Vec<Chunk>> {
    let answer_room = (pdu_size - ACK_HEADER - 2) as u32;
    let request_room = pdu_size - JOB_HEADER - 2;
    let items_per_request = MAX_ITEMS.min(request_room / READ_ITEM);
    // The longest piece one answer carries alone (even, so no fill byte is needed).
    let longest = (answer_room - DATA_ITEM_HEADER as u32) & !1;
    let mut requests: Vec<Vec<Chunk>> = Vec::new();
    let mut current: Vec<Chunk> = Vec::new();
    let mut used = 0u32;
    for (index, range) in ranges.iter().enumerate() {
        let mut offset = 0;
        while offset < range.len {
            let left = range.len - offset;
            let room = answer_room.saturating_sub(used + DATA_ITEM_HEADER as u32);
            let fits_whole = answer_bytes(left.min(longest)) <= answer_room - used;
            let worth_splitting = room >= SMALLEST_SPLIT;
            if current.len() == items_per_request || !(fits_whole || worth_splitting) {
                requests.push(std::mem::take(&mut current));
                used = 0;
                continue;
            }
            let take = if fits_whole {
                left.min(longest)
            } else {
                room & !1
            };
            current.push(Chunk {
                range: index,
                offset,
                // `take` is at most `longest`, below the PDU size.
                len: u16::try_from(take).unwrap_or(u16::MAX),
            });
            used += answer_bytes(take);
            offset += take;
        }
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn db(db: u16, byte: u32, len: u32) -> Wanted {
        Wanted {
            place: Place {
                area: 0x84,
                db,
                byte,
            },
            len,
        }
    }

    /// Every request and answer of a plan fits the PDU, and the chunks cover each range once.
    fn check(plan: &Plan, pdu_size: u16) {
        for request in &plan.requests {
            assert!(request.len() <= MAX_ITEMS);
            assert!(JOB_HEADER + 2 + READ_ITEM * request.len() <= usize::from(pdu_size));
            let answer: u32 = request.iter().map(|c| answer_bytes(u32::from(c.len))).sum();
            assert!(ACK_HEADER as u32 + 2 + answer <= u32::from(pdu_size) + 1);
        }
        for (index, range) in plan.ranges.iter().enumerate() {
            let mut covered: Vec<(u32, u32)> = plan
                .requests
                .iter()
                .flatten()
                .filter(|c| c.range == index)
                .map(|c| (c.offset, u32::from(c.len)))
                .collect();
            covered.sort();
            let mut next = 0;
            for (offset, len) in covered {
                assert_eq!(offset, next);
                next += len;
            }
            assert_eq!(next, range.len);
        }
    }

    #[test]
    fn a_thousand_reals_side_by_side_take_a_handful_of_requests() {
        let wanted: Vec<Wanted> = (0..1000).map(|i| db(1, i * 4, 4)).collect();
        for (pdu, requests) in [(240, 19), (480, 9), (960, 5)] {
            let plan = plan(&wanted, pdu, true);
            check(&plan, pdu);
            assert_eq!(plan.ranges.len(), 1);
            assert_eq!(plan.requests.len(), requests, "PDU {pdu}");
            assert_eq!(plan.members[10], (0, 40));
        }
    }

    #[test]
    fn scattered_variables_share_requests_up_to_twenty_items() {
        // 50 variables 100 bytes apart in five data blocks: no merging, 20 items a request.
        let wanted: Vec<Wanted> = (0..50u16)
            .map(|i| db(1 + i % 5, u32::from(i / 5) * 100, 4))
            .collect();
        let plan = plan(&wanted, 960, true);
        check(&plan, 960);
        assert_eq!(plan.ranges.len(), 50);
        assert_eq!(plan.requests.len(), 3);
        // A small PDU holds fewer items: (240 - 12) / 12 = 19 by the request, fewer by the answer.
        let small = super::plan(&wanted, 240, true);
        check(&small, 240);
        assert!(small.requests.len() >= 3);
    }

    #[test]
    fn neighbours_merge_and_areas_do_not() {
        let mut wanted = vec![db(1, 0, 2), db(1, 10, 4), db(1, 100, 1), db(2, 0, 2)];
        wanted.push(Wanted {
            place: Place {
                area: 0x83,
                db: 0,
                byte: 0,
            },
            len: 1,
        });
        let plan = plan(&wanted, 480, true);
        check(&plan, 480);
        assert_eq!(plan.ranges.len(), 4);
        assert_eq!(plan.members[0].0, plan.members[1].0);
        assert_eq!(plan.members[1].1, 10);
        let apart = super::plan(&wanted, 480, false);
        assert_eq!(apart.ranges.len(), 5);
        assert_eq!(apart.requests.len(), 1);
    }
}
