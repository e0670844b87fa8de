//! Where a line of a body ends. InfluxDB's splitter (`scanLine`, which the
//! `influxdb-line-protocol` crate ports) reads every `\x` as an escape, so `\\ ` is an escaped
//! backslash and then a space that starts the fields; its name parsers, and ours (issue 31 item
//! 11), read `\\ ` as a backslash and then an escaped space. A name holding `\\ ` and a quote
//! (`a\\ b"c`) made that splitter count the quote as a string's and merge the next line into
//! this one, so two points we encoded read back as one bad line (found by the
//! `line_protocol` fuzz target). This splitter escapes as the parsers do: outside a string, `\`
//! escapes `,`, ` ` and `=` only; inside one, `\` escapes `"` and `\`.

/// The first line of `body`, without its '\n' (a '\r' before it is kept).
pub(super) fn first_line(body: &str) -> &str {
    let b = body.as_bytes();
    let (mut fields, mut quoted) = (false, false);
    // A quote opens a string only as a field's value: after more '=' than ',' in the fields.
    let (mut equals, mut commas) = (0u32, 0u32);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if quoted {
            match c {
                b'\\' if matches!(b.get(i + 1), Some(b'\\' | b'"')) => i += 1,
                b'"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                b'\\' if matches!(b.get(i + 1), Some(b',' | b' ' | b'=')) => i += 1,
                b'\n' => return &body[..i],
                b' ' => fields = true,
                b'=' if fields => equals += 1,
                b',' if fields => commas += 1,
                b'"' if fields && equals > commas => quoted = true,
                _ => {}
            }
        }
        i += 1;
    }
    body
}

/// Every line of `body`, as `str::split('\n')` would cut them were no '\n' inside a string.
pub(super) fn split_lines(body: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        let line = first_line(r);
        rest = r.get(line.len() + 1..);
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_where_the_parsers_say_a_string_ends() {
        assert_eq!(split_lines("a v=1\nb v=2\n").collect::<Vec<_>>(), ["a v=1", "b v=2", ""]);
        assert_eq!(split_lines("a s=\"x\ny\" 1\nb v=2").collect::<Vec<_>>(), ["a s=\"x\ny\" 1", "b v=2"], "a newline inside a string");
        assert_eq!(split_lines("a s=\"x\\\"\ny\"\nb v=2").collect::<Vec<_>>(), ["a s=\"x\\\"\ny\"", "b v=2"], "an escaped quote keeps the string open");
        // `\\ ` in a name: a backslash, then an escaped space; the quote after it is the name's.
        assert_eq!(split_lines("a\\\\ b\"c v=1 0\nd v=2 0").collect::<Vec<_>>(), ["a\\\\ b\"c v=1 0", "d v=2 0"]);
        assert_eq!(split_lines("a,t=\"x v=1\nb v=2").collect::<Vec<_>>(), ["a,t=\"x v=1", "b v=2"], "a quote in a tag is the tag's");
        assert_eq!(split_lines("").collect::<Vec<_>>(), [""]);
    }
}
