//! What a PromQL query reads: the store's raw series and the ledger's series, together.

use kilowatch_query::{Labels, Matcher, Selection, SeriesSource, SourceError};
use kilowatch_store::Value;

use super::ledger_series::LedgerSeries;
use super::store_source::StoreSource;

pub struct SiteSource {
    pub raw: StoreSource,
    pub ledger: LedgerSeries,
}

impl SeriesSource for SiteSource {
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Selection, SourceError> {
        let mut sel = self.raw.select(matchers, from_ms, to_ms)?;
        sel.series.extend(self.ledger.select(matchers, from_ms, to_ms)?);
        Ok(sel)
    }

    fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, SourceError> {
        let mut all = self.raw.series(matchers)?;
        all.extend(self.ledger.series(matchers));
        Ok(all)
    }
}

const NS_PER_MS: i64 = 1_000_000;

impl SiteSource {
    /// The labels of the series with a sample in `[from_ms, to_ms]`: the listings' `start` and
    /// `end`, as Prometheus takes them. The ledger's series are computed over the windows that
    /// end there, so they carry their `category` and `coverage` and the jobs' and models' labels.
    /// Over a long range the ledger lists some series without computing them, with a warning
    /// ([`LedgerSeries::listed`]).
    pub fn series_between(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64, warnings: &mut Vec<String>) -> Result<Vec<Labels>, SourceError> {
        let mut out = self.raw_between(matchers, from_ms, to_ms)?;
        out.extend(self.ledger.listed(matchers, from_ms, to_ms, warnings)?);
        Ok(out)
    }

    /// The store's part of [`Self::series_between`]. A series' newest sample decides most
    /// cases without reading: older than the window, it has none there; inside, it has one. Only
    /// when some series go on past the window are the window's samples read.
    fn raw_between(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Vec<Labels>, SourceError> {
        let found = self.raw.matching(matchers)?;
        let ids: Vec<_> = found.iter().map(|(m, _)| m.id).collect();
        let latest = self.raw.store.latest(&ids).map_err(|e| SourceError(e.to_string()))?;
        let (from, to) = (from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS).saturating_add(NS_PER_MS - 1));
        let mut out = Vec::new();
        for ((_, labels), last) in found.into_iter().zip(latest) {
            match last {
                // Text readings are not samples; a series without readings has none.
                None | Some((_, Value::Text(_))) => {}
                Some((t, _)) if t < from => {}
                Some((t, _)) if t <= to => out.push(labels),
                Some(_) => return Ok(self.raw.select(matchers, from_ms, to_ms)?.series.into_iter().map(|s| s.labels).collect()),
            }
        }
        Ok(out)
    }
}
