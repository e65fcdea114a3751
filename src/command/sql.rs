//! `flowvm sql`: the DuckDB statements that open an archive with its IPv4 addresses as text.
//!
//! The archive keeps IPv4 addresses as the decoder reads them, `UInt32` (README, "The
//! archive"). The statements printed here define `ipv4_text(a)` (an address's dotted text),
//! `ipv4(text)` (the number of an address written as text, for filtering the files directly)
//! and the view `flows`: every file of the archive, their columns' union, with every IPv4
//! address column as text, so `SELECT … FROM flows WHERE sourceIPv4Address = '10.1.1.3'`
//! works as written.
//!
//! Which columns hold IPv4 addresses is known by name: the registry's elements of type
//! ipv4Address (with their reverses and the user's own). DuckDB's `COLUMNS` picks the ones a
//! union has; a placeholder column keeps the pick from being empty, and is dropped after.

use flowvm_vm::Registry;
use flowvm_vm::ie::types::AbstractDataType;

/// The placeholder that keeps `COLUMNS(…)` from matching nothing in an archive without IPv4
/// address columns.
const PLACEHOLDER: &str = "flowvm_no_ipv4_address";

/// The statements for the archive at `archive` (a directory, `file://DIR` or
/// `s3://BUCKET/PREFIX`), knowing IPv4 address columns by `registry`'s element names.
pub(super) fn statements(archive: &str, registry: &Registry) -> String {
    let root = archive.strip_prefix("file://").unwrap_or(archive);
    let glob = format!("{}/**/*.parquet", root.trim_end_matches('/'));
    let mut names: Vec<String> = registry
        .elements()
        .filter(|ie| ie.data_type == AbstractDataType::Ipv4Address)
        .map(|ie| ie.name.into_owned())
        .chain([PLACEHOLDER.to_owned()])
        .collect();
    names.sort_unstable();
    names.dedup();
    let names = names
        .iter()
        .map(|n| literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    let glob = literal(&glob);
    format!(
        "-- flowvm's archive in DuckDB: IPv4 addresses are archived as UInt32; the view `flows`
-- shows them as text (after the other columns), ipv4('10.1.1.3') is an address's number
-- for filtering the files directly, ipv4_text(a) a number's (or text's) dotted text.
CREATE OR REPLACE MACRO ipv4_dotted(n) AS
    (n >> 24)::VARCHAR || '.' || ((n >> 16) & 255)::VARCHAR || '.'
        || ((n >> 8) & 255)::VARCHAR || '.' || (n & 255)::VARCHAR;
CREATE OR REPLACE MACRO ipv4_text(a) AS
    coalesce(ipv4_dotted(TRY_CAST(a AS UINTEGER)), a::VARCHAR);
CREATE OR REPLACE MACRO ipv4(t) AS
    CASE WHEN t IS NULL THEN NULL
         WHEN regexp_full_match(t, '((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){{3}}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])')
         THEN (split_part(t, '.', 1)::UINTEGER << 24) | (split_part(t, '.', 2)::UINTEGER << 16)
            | (split_part(t, '.', 3)::UINTEGER << 8) | split_part(t, '.', 4)::UINTEGER
         ELSE error('not an IPv4 address: ' || t) END;
CREATE OR REPLACE VIEW flows AS
SELECT * EXCLUDE ({PLACEHOLDER}) FROM (
    SELECT COLUMNS(c -> c NOT IN ({names})),
           ipv4_text(COLUMNS(c -> c IN ({names})))
    FROM (SELECT *, NULL::UINTEGER AS {PLACEHOLDER}
          FROM read_parquet({glob}, union_by_name = true, hive_partitioning = true)));
"
    )
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_ipv4_address_element_and_quotes_what_it_quotes() {
        let mut registry = Registry::new();
        let csv = "pen,id,name,data_type,data_semantics,units,status\n\
                   4242,7,acme'Gateway,ipv4Address,,,current\n4242,8,acmeHost,ipv6Address,,,\n";
        assert_eq!(registry.add_csv(csv), Ok(2));
        let sql = statements("file:///srv/o'flows/", &registry);
        for name in [
            "'sourceIPv4Address'",
            "'destinationIPv4Address'",
            "'reverseSourceIPv4Address'",
            "'exporterIPv4Address'",
            "'sourceIPv4Prefix'",
            "'clientIPv4Address'",
            "'acme''Gateway'",
        ] {
            assert_eq!(sql.matches(name).count(), 2, "{name}");
        }
        for other in ["sourceIPv6Address", "acmeHost", "sourceIPv4PrefixLength"] {
            assert!(!sql.contains(other), "{other}");
        }
        assert!(sql.contains("read_parquet('/srv/o''flows/**/*.parquet'"));
        assert!(
            statements("s3://lake/flows", &Registry::new())
                .contains("read_parquet('s3://lake/flows/**/*.parquet'")
        );
    }
}
