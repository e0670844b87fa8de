//! Any bytes as a write body: the parser never panics, its fast path agrees with the per-line
//! rules alone (same points, or the same error on the same line), and what it accepts
//! re-encodes into line protocol that parses back to the same points.
#![no_main]

use kilowatch_model::lineproto::parse_lines_reference;
use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_lines(text, Precision::Ns, Timestamp(0));
    assert_eq!(parsed, parse_lines_reference(text, Precision::Ns, Timestamp(0)), "fast path and reference differ on {text:?}");
    if let Ok(points) = parsed {
        let again = encode_points(&points, Precision::Ns);
        let back = parse_lines(&again, Precision::Ns, Timestamp(0)).expect("our own encoding parses");
        assert_eq!(back, points, "round trip of {text:?} via {again:?}");
    }
});
