//! TCP segmentation of any frame at any segment size: refused or cut into at most
//! MAX_PIECES pieces whose payloads, in order, are the frame's payload, each with the
//! frame's headers in front and an IP length that matches the piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmdswitch::datapath::wire::tso;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mss = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let frame = &data[2..];
    let mut buf = Vec::new();
    let mut payload = Vec::new();
    let mut pieces = 0usize;
    let Some(t) = tso::parse_tcp(frame) else {
        assert!(tso::segment(frame, mss, &mut buf, |_| true).is_none());
        return;
    };
    let r = tso::segment(frame, mss, &mut buf, |p| {
        pieces += 1;
        assert_eq!(p[..t.l3], frame[..t.l3], "the link header is the frame's");
        let ip_len = usize::from(u16::from_be_bytes([p[t.l3 + if t.v6 { 4 } else { 2 }], p[t.l3 + if t.v6 { 5 } else { 3 }]]));
        assert_eq!(ip_len + if t.v6 { 40 } else { 0 }, p.len() - t.l3, "the IP length is the piece's");
        payload.extend_from_slice(&p[t.payload..]);
        true
    });
    if let Some(n) = r {
        assert_eq!(n, pieces);
        assert!(pieces <= tso::MAX_PIECES);
        assert_eq!(payload, frame[t.payload..], "the payload, whole and in order");
    }
});
