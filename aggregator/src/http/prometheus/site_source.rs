//! What a PromQL query reads: the store's raw series and the ledger's series, together.

use kilowatch_query::{Labels, Matcher, Selection, SeriesSource, SourceError};

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
