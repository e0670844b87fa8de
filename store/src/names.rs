//! Series names, held once. A site's series repeat the same few names (measurements, fields,
//! tag keys, and tag values such as a node's name, which its eight GPUs share): each distinct
//! name is one `Arc<str>` for the whole store, and each tag set one sorted slice of them that
//! all its fields share. The index that finds a line's series is keyed by tag set, by a hash
//! of the names checked against them, not by a text key per series: at 50 times DC5 (800,000
//! series) keys and per-series maps were most of the aggregator's memory.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};
use kilowatch_model::Labels;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::SeriesId;

/// A name held once for the whole store.
pub type Name = Arc<str>;

/// A series' tags: sorted by key, unique, as [`Labels`] holds them, but as shared names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Box<[(Name, Name)]>);

impl Tags {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &*self.0[i].1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_labels(&self) -> Labels {
        self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// Whether these are exactly `tags` (sorted by key, as lines and [`Labels`] give them).
    pub fn same_as<'a>(&self, tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> bool {
        tags.len() == self.0.len() && self.iter().zip(tags).all(|(a, b)| a == b)
    }
}

impl PartialEq<Labels> for Tags {
    fn eq(&self, other: &Labels) -> bool {
        self.same_as(other.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One tag set of one measurement, and the series of its fields.
#[derive(Debug)]
pub(crate) struct TagSet {
    pub measurement: Name,
    pub tags: Arc<Tags>,
    pub fields: Vec<(Name, SeriesId)>,
    /// Whether a line spelled this set as its names render (`measurement,k=v,…`, see
    /// [`TagSet::spells`]) and the set is in `Names::by_text` under that text. The text itself
    /// is not kept: it is the names again (about 100 bytes a series, 12 MB of the
    /// high-cardinality bench's 100,000 series), compared name by name instead.
    spelled: bool,
}

impl TagSet {
    /// Whether `text` is exactly this set's measurement and tags, `measurement,k=v,…` in key
    /// order. Exact as a lookup only for a set whose names hold none of the separators
    /// ([`TagSet::renders_unambiguously`]): otherwise two sets could render alike.
    fn spells(&self, text: &str) -> bool {
        let Some(mut rest) = text.strip_prefix(&*self.measurement) else { return false };
        for (k, v) in self.tags.iter() {
            let Some(r) = rest.strip_prefix(',').and_then(|r| r.strip_prefix(k)).and_then(|r| r.strip_prefix('=')).and_then(|r| r.strip_prefix(v)) else {
                return false;
            };
            rest = r;
        }
        rest.is_empty()
    }

    /// Whether no name holds a separator of the rendered text, so that the text names one
    /// set only.
    fn renders_unambiguously(&self) -> bool {
        let plain = |n: &str| !n.bytes().any(|b| matches!(b, b',' | b'=' | b' ' | b'\\'));
        plain(&self.measurement) && self.tags.iter().all(|(k, v)| plain(k) && plain(v))
    }

    /// `measurement,k=v,…`: the text a set in `Names::by_text` is hashed by (rebuilt only when
    /// that table grows).
    fn rendered(&self) -> String {
        let mut t = String::with_capacity(64);
        t.push_str(&self.measurement);
        for (k, v) in self.tags.iter() {
            t.push(',');
            t.push_str(k);
            t.push('=');
            t.push_str(v);
        }
        t
    }
}

/// Every name and tag set the store holds, and the way from a line's names to its series.
/// The maps use hashbrown's default hasher (foldhash), not std's SipHash: every line of every
/// write is looked up in `by_text` by its text, and SipHash was 1% of the ingest bench's CPU.
#[derive(Default)]
pub(crate) struct Names {
    interned: HashSet<Name>,
    pub sets: Vec<TagSet>,
    /// Indices into `sets`, by the hash of (measurement, tags).
    by_names: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Tag sets by the hash of their text as lines send it (`TagSet::spelled`): what most
    /// lines are found by, without parsing their names.
    by_text: HashTable<u32>,
    /// Other spellings of known tag sets (the same tags in another order, or names holding a
    /// separator): rare.
    other_texts: HashMap<Box<str>, u32>,
}

impl Names {
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(n) = self.interned.get(s) {
            return n.clone();
        }
        let n: Name = s.into();
        self.interned.insert(n.clone());
        n
    }

    /// The tag set of `measurement` and `tags` (sorted by key, unique), if the store has it.
    pub fn find<'a>(&self, measurement: &str, tags: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone) -> Option<u32> {
        let h = hash_names(&self.hasher, measurement, tags.clone());
        self.by_names.find(h, |&i| self.sets[i as usize].measurement.as_ref() == measurement && self.sets[i as usize].tags.same_as(tags.clone())).copied()
    }

    /// The tag set a line's text as sent was last found to be.
    /// `guess` is tried first: writers send their lines in the same order request after
    /// request, so the set after the previous line's is usually the next line's, and comparing
    /// with its text (the sets' texts lie in the order they were made) avoids a hash lookup that
    /// misses the cache on a large site (10% of the high-cardinality bench's CPU).
    pub fn find_text(&self, text: &str, guess: Option<u32>) -> Option<u32> {
        if let Some(g) = guess
            && self.sets.get(g as usize).is_some_and(|s| s.spelled && s.spells(text))
        {
            return guess;
        }
        let sets = &self.sets;
        self.by_text.find(self.hasher.hash_one(text), |&i| sets[i as usize].spells(text)).copied().or_else(|| self.other_texts.get(text).copied())
    }

    /// Remembers that `text` names tag set `set`.
    pub fn remember_text(&mut self, text: &str, set: u32) {
        let Some(s) = self.sets.get_mut(set as usize) else { return };
        if s.spelled && s.spells(text) {
            return;
        }
        if !s.spelled && s.spells(text) && s.renders_unambiguously() {
            s.spelled = true;
            let (sets, hasher) = (&self.sets, &self.hasher);
            self.by_text.insert_unique(hasher.hash_one(text), set, |&j| hasher.hash_one(sets[j as usize].rendered().as_str()));
            return;
        }
        if !self.other_texts.contains_key(text) {
            self.other_texts.insert(text.into(), set);
        }
    }

    /// The tag set of `measurement` and `tags`, created if needed.
    pub fn find_or_add<'a>(&mut self, measurement: &str, tags: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone) -> u32 {
        if let Some(i) = self.find(measurement, tags.clone()) {
            return i;
        }
        let h = hash_names(&self.hasher, measurement, tags.clone());
        let set = TagSet { measurement: self.intern(measurement), tags: Arc::new(Tags(tags.map(|(k, v)| (self.intern(k), self.intern(v))).collect())), fields: Vec::new(), spelled: false };
        let i = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.sets.push(set);
        let (sets, hasher) = (&self.sets, &self.hasher);
        self.by_names.insert_unique(h, i, |&j| hash_names(hasher, &sets[j as usize].measurement, sets[j as usize].tags.iter()));
        i
    }

