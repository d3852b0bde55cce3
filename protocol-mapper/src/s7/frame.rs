//! ISO-on-TCP (RFC 1006): TPKT frames carrying ISO 8073 class 0 TPDUs (COTP), the transport
//! every S7 CPU speaks on port 102. A connection request names the two TSAPs (which CPU, and as
//! what kind of client); data TPDUs carry S7comm PDUs, possibly split over several TPDUs.

use tokio::io::{AsyncRead, AsyncReadExt};

const TPKT_VERSION: u8 = 3;
const TPKT_HEADER: usize = 4;
const CONNECTION_REQUEST: u8 = 0xE0;
const CONNECTION_CONFIRM: u8 = 0xD0;
const DISCONNECT_REQUEST: u8 = 0x80;
const DATA: u8 = 0xF0;
/// The end-of-TSDU flag of a data TPDU: the last part of a PDU.
const LAST_PART: u8 = 0x80;
/// TPDU size 2^10 = 1024 bytes, the largest class 0 allows and what S7 CPUs accept.
const TPDU_SIZE_1024: u8 = 0x0A;

/// A PDU in one or more data TPDUs may not grow past this: a CPU negotiates at most 960 bytes,
/// so anything larger is a broken or hostile peer, not a bigger answer to wait for.
pub const MAX_PDU: usize = 8 * 1024;

/// The TSAPs of a connection to the CPU in `rack` and `slot` as a programming device (PG),
/// snap7's and nodes7's default: local 0x0100, remote 0x01 then rack * 32 + slot.
pub fn tsaps_for(rack: u8, slot: u8) -> (u16, u16) {
    (0x0100, 0x0100 | (u16::from(rack) * 32 + u16::from(slot)))
}

/// The connection request (CR) TPDU in its TPKT frame.
pub fn connection_request(local_tsap: u16, remote_tsap: u16) -> Vec<u8> {
    let [local_hi, local_lo] = local_tsap.to_be_bytes();
    let [remote_hi, remote_lo] = remote_tsap.to_be_bytes();
    let tpdu = [
        17, // length of what follows
        CONNECTION_REQUEST,
        0x00,
        0x00, // destination reference
        0x00,
        0x01, // source reference
        0x00, // class 0
        0xC0,
        1,
        TPDU_SIZE_1024,
        0xC1,
        2,
        local_hi,
        local_lo,
        0xC2,
        2,
        remote_hi,
        remote_lo,
    ];
    tpkt(&[&tpdu])
}

/// One S7comm PDU as a single data TPDU in its TPKT frame.
pub fn data(pdu: &[u8]) -> Vec<u8> {
    tpkt(&[&[2, DATA, LAST_PART], pdu])
}

fn tpkt(parts: &[&[u8]]) -> Vec<u8> {
    let length = TPKT_HEADER + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut frame = Vec::with_capacity(length);
    frame.extend_from_slice(&[TPKT_VERSION, 0]);
    // Every frame built here is far below 64 KiB.
    frame.extend_from_slice(&u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes());
    for part in parts {
        frame.extend_from_slice(part);
    }
    frame
}

/// What one TPKT frame carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Tpdu<'a> {
    ConnectionConfirm,
    Data {
        last: bool,
        payload: &'a [u8],
    },
    /// The peer closes the transport connection; `reason` as ISO 8073 numbers it.
    Disconnect {
        reason: u8,
    },
    Other(u8),
}

/// Reads the TPDU out of a TPKT frame's payload (the bytes after the 4-byte header).
pub fn parse_tpdu(payload: &[u8]) -> Result<Tpdu<'_>, String> {
    let (&length, rest) = payload
        .split_first()
        .ok_or("empty TPKT frame: no COTP header")?;
    let length = usize::from(length);
    if length == 0 || rest.len() < length {
        return Err(format!(
            "COTP header length {length} does not fit the {} bytes received",
            rest.len()
        ));
    }
    let header = &rest[..length];
    Ok(match header[0] & 0xF0 {
        CONNECTION_CONFIRM => Tpdu::ConnectionConfirm,
        DATA => {
            let flags = header
                .get(1)
                .ok_or("COTP data header without its end-of-PDU byte")?;
            Tpdu::Data {
                last: flags & LAST_PART != 0,
                payload: &rest[length..],
            }
        }
        DISCONNECT_REQUEST => Tpdu::Disconnect {
            reason: header.get(5).copied().unwrap_or(0),
        },
        other => Tpdu::Other(other),
    })
}

/// Reads one TPKT frame and returns its payload. An error is a transport problem: the stream
/// ended, or what came is not TPKT.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, String> {
    let mut header = [0u8; TPKT_HEADER];
    reader
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("the connection to the CPU ended: {e}"))?;
    if header[0] != TPKT_VERSION {
        return Err(format!(
            "not an ISO-on-TCP frame (version byte {:#04x}); is port 102 of an S7 CPU behind this address?",
            header[0]
        ));
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if length <= TPKT_HEADER {
        return Err(format!("TPKT frame length {length} is too short"));
    }
    let mut payload = vec![0u8; length - TPKT_HEADER];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("the connection to the CPU ended inside a frame: {e}"))?;
    Ok(payload)
}

/// Reads data TPDUs until the last part of one S7comm PDU and returns the PDU.
pub async fn read_pdu<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, String> {
    let mut pdu = Vec::new();
    loop {
        let frame = read_frame(reader).await?;
        match parse_tpdu(&frame)? {
            Tpdu::Data { last, payload } => {
                if pdu.len() + payload.len() > MAX_PDU {
                    return Err(format!("the CPU sent a PDU larger than {MAX_PDU} bytes"));
                }
                pdu.extend_from_slice(payload);
                if last {
                    return Ok(pdu);
                }
            }
            Tpdu::Disconnect { reason } => {
                return Err(format!("the CPU closed the connection (reason {reason})"));
            }
            other => return Err(format!("expected S7 data, got COTP {other:?}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_request_names_rack_and_slot() {
        let (local, remote) = tsaps_for(0, 2);
        assert_eq!((local, remote), (0x0100, 0x0102));
        assert_eq!(tsaps_for(1, 3).1, 0x0123);
        let frame = connection_request(local, remote);
        assert_eq!(frame.len(), 22);
        assert_eq!(&frame[..4], &[3, 0, 0, 22]);
        assert_eq!(&frame[18..], &[0xC2, 2, 0x01, 0x02]);
    }

    #[test]
    fn data_tpdus_are_read_and_joined() {
        let frame = data(&[0x32, 1]);
        assert_eq!(frame, [3, 0, 0, 9, 2, 0xF0, 0x80, 0x32, 1]);
        assert_eq!(
            parse_tpdu(&frame[4..]),
            Ok(Tpdu::Data {
                last: true,
                payload: &[0x32, 1]
            })
        );
        assert!(parse_tpdu(&[]).is_err());
        assert!(parse_tpdu(&[5, 0xF0]).is_err());
        assert_eq!(parse_tpdu(&[1, 0xD0]), Ok(Tpdu::ConnectionConfirm));
    }

    #[tokio::test]
    async fn a_pdu_in_two_parts() {
        let mut bytes = vec![3, 0, 0, 8, 2, 0xF0, 0x00, 0xAA];
        bytes.extend_from_slice(&data(&[0xBB]));
        let pdu = read_pdu(&mut bytes.as_slice()).await.expect("pdu");
        assert_eq!(pdu, [0xAA, 0xBB]);
        let error = read_pdu(&mut &[0x16, 3, 1, 0][..]).await.unwrap_err();
        assert!(error.contains("not an ISO-on-TCP frame"), "{error}");
    }
}
