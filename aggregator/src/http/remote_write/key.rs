//! The store's series keys as the receiver holds them: the line protocol of a measurement and
//! its sorted tags, kept once per series and shared by every mapping that names it.

use std::sync::Arc;

/// A series key as the store names it: the line protocol of its measurement and sorted tags.
/// Where nothing needed escaping (nearly always) the text alone is kept and split again into
/// measurement and tags when a line is built; otherwise the parts are kept beside it.
#[derive(Debug)]
pub struct Key {
    pub(super) text: Box<str>,
    pub(super) parts: Option<Box<Parts>>,
}

/// A key's measurement and tags, unescaped.
type Parts = (String, Vec<(String, String)>);

impl Key {
    pub(super) fn new(measurement: &str, tags: &[(String, String)]) -> Key {
        let text = series_key(measurement, tags);
        let parts = text.contains('\\').then(|| Box::new((measurement.to_owned(), tags.to_vec())));
        Key { text: text.into(), parts }
    }

    /// `measurement,k=v,…` escaped as line protocol.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text where it names the series without escapes (the store's cheap lookup key).
    pub(super) fn plain(&self) -> Option<&str> {
        self.parts.is_none().then_some(&*self.text)
    }

    pub(super) fn measurement(&self) -> &str {
        match &self.parts {
            Some(p) => &p.0,
            None => &self.text[..self.measurement_len()],
        }
    }

    /// Bytes of the measurement in a text without escapes: up to the first `,` (a byte loop:
    /// measurements are short, and `str::split` costs more to set up than to run on them).
    fn measurement_len(&self) -> usize {
        self.text.bytes().position(|b| b == b',').unwrap_or(self.text.len())
    }

    #[inline]
    pub(super) fn tags(&self) -> Tags<'_> {
        match &self.parts {
            Some(p) => Tags::Parts(p.1.iter()),
            None => Tags::Plain(PlainTags(self.text.get(self.measurement_len() + 1..).unwrap_or_default())),
        }
    }

    /// Bytes it holds, for the memory of mapped series.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Key>() + self.text.len() + self.parts.as_ref().map_or(0, |p| 2 * self.text.len() + p.1.len() * std::mem::size_of::<(String, String)>())
    }
}

/// A key's tags, from its parts or read from its text.
pub(super) enum Tags<'a> {
    Parts(std::slice::Iter<'a, (String, String)>),
    Plain(PlainTags<'a>),
}

impl<'a> Iterator for Tags<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        match self {
            Tags::Parts(p) => p.next().map(|(k, v)| (k.as_str(), v.as_str())),
            Tags::Plain(p) => p.next(),
        }
    }
}

/// The `k=v` pairs of a key's text without escapes, after its measurement: every `,` and `=` is
/// a separator. Read byte by byte, once: `str::split` and `split_once` for every tag of every
/// line searched each separator anew (7% of the high-cardinality bench's CPU).
pub(super) struct PlainTags<'a>(&'a str);

impl<'a> Iterator for PlainTags<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let s = self.0;
        if s.is_empty() {
            return None;
        }
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        // Cut at ASCII separators: always at char boundaries.
        let key = &s[..i];
        if i == b.len() || b[i] == b',' {
            self.0 = s.get(i + 1..).unwrap_or_default();
            return Some((key, ""));
        }
        let mut j = i + 1;
        while j < b.len() && b[j] != b',' {
            j += 1;
        }
        self.0 = s.get(j + 1..).unwrap_or_default();
        Some((key, &s[i + 1..j]))
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.text.hash(h);
    }
}
impl PartialEq for Key {
    fn eq(&self, o: &Key) -> bool {
        self.text == o.text
    }
}
impl Eq for Key {}

/// A key looked up by its text.
#[derive(Hash)]
pub(super) struct KeyText<'a>(pub(super) &'a str);
impl hashbrown::Equivalent<Arc<Key>> for KeyText<'_> {
    fn equivalent(&self, k: &Arc<Key>) -> bool {
        *k.text == *self.0
    }
}

/// `measurement,k=v,…` escaped for line protocol (tags sorted by the caller).
pub(super) fn series_key(measurement: &str, tags: &[(String, String)]) -> String {
    let esc = |o: &mut String, s: &str, special: &[char]| {
        for c in s.chars() {
            if special.contains(&c) {
                o.push('\\');
            }
            o.push(c);
        }
    };
    let mut k = String::with_capacity(measurement.len() + tags.iter().map(|(t, v)| t.len() + v.len() + 2).sum::<usize>());
    esc(&mut k, measurement, &[',', ' ']);
    for (t, v) in tags {
        k.push(',');
        esc(&mut k, t, &[',', '=', ' ']);
        k.push('=');
        esc(&mut k, v, &[',', '=', ' ']);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[(&str, &str)]) -> Vec<(String, String)> {
        t.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_plain_key_gives_back_its_measurement_and_tags_and_an_escaped_one_its_parts() {
        let t = tags(&[("gpu", "0"), ("node", "dgx-001"), ("site", "dc5"), ("uuid", "GPU-é")]);
        let k = Key::new("gpu", &t);
        assert_eq!(k.plain(), Some("gpu,gpu=0,node=dgx-001,site=dc5,uuid=GPU-é"));
        assert_eq!(k.measurement(), "gpu");
        assert_eq!(k.tags().collect::<Vec<_>>(), [("gpu", "0"), ("node", "dgx-001"), ("site", "dc5"), ("uuid", "GPU-é")]);
        let bare = Key::new("up", &[]);
        assert_eq!((bare.measurement(), bare.tags().count()), ("up", 0));
        let empty = Key::new("m", &tags(&[("a", "")]));
        assert_eq!(empty.tags().collect::<Vec<_>>(), [("a", "")]);
        let escaped = Key::new("node power", &tags(&[("host", "a b"), ("rack", "r=1,2")]));
        assert_eq!(escaped.plain(), None);
        assert_eq!(escaped.text(), "node\\ power,host=a\\ b,rack=r\\=1\\,2");
        assert_eq!(escaped.measurement(), "node power");
        assert_eq!(escaped.tags().collect::<Vec<_>>(), [("host", "a b"), ("rack", "r=1,2")]);
    }
}