    /// The series of field `field` of tag set `set`; `hint` is where it usually is (fields
    /// come in the same order line after line).
    pub fn field_of(&self, set: u32, hint: usize, field: &str) -> Option<SeriesId> {
        let fields = &self.sets.get(set as usize)?.fields;
        fields.get(hint).filter(|(f, _)| **f == *field).or_else(|| fields.iter().find(|(f, _)| **f == *field)).map(|(_, id)| *id)
    }

    /// Forgets the series from `first` on (a write that was not stored): their tag sets stay,
    /// with fewer fields.
    pub fn take_back(&mut self, first: SeriesId) {
        for s in &mut self.sets {
            s.fields.retain(|(_, id)| *id < first);
        }
    }
}

fn hash_names<'a>(hasher: &DefaultHashBuilder, measurement: &str, tags: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = hasher.build_hasher();
    measurement.hash(&mut h);
    for (k, v) in tags {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

/// The text key a series has in store.db's `series` table (unique there): measurement, tags and
/// field, separated by control characters that names do not contain.
pub(crate) fn series_key<'a>(measurement: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>, field: &str) -> String {
    let mut k = String::with_capacity(128);
    k.push_str(measurement);
    for (tk, tv) in tags {
        k.push('\u{1f}');
        k.push_str(tk);
        k.push('=');
        k.push_str(tv);
    }
    k.push('\u{1e}');
    k.push_str(field);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_are_found_by_their_names_and_share_them() {
        let mut n = Names::default();
        let a = n.find_or_add("gpu", [("gpu", "0"), ("node", "dgx-001")].into_iter());
        let b = n.find_or_add("gpu", [("gpu", "1"), ("node", "dgx-001")].into_iter());
        assert_ne!(a, b);
        assert_eq!(n.find_or_add("gpu", [("gpu", "0"), ("node", "dgx-001")].into_iter()), a);
        assert_eq!(n.find("gpu", [("gpu", "0")].into_iter()), None);
        assert_eq!(n.find("node", [("gpu", "0"), ("node", "dgx-001")].into_iter()), None);
        let (ta, tb) = (&n.sets[a as usize].tags, &n.sets[b as usize].tags);
        assert!(Arc::ptr_eq(&ta.0[1].1, &tb.0[1].1), "the node's name is held once");
        assert_eq!(ta.get("node"), Some("dgx-001"));
        assert_eq!(ta.get("zone"), None);
        assert_eq!(serde_json::to_string(ta.as_ref()).expect("json"), r#"{"gpu":"0","node":"dgx-001"}"#);
        let labels: Labels = [("gpu".to_owned(), "0".to_owned()), ("node".to_owned(), "dgx-001".to_owned())].into_iter().collect();
        assert!(**ta == labels);
        assert_eq!(ta.to_labels(), labels);
        n.remember_text("gpu,gpu=0,node=dgx-001", a);
        assert_eq!(n.find_text("gpu,gpu=0,node=dgx-001", None), Some(a));
        assert_eq!(n.find_text("gpu,gpu=0,node=dgx-001", Some(a)), Some(a));
        assert_eq!(n.find_text("gpu,gpu=0,node=dgx-001", Some(a + 1)), Some(a), "a wrong guess falls back to the index");
        n.remember_text("gpu,node=dgx-001,gpu=0", a);
        assert_eq!(n.find_text("gpu,node=dgx-001,gpu=0", Some(a)), Some(a), "another spelling");
        assert_eq!(n.find_text("gpu,gpu=0,node=dgx-001", None), Some(a), "the first spelling still");
        assert_eq!(n.find_text("gpu,gpu=1,node=dgx-001", Some(a)), None);
        for i in 0..10_000 {
            let v = i.to_string();
            n.find_or_add("m", [("k", v.as_str())].into_iter());
        }
        for i in 0..10_000 {
            let v = i.to_string();
            let s = n.find("m", [("k", v.as_str())].into_iter()).expect("found");
            assert_eq!(n.sets[s as usize].tags.get("k"), Some(v.as_str()));
            n.remember_text(&format!("m,k={v}"), s);
        }
        // Found by their texts after the text index grew (rehashed from the names).
        for i in 0..10_000 {
            let s = n.find_text(&format!("m,k={i}"), None).expect("found by text");
            assert_eq!(n.sets[s as usize].tags.get("k"), Some(i.to_string().as_str()));
        }
        assert_eq!(n.find_text("m,k=10000", None), None);
        assert_eq!(n.find_text("m,k=1,j=2", None), None, "a longer text is another set");
        assert_eq!(n.find_text("m,k=", None), None);
        // A name holding a separator renders like another set's names: never found by that
        // rendering, only by a text remembered for it.
        let odd = n.find_or_add("m", [("k", "1,j=2")].into_iter());
        let plain = n.find_or_add("m", [("j", "2"), ("k", "1")].into_iter());
        n.remember_text("m,j=2,k=1", plain);
        n.remember_text("m,k=1,j=2", odd);
        assert_eq!(n.find_text("m,j=2,k=1", Some(odd)), Some(plain));
        assert_eq!(n.find_text("m,k=1,j=2", Some(odd)), Some(odd));
    }
}
