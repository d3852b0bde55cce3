//! Coalescing reads (`batchReadEnabled`): reads of one unit and function code whose ranges touch
//! or overlap become one request, as long as it stays within the protocol's limit (125
//! registers, 2000 coils) and `maxBatchSize`. Pure.

/// One endpoint's read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub unit: u8,
    pub fc: u8,
    pub address: u16,
    pub count: u16,
}

/// One request on the wire and the reads it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub unit: u8,
    pub fc: u8,
    pub address: u16,
    pub count: u16,
    /// Indexes into the reads given to [`plan`].
    pub members: Vec<usize>,
}

/// The most one request may carry for a function code.
pub fn protocol_limit(fc: u8) -> u16 {
    if fc <= 2 { 2000 } else { 125 }
}

/// Groups `reads` into requests. Without batching every read is its own request.
pub fn plan(reads: &[Read], batching: bool, max_batch: Option<u16>) -> Vec<Request> {
    let single = |i: usize, r: &Read| Request {
        unit: r.unit,
        fc: r.fc,
        address: r.address,
        count: r.count,
        members: vec![i],
    };
    if !batching {
        return reads
            .iter()
            .enumerate()
            .map(|(i, r)| single(i, r))
            .collect();
    }
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&i| (reads[i].unit, reads[i].fc, reads[i].address, reads[i].count));
    let mut requests: Vec<Request> = Vec::new();
    for i in order {
        let read = &reads[i];
        let limit = max_batch.map_or(protocol_limit(read.fc), |m| m.min(protocol_limit(read.fc)));
        let end = u32::from(read.address) + u32::from(read.count);
        if let Some(last) = requests.last_mut()
            && last.unit == read.unit
            && last.fc == read.fc
            && u32::from(read.address) <= u32::from(last.address) + u32::from(last.count)
        {
            let merged_end = end.max(u32::from(last.address) + u32::from(last.count));
            let merged = merged_end - u32::from(last.address);
            if merged <= u32::from(limit) {
                last.count = merged as u16;
                last.members.push(i);
                continue;
            }
        }
        requests.push(single(i, read));
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(unit: u8, fc: u8, address: u16, count: u16) -> Read {
        Read {
            unit,
            fc,
            address,
            count,
        }
    }

    fn shape(requests: &[Request]) -> Vec<(u8, u8, u16, u16, Vec<usize>)> {
        requests
            .iter()
            .map(|q| (q.unit, q.fc, q.address, q.count, q.members.clone()))
            .collect()
    }

    #[test]
    fn coalesces_touching_and_overlapping_ranges_of_one_unit_and_function() {
        let reads = [
            r(1, 3, 10, 2),
            r(1, 3, 0, 10),
            r(1, 3, 11, 4),
            r(1, 4, 12, 1),
            r(2, 3, 12, 1),
            r(1, 3, 20, 1),
        ];
        assert_eq!(
            shape(&plan(&reads, true, None)),
            [
                (1, 3, 0, 15, vec![1, 0, 2]),
                (1, 3, 20, 1, vec![5]),
                (1, 4, 12, 1, vec![3]),
                (2, 3, 12, 1, vec![4])
            ]
        );
        assert_eq!(
            plan(&reads, false, None).len(),
            reads.len(),
            "no batching: one request per read"
        );
    }

    #[test]
    fn respects_the_protocol_limit_and_max_batch_size() {
        let reads: Vec<Read> = (0..130).map(|i| r(1, 3, i, 1)).collect();
        let requests = plan(&reads, true, None);
        assert_eq!(shape(&requests)[0].3, 125);
        assert_eq!(requests[1].address, 125);
        let small = plan(&reads, true, Some(50));
        assert_eq!(
            small.iter().map(|q| q.count).collect::<Vec<_>>(),
            [50, 50, 30]
        );
        let coils: Vec<Read> = (0..3).map(|i| r(1, 1, i * 1000, 1000)).collect();
        assert_eq!(
            plan(&coils, true, None)
                .iter()
                .map(|q| q.count)
                .collect::<Vec<_>>(),
            [2000, 1000]
        );
    }
}
