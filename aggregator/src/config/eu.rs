//! `[eu]`: the EU filing's declarations. The schema lives in `kilowatch_accounting::eu::config`
//! (accounting reads it); here it is checked at startup like every other section, so a bad
//! value stops `kilowatch serve` and `kilowatch check-config` with its key.

pub use kilowatch_accounting::eu::EuConfig;

use super::ConfigError;

pub fn validate(eu: &EuConfig) -> Result<(), ConfigError> {
    eu.check().map_err(|(key, message)| ConfigError::Invalid { key, message })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn bad_declarations_are_refused_with_their_key() {
        for (text, key) in [
            ("[eu]\npdit_kw = -5\n", "eu.pdit_kw"),
            ("[eu]\nentry_into_operation = \"July 2019\"\n", "eu.entry_into_operation"),
            ("[eu]\nthresholds = \"fr-nope\"\n", "eu.thresholds"),
            ("[eu.sources]\npdit = \"x\"\n", "eu.sources"),
            ("[eu]\ntin_c = 900\n", "eu.tin_c"),
            ("[eu]\nlau_code = \"FR 91377\"\n", "eu.lau_code"),
            ("[[eu.threshold]]\nname = \"x\"\nkpi = \"pue\"\nfrom = \"2025-01-01\"\n", "eu.threshold"),
        ] {
            let e = Config::parse(text, Path::new("k.toml")).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{text} accepted"));
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = Config::parse("[eu]\npdit_kwh = 1\n", Path::new("k.toml")).err().map(|e| e.to_string()).expect("unknown key refused");
        assert!(e.contains("pdit_kwh"), "{e}");
        let ok = Config::parse("[eu]\ntype = \"co-hosting\"\npdit_basis = \"rated\"\nrefrigerants = []\nthresholds = \"de-enefg\"\n[eu.sources]\npdit_kw = \"design file\"\n", Path::new("k.toml"))
            .expect("valid");
        assert_eq!(ok.eu.refrigerants.as_deref(), Some(&[][..]));
    }
}
