//! What a line means, item by item as InfluxDB stores it (issue 31, items 10, 11, 13 and 14):
//! each case here was decoded differently before.

use kilowatch_model::{FieldValue, Point, Precision, Timestamp, encode_points, parse_lines};

const T0: Timestamp = Timestamp(0);

fn one(line: &str) -> Point {
    let mut pts = parse_lines(line, Precision::Ns, T0).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(pts.len(), 1, "{line:?}");
    pts.remove(0)
}

fn refused(line: &str) -> String {
    parse_lines(line, Precision::Ns, T0).expect_err(line).reason
}

/// Item 10: a tag key given twice is refused, naming it, however the tags are ordered (the fast
/// path and the escaped path alike).
#[test]
fn a_duplicate_tag_key_is_refused_naming_it() {
    for line in ["cpu,host=a,host=b v=1", "cpu,host=b,zone=z,host=a v=1 1", "cpu,ho\\ st=a,ho\\ st=b v=1"] {
        let why = refused(line);
        assert!(why.contains("appears twice") && (why.contains("\"host\"") || why.contains("\"ho st\"")), "{line:?}: {why}");
    }
}

/// Item 11: only `\,` `\=` `\ ` escape in names (`\,` `\ ` in a measurement); any other
/// backslash is itself, so `\\` is two characters.
#[test]
fn a_double_backslash_in_a_name_is_two_characters() {
    let p = one(r"cpu,regions=\\ east value=1");
    assert_eq!(p.tag_value("regions"), Some(r"\ east"), "`\\` then an escaped space");
    let p = one(r"cpu,host=two\\\ words value=42");
    assert_eq!(p.tag_value("host"), Some(r"two\\ words"));
    let p = one(r"cpu,reg\\=ion=east value=1");
    assert_eq!(p.tag_value(r"reg\=ion"), Some("east"));
    let p = one(r"c\\pu\=x,t=v f\\k=1");
    assert_eq!(p.measurement, r"c\\pu\=x", "`\\=` is no escape in a measurement");
    assert_eq!(p.get_f64(r"f\\k"), Some(1.0));
}

/// Item 11: a Windows path as Telegraf sends it (it escapes no backslash in a tag) is stored and
/// written back unchanged.
#[test]
fn a_windows_path_from_telegraf_is_stored_and_written_back_unchanged() {
    let p = one(r"win_disk,instance=\\srv\share,host=h free_bytes=1i 1");
    assert_eq!(p.tag_value("instance"), Some(r"\\srv\share"));
    let text = encode_points(std::slice::from_ref(&p), Precision::Ns);
    assert_eq!(text, "win_disk,host=h,instance=\\\\srv\\share free_bytes=1i 1\n");
    assert_eq!(parse_lines(&text, Precision::Ns, T0).expect("our own encoding"), vec![p]);
}

/// Item 13: integers beyond 2^53 would be rounded by a stored sample (a 64-bit float): the line
/// is refused, naming why; 2^53 itself is exact and accepted.
#[test]
fn integers_beyond_2_pow_53_are_refused_not_rounded() {
    for line in ["m v=9007199254740993i", "m v=-9007199254740993i", "m v=9007199254740993u", "m v=18446744073709551615u", "m,t=x\\ y v=9223372036854775807i 1"] {
        let why = refused(line);
        assert!(why.contains("2^53"), "{line:?}: {why}");
    }
    assert_eq!(one("m v=9007199254740992i").get("v"), Some(&FieldValue::I64(1 << 53)));
    assert_eq!(one("m v=-9007199254740992i").get_f64("v"), Some(-9_007_199_254_740_992.0));
    assert_eq!(one("m v=9007199254740992u").get("v"), Some(&FieldValue::U64(1 << 53)));
}

