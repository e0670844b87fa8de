//! Opening the store: the series, newest values, horizons and dirty hours from store.db, then
//! the write-ahead log's records replayed into the heads.

use kilowatch_model::Labels;

use super::{Inner, SeriesId, StoreError, codec, newest, wal};

/// Series rows read from store.db at a time when opening.
const PAGE: usize = 10_000;

impl Inner {
    pub(super) fn load(&mut self, replay: wal::Replay) -> Result<(), StoreError> {
        // The series of one tag set follow each other: their tags are parsed once. Read a
        // page at a time: the rows of 800,000 series would take 200 MB at once.
        let mut prev: Option<(String, String, u32)> = None;
        loop {
            let mut page: Vec<(i64, String, String, String)> = Vec::with_capacity(PAGE);
            {
                let mut st = self.conn.prepare_cached("SELECT id, measurement, tags, field FROM series WHERE id >= ?1 ORDER BY id LIMIT ?2")?;
                let mut q = st.query(rusqlite::params![self.meta.len() as i64, PAGE as i64])?;
                while let Some(r) = q.next()? {
                    page.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
                }
            }
            let last_page = page.len() < PAGE;
            for (id, measurement, tags, field) in page {
                let set = match &prev {
                    Some((m, t, set)) if *m == measurement && *t == tags => *set,
                    _ => {
                        let labels: Labels = serde_json::from_str(&tags).map_err(|_| codec::CorruptRecord("series tags are not JSON"))?;
                        let set = self.names.find_or_add(&measurement, labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                        prev = Some((measurement, tags, set));
                        set
                    }
                };
                if SeriesId::try_from(id).ok().is_none_or(|id| id as usize != self.meta.len()) {
                    return Err(codec::CorruptRecord("series ids are not dense").into());
                }
                self.add_series(set, &field);
            }
            if last_page {
                break;
            }
        }
        self.persisted_series = self.meta.len();
        self.newest_log = newest::load(&self.conn, &mut self.last)?;
        self.stats.newest_ts = self.stats.newest_ts.max(self.last.iter().flatten().map(|(t, _)| *t).max());
        {
            let mut st = self.conn.prepare("SELECT key, value FROM state")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let k: String = r.get(0)?;
                let v: i64 = r.get(1)?;
                match k.as_str() {
                    "rolled_to" => self.horizons.rolled_to = Some(v),
                    "raw_from" => self.horizons.raw_from = v,
                    "minute_from" => self.horizons.minute_from = v,
                    "hour_from" => self.horizons.hour_from = v,
                    _ => {}
                }
            }
            let mut st = self.conn.prepare("SELECT t FROM dirty_hours")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                self.dirty.insert(r.get(0)?);
            }
        }
        // Requests logged by a version that kept the log in SQLite (rows by series id): they
        // come first, and the next checkpoint empties the table.
        let mut legacy = Vec::new();
        {
            let mut st = self.conn.prepare("SELECT rows FROM log ORDER BY seq")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let data: Vec<u8> = r.get(0)?;
                legacy.push(codec::decode_rows(&data)?);
                self.stats.log_records += 1;
            }
        }
        for rows in legacy {
            self.apply(rows);
        }
        self.stats.log_torn_segments = replay.torn as u64;
        for data in &replay.records {
            self.replay(data)?;
            self.stats.log_records += 1;
        }
        Ok(())
    }
}
