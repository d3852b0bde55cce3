//! Feeds arbitrary bytes to the packet decoder, as a client could, in both protocol versions.
//! The decoder must never panic; whatever it accepts must encode and decode back to itself.
#![no_main]

use broker::codec::{self, Protocol};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        // Decode packet after packet, as the connection loop does, until an error or a partial packet.
        while let Ok(Some(packet)) = codec::decode(&mut buf, protocol, 1 << 20) {
            let wire_protocol = match &packet {
                codec::Packet::Connect(c) => c.protocol,
                _ => protocol,
            };
            let mut encoded = BytesMut::new();
            codec::encode(&packet, wire_protocol, &mut encoded);
            let again = codec::decode(&mut encoded, wire_protocol, 1 << 20)
                .expect("re-encoded packet decodes")
                .expect("re-encoded packet is whole");
            assert_eq!(again, packet, "encode/decode round trip");
        }
    }
});