/// Item 14: spellings InfluxDB accepts.
#[test]
fn floats_trailing_spaces_and_duplicate_fields_are_taken_as_influxdb_takes_them() {
    assert_eq!(one("m v=.5").get_f64("v"), Some(0.5));
    assert_eq!(one("m v=1.").get_f64("v"), Some(1.0));
    assert_eq!(one("m v=-.5e1 3").get_f64("v"), Some(-5.0));
    let p = one("m v=1 ");
    assert_eq!((p.get_f64("v"), p.ts), (Some(1.0), T0), "a space after the last field");
    assert_eq!(one("m v=1 7  ").ts, Timestamp(7), "spaces after the timestamp");
    let p = one("m v=1,w=2,v=3 1");
    assert_eq!(p.fields, vec![("v".to_owned(), FieldValue::F64(3.0)), ("w".to_owned(), FieldValue::F64(2.0))], "the last value wins");
    let p = one("m v=1i,v=\"s\",v=t 1");
    assert_eq!(p.fields, vec![("v".to_owned(), FieldValue::Bool(true))]);
    let many: String = (0..200).map(|i| format!("f{}={i}", i % 100)).collect::<Vec<_>>().join(",");
    let p = one(&format!("m {many} 1"));
    assert_eq!(p.fields.len(), 100);
    assert_eq!(p.get_f64("f7"), Some(107.0), "the last of each of a hundred keys");
    for bad in ["m v=.", "m v=-", "m v=1.e", "m v=1..2", "m v=0x10", "m v=-inf", "m v=1e999"] {
        refused(bad);
    }
}

/// A field given twice on a line after the first of a body keeps its own line's fields (the
/// dedupe once dropped the earlier lines' fields instead: found by the line_protocol fuzz target).
#[test]
fn a_duplicate_field_on_a_later_line_leaves_the_other_lines_alone() {
    let pts = parse_lines("a x=1,y=2 1\nb v=1,w=2,v=3 1\nc z=4 1", Precision::Ns, T0).expect("valid");
    assert_eq!(pts[0].fields, vec![("x".to_owned(), FieldValue::F64(1.0)), ("y".to_owned(), FieldValue::F64(2.0))]);
    assert_eq!(pts[1].fields, vec![("v".to_owned(), FieldValue::F64(3.0)), ("w".to_owned(), FieldValue::F64(2.0))]);
    assert_eq!(pts[2].fields, vec![("z".to_owned(), FieldValue::F64(4.0))]);
    let again = encode_points(&pts, Precision::Ns);
    assert_eq!(parse_lines(&again, Precision::Ns, T0).expect("our encoding parses"), pts);
}

/// Item 14: `precision=` empty is nanoseconds; InfluxDB 1.x's `m` and `h` scale; a line without
/// a timestamp gets the server's time truncated to the precision, as InfluxDB does.
#[test]
fn precisions_as_influxdb_spells_them() {
    assert_eq!("".parse::<Precision>(), Ok(Precision::Ns));
    assert_eq!("n".parse::<Precision>(), Ok(Precision::Ns));
    assert_eq!("u".parse::<Precision>(), Ok(Precision::Us));
    let at = |p: &str, ts: &str| parse_lines(&format!("m v=1 {ts}"), p.parse().expect("precision"), T0).expect("valid")[0].ts;
    assert_eq!(at("m", "2"), Timestamp(120_000_000_000));
    assert_eq!(at("h", "2"), Timestamp(7_200_000_000_000));
    assert!("d".parse::<Precision>().is_err());
    let now = Timestamp(1_700_000_000_123_456_789);
    assert_eq!(parse_lines("m v=1", Precision::S, now).expect("valid")[0].ts, Timestamp(1_700_000_000_000_000_000));
    assert_eq!(parse_lines("m v=1\nm,t=a\\ b v=1", Precision::Ms, now).expect("valid").iter().map(|p| p.ts).collect::<Vec<_>>(), vec![Timestamp(1_700_000_000_123_000_000); 2]);
}

/// A refused line's reason quotes at most the start of what is wrong: a line can be megabytes.
#[test]
fn reasons_stay_short_for_huge_lines() {
    let huge = "9".repeat(1 << 20);
    for line in [format!("m v={huge}i"), format!("m v=1 {huge}"), format!("m v=1 1 {huge}"), format!("m,{huge}=a,{huge}=b v=1"), format!("m v=x{huge}")] {
        let why = refused(&line);
        assert!(why.len() < 300, "{} bytes: {}", why.len(), &why[..200]);
    }
}
