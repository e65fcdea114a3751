//! Counts from one run over one Data Set, kept locally and added to shared counters once per Set.

use std::ops::AddAssign;

/// What one run (or many, added up) decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Data Records decoded.
    pub records: u64,
    /// Octets after the last record, shorter than any record: padding (RFC 7011 §3.3.1).
    pub padding_octets: u64,
    /// Values kept in a repaired form: strings that were not UTF-8 (§6.1.6, replaced
    /// lossily), booleans other than 1 or 2 (§6.1.5, null). Counted when their records are
    /// read into the columns: op at a time stages records, so a run may count those of earlier
    /// runs, and a flush's are taken with `Columns::take_invalid_values`.
    pub invalid_values: u64,
}

impl AddAssign for RunStats {
    fn add_assign(&mut self, other: Self) {
        self.records += other.records;
        self.padding_octets += other.padding_octets;
        self.invalid_values += other.invalid_values;
    }
}
