//! A meter's place in the figures, from its tags, decided here once: its `role` (what it
//! measures) and, for IT meters, the `category` of ISO/IEC 30134-2 (where E_IT is measured),
//! and which category a window's E_IT is taken at. The KPIs, the ledgers, attribution and the
//! dashboard's live view all ask here, so they cannot disagree on which meter counts.

use kilowatch_model::metric::role;

/// A meter's category when its `category` tag says one: `1` UPS outputs, `2` PDU outputs, `3`
/// IT equipment inputs. `None` when untagged or unreadable (reports show it so).
pub fn category_tag(tag: Option<&str>) -> Option<u8> {
    tag.and_then(|c| c.parse::<u8>().ok())
}

/// The category an IT meter counts at: its tag, or 1 (UPS outputs, what the EU asks for) when
/// the tag is missing or unreadable.
pub fn category(tag: Option<&str>) -> u8 {
    category_tag(tag).unwrap_or(1)
}

/// The category E_IT is taken at among `categories` (those of the IT meters with data): the
/// best one, closest to the UPS (1 before 2 before 3). One category only: meters of two
/// categories measure the same energy twice.
pub fn best_category(categories: impl IntoIterator<Item = u8>) -> Option<u8> {
    categories.into_iter().min()
}

/// Whether a meter's role makes it part of E_IT.
pub fn is_it(role_tag: Option<&str>) -> bool {
    role_tag == Some(role::IT)
}

/// Whether a meter's role makes it part of E_DC (every grid supply and the generators).
pub fn is_facility(role_tag: Option<&str>) -> bool {
    matches!(role_tag, Some(role::FACILITY | role::GENERATOR))
}

/// Whether a meter's role is the generators' (EDC-BG, with its own carbon factor).
pub fn is_generator(role_tag: Option<&str>) -> bool {
    role_tag == Some(role::GENERATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_it_meters_count_at_category_1_and_the_best_category_wins() {
        assert_eq!((category(None), category(Some("x")), category(Some("3"))), (1, 1, 3));
        assert_eq!((category_tag(None), category_tag(Some("2"))), (None, Some(2)));
        assert_eq!(best_category([3, 2, 3]), Some(2));
        assert_eq!(best_category([]), None);
        assert!(is_facility(Some("generator")) && is_facility(Some("facility")) && !is_facility(Some("it")) && is_it(Some("it")));
    }
}
