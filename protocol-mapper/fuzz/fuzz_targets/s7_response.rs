//! Feeds arbitrary bytes to the S7 decoders, as a CPU (or anything listening on port 102)
//! could send them: the COTP header of a TPKT frame, and the answers to a communication setup,
//! a read of 1-20 items and a write. Nothing may panic; an accepted read answer must hold
//! exactly the items asked for, none longer than the PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol_mapper::s7::{frame, pdu};

fuzz_target!(|data: &[u8]| {
    let _ = frame::parse_tpdu(data);
    let Some((&first, pdu)) = data.split_first() else {
        return;
    };
    // The answer's own reference, so the header check passes and the body is decoded.
    let reference = pdu
        .get(4..6)
        .map_or(0, |r| u16::from_be_bytes([r[0], r[1]]));
    let _ = pdu::parse_setup_response(pdu, reference);
    let _ = pdu::parse_write_response(pdu, reference);
    let items = usize::from(first % 20) + 1;
    if let Ok(answers) = pdu::parse_read_response(pdu, reference, items) {
        assert_eq!(answers.len(), items);
        for answer in answers.iter().flatten() {
            assert!(answer.len() <= pdu.len());
        }
    }
});
