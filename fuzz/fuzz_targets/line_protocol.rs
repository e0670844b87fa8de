//! Any bytes as a write body: the parser never panics, and what it accepts re-encodes into
//! line protocol that parses back to the same points.
#![no_main]

use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(points) = parse_lines(text, Precision::Ns, Timestamp(0)) {
        let again = encode_points(&points, Precision::Ns);
        let back = parse_lines(&again, Precision::Ns, Timestamp(0)).expect("our own encoding parses");
        assert_eq!(back, points, "round trip of {text:?} via {again:?}");
    }
});
