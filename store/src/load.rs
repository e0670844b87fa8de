//! Opening the store: the series, newest values, horizons and dirty hours from store.db, then
//! the write-ahead log's records replayed into the heads.

use std::collections::HashMap;
use std::sync::Arc;

use kilowatch_model::Labels;

use super::{Inner, SeriesId, SeriesMeta, StoreError, codec, head, wal};

impl Inner {
    pub(super) fn load(&mut self, replay: wal::Replay) -> Result<(), StoreError> {
        let mut rows: Vec<(i64, String, String, String, String)> = Vec::new();
        {
            let mut st = self.conn.prepare("SELECT id, key, measurement, tags, field FROM series ORDER BY id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                rows.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            }
        }
        // Series of one tag set share its map, as they do when writes create them.
        let mut shared: HashMap<String, Arc<Labels>> = HashMap::new();
        for (id, key, measurement, tags, field) in rows {
            let tags = match shared.get(&tags) {
                Some(t) => t.clone(),
                None => {
                    let t: Arc<Labels> = Arc::new(serde_json::from_str(&tags).map_err(|_| codec::CorruptRecord("series tags are not JSON"))?);
                    shared.insert(tags, t.clone());
                    t
                }
            };
            let id = SeriesId::try_from(id).map_err(|_| codec::CorruptRecord("series id out of range"))?;
            if id as usize != self.meta.len() {
                return Err(codec::CorruptRecord("series ids are not dense").into());
            }
            self.by_key.insert(key, id);
            self.by_field.entry((measurement.clone(), field.clone())).or_default().push(id);
            self.meta.push(SeriesMeta { id, measurement, tags, field });
            self.heads.push(head::Head::default());
            self.last.push(None);
            self.last_flag.push(false);
        }
        self.persisted_series = self.meta.len();
        {
            let mut st = self.conn.prepare("SELECT series_id, ts, data FROM last_values")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: i64 = r.get(0)?;
                let ts: i64 = r.get(1)?;
                let data: Vec<u8> = r.get(2)?;
                let mut v = Vec::new();
                codec::decode_chunk(&data, &mut v)?;
                if let (Some(slot), Some((_, val))) = (self.last.get_mut(id as usize), v.pop()) {
                    *slot = Some((ts, val));
                    self.stats.newest_ts = self.stats.newest_ts.max(Some(ts));
                }
            }
        }
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
