//! The store's series keys as the receiver holds them: the line protocol of a measurement and
//! its sorted tags, kept once per series and shared by every mapping that names it.

use std::sync::Arc;

/// A series key as the store names it: the line protocol of its measurement and sorted tags.
/// Where nothing needed escaping (nearly always) the text alone is kept and split again into
/// measurement and tags when a line is built; otherwise the parts are kept beside it.
#[derive(Debug)]
pub struct Key {
    pub(super) text: Box<str>,
    pub(super) parts: Option<Box<(String, Vec<(String, String)>)>>,
}

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
            None => self.text.split(',').next().unwrap_or_default(),
        }
    }

    #[inline]
    pub(super) fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        let (owned, plain) = match &self.parts {
            Some(p) => (Some(p.1.iter().map(|(k, v)| (k.as_str(), v.as_str()))), None),
            // No escapes: every `,` and `=` is a separator.
            None => (None, Some(self.text.split(',').skip(1).map(|kv| kv.split_once('=').unwrap_or((kv, ""))))),
        };
        owned.into_iter().flatten().chain(plain.into_iter().flatten())
    }

    /// Bytes it holds, for the memory of mapped series.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Key>() + self.text.len() + self.parts.as_ref().map_or(0, |p| 2 * self.text.len() + p.1.len() * std::mem::size_of::<(String, String)>())
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
