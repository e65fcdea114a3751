//! Logging set-up, the shared counters, a limiter that keeps warnings about bad input to
//! one line per (exporter, reason) per interval, and the process's own figures ([`process`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowvm_vm::DecodeErrorKind;
use flowvm_vm::program::Nonconformity;

use crate::collector::tls;
use crate::sink::ArchiveError;
use crate::sink::store::{UPLOAD_ERRORS, UploadError};

pub mod process;

/// Why input was dropped or repaired: one counter each (`flowvm_dropped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Scope Field Count zero or above the Field Count.
    BadScopeFieldCount,
    /// A Set Length below 4 or past the Message.
    BadSetLength,
    /// A Template ID below 256.
    BadTemplateId,
    /// A datagram the receive queue could not take while the archive could not write.
    ArchiveFull,
    /// A TCP connection over the connection limit.
    ConnectionLimit,
    /// A TCP connection over the limit for one exporter address.
    ExporterConnectionLimit,
    /// A value repaired on decoding (non-UTF-8 string, boolean other than 1 or 2).
    InvalidValue,
    /// Message Length disagrees with the datagram or frame.
    LengthMismatch,
    /// Data held for a template that never came: dropped at a bound of the pending buffer.
    PendingOverflow,
    /// Data held for a template that never came: too old.
    PendingExpired,
    /// Data still held for a missing template when the collector stopped.
    PendingUnresolved,
    /// A decoded queue was full (receive -> decode, or decode -> archive).
    QueueFull,
    /// A Set ID reserved by RFC 7011 §3.3.2; the Set is skipped.
    ReservedSetId,
    /// A Data Set for a template that was refused (limits or invalid lengths).
    TemplateRejected,
    /// A template refused because the template table is full.
    TemplateLimit,
    /// A TCP connection that sent no complete first Message Header within the deadline.
    TcpHeaderTimeout,
    /// A length field promised more than was there.
    Truncated,
    /// A Version Number other than 10.
    UnsupportedVersion,
    /// A datagram or connection from an address outside the allow-list.
    NotAllowed,
    /// A withdrawal of a template that was never defined (§8.1).
    UnknownWithdrawal,
    /// A withdrawal received over UDP, ignored as §8.4 requires.
    UdpWithdrawalIgnored,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 21] = [
        Self::ArchiveFull,
        Self::BadScopeFieldCount,
        Self::BadSetLength,
        Self::BadTemplateId,
        Self::ConnectionLimit,
        Self::ExporterConnectionLimit,
        Self::InvalidValue,
        Self::LengthMismatch,
        Self::PendingOverflow,
        Self::PendingExpired,
        Self::PendingUnresolved,
        Self::QueueFull,
        Self::ReservedSetId,
        Self::TemplateRejected,
        Self::TemplateLimit,
        Self::TcpHeaderTimeout,
        Self::Truncated,
        Self::UnsupportedVersion,
        Self::NotAllowed,
        Self::UnknownWithdrawal,
        Self::UdpWithdrawalIgnored,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ArchiveFull => "archive_full",
            Self::BadScopeFieldCount => "bad_scope_field_count",
            Self::BadSetLength => "bad_set_length",
            Self::BadTemplateId => "bad_template_id",
            Self::ConnectionLimit => "connection_limit",
            Self::ExporterConnectionLimit => "exporter_connection_limit",
            Self::InvalidValue => "invalid_value",
            Self::LengthMismatch => "length_mismatch",
            Self::PendingOverflow => "pending_overflow",
            Self::PendingExpired => "pending_expired",
            Self::PendingUnresolved => "pending_unresolved",
            Self::QueueFull => "queue_full",
            Self::ReservedSetId => "reserved_set_id",
            Self::TemplateRejected => "template_rejected",
            Self::TemplateLimit => "template_limit",
            Self::TcpHeaderTimeout => "tcp_header_timeout",
            Self::Truncated => "truncated",
            Self::UnsupportedVersion => "unsupported_version",
            Self::NotAllowed => "not_allowed",
            Self::UnknownWithdrawal => "unknown_withdrawal",
            Self::UdpWithdrawalIgnored => "udp_withdrawal_ignored",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&r| r == self).unwrap_or(0)
    }
}

impl From<DecodeErrorKind> for DropReason {
    fn from(kind: DecodeErrorKind) -> Self {
        match kind {
            DecodeErrorKind::BadScopeFieldCount(_) => Self::BadScopeFieldCount,
            DecodeErrorKind::BadSetLength(_) => Self::BadSetLength,
            DecodeErrorKind::BadTemplateId(_) => Self::BadTemplateId,
            DecodeErrorKind::LengthMismatch { .. } => Self::LengthMismatch,
            DecodeErrorKind::ReservedSetId(_) => Self::ReservedSetId,
            DecodeErrorKind::UnsupportedVersion(_) => Self::UnsupportedVersion,
            _ => Self::Truncated,
        }
    }
}

/// A plain counter (`Relaxed`: counts, not synchronisation).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` from a gauge (not below 0).
    pub fn sub(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// A gauge summed over workers: replaces one worker's share `was` by `now` (nothing to
    /// do, and no write to the shared line, when it did not change: the usual case per
    /// Message).
    pub fn adjust(&self, was: u64, now: u64) {
        if now == was {
            return;
        }
        if now > was {
            self.add(now - was);
        } else {
            self.sub(was - now);
        }
    }

    /// Sets a gauge.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter and gauge the collector exports, shared by all threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// IPFIX Messages received (before any check).
    pub messages_received: Counter,
    /// Octets of those Messages.
    pub bytes_received: Counter,
    /// Messages discarded whole (§9.1).
    pub messages_dropped: Counter,
    /// Data Records decoded into columns.
    pub records_decoded: Counter,
    /// Data Records decoded late, from the pending buffer, when their template came.
    pub records_decoded_late: Counter,
    /// Data Records lost according to sequence numbers (§3.1; NetFlow v5's flows).
    pub records_lost: Counter,
    /// NetFlow v9 export packets lost according to sequence numbers (RFC 3954 §5.1).
    pub packets_lost: Counter,
    /// NetFlow v9 packets whose Count disagrees with the records they hold (not dropped).
    pub netflow_count_mismatches: Counter,
    /// Messages that arrived out of order or twice according to sequence numbers.
    pub messages_reordered: Counter,
    /// Exporter restarts detected from sequence numbers.
    pub exporter_restarts: Counter,
    /// Messages of a (session, domain) past the sequence tracker's bounds: decoded, but their
    /// losses are not counted.
    pub sequence_untracked: Counter,
    /// Templates installed (new or redefined).
    pub templates_installed: Counter,
    /// Templates refused by the compiler (limits, illegal field lengths).
    pub templates_rejected: Counter,
    /// Templates live now (gauge).
    pub templates_live: Counter,
    /// Templates expired by lifetime (UDP, §8.4) or withdrawn.
    pub templates_removed: Counter,
    /// Data Sets waiting for their template now (gauge).
    pub pending_sets: Counter,
    /// Octets waiting for their template now (gauge).
    pub pending_bytes: Counter,
    /// Messages waiting between receive and decode (gauge).
    pub decode_queue_depth: Counter,
    /// Batches waiting between decode and archive (gauge).
    pub archive_queue_depth: Counter,
    /// Parquet files completed and renamed into place.
    pub files_written: Counter,
    /// Rows written to Parquet.
    pub rows_written: Counter,
    /// Archive failures (writes, completions, syncs), in all; by reason on the metrics page.
    pub archive_errors: Counter,
    /// Rows the archive threads hold and retry while they cannot write (gauge).
    pub archive_rows_waiting: Counter,
    /// The archive threads that cannot write (a full disk), each counted once however long
    /// it retries: the receive side counts its drops as `archive_full` while any is (gauge).
    pub archive_stalled: Counter,
    /// Files made from journals at start-up (what a crash left).
    pub recovered_files: Counter,
    /// Rows in them.
    pub recovered_rows: Counter,
    /// Journals whose torn tail (a crash mid-write) was cut at start-up.
    pub journal_torn_tails: Counter,
    /// TCP connections accepted.
    pub connections_accepted: Counter,
    /// TCP connections open now (gauge).
    pub connections_open: Counter,
    /// TLS handshakes completed.
    pub tls_sessions: Counter,
    /// TCP connections the exporter reset (RST) rather than closed.
    pub connections_reset: Counter,
    /// Datagrams the kernel dropped on the UDP sockets (gauge, read from the kernel).
    pub udp_kernel_drops: Counter,
    /// Files shipped from the spool to the object store (uploaded, or found already there).
    pub uploads: Counter,
    /// Of those, files found already in the store with the same content (a retry).
    pub uploads_already_present: Counter,
    /// Octets of completed files in the spool waiting for upload (gauge).
    pub spool_bytes: Counter,
    /// Age in seconds of the oldest file waiting in the spool, 0 when none (gauge).
    pub upload_lag_seconds: Counter,
    dropped: [Counter; DropReason::ALL.len()],
    nonconforming: [Counter; NONCONFORMITIES.len()],
    archive_error_reasons: [Counter; ARCHIVE_ERRORS.len()],
    upload_error_reasons: [Counter; UPLOAD_ERRORS.len()],
    tls_failures: [Counter; tls::FAILURES.len()],
}

/// The reasons of `flowvm_archive_errors_total{reason}`, as [`ArchiveError::label`] gives them.
const ARCHIVE_ERRORS: [&str; 5] = ["no_space", "spool_full", "io", "parquet", "arrow"];

/// Adds `n` to the counter of `reason` among `reasons` (one counter each, in that order).
fn add_by_reason(reasons: &[&str], counts: &[Counter], reason: &str, n: u64) {
    let index = reasons.iter().position(|&r| r == reason);
    if let Some(c) = index.and_then(|i| counts.get(i)) {
        c.add(n);
    }
}

/// Renders a counter labelled by reason: `reasons` and `counts` in the same order.
fn render_by_reason(out: &mut String, name: &str, reasons: &[&str], counts: &[Counter]) {
    let _ = writeln!(out, "# TYPE {name} counter");
    for (reason, count) in reasons.iter().zip(counts) {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", count.get());
    }
}

/// Every way a field with a length its type does not permit is decoded, in counter order.
const NONCONFORMITIES: [Nonconformity; 2] = [Nonconformity::WideInteger, Nonconformity::Raw];

impl Counters {
    /// Counts `n` drops for `reason`.
    pub fn record_drop(&self, reason: DropReason, n: u64) {
        if let Some(c) = self.dropped.get(reason.index()) {
            c.add(n);
        }
    }

    /// Drops so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).map_or(0, Counter::get)
    }

    /// Counts `n` fields of newly defined templates whose length their type does not permit
    /// (`flowvm_fields_nonconforming_total{reason}`).
    pub fn record_nonconforming(&self, handling: Nonconformity, n: u64) {
        let labels = NONCONFORMITIES.map(Nonconformity::label);
        add_by_reason(&labels, &self.nonconforming, handling.label(), n);
    }

    /// Counts an archive failure by its reason.
    pub fn record_archive_error(&self, e: &ArchiveError) {
        self.archive_errors.add(1);
        add_by_reason(&ARCHIVE_ERRORS, &self.archive_error_reasons, e.label(), 1);
    }

    /// Counts a failed upload by its reason.
    pub fn record_upload_error(&self, e: &UploadError) {
        add_by_reason(&UPLOAD_ERRORS, &self.upload_error_reasons, e.label(), 1);
    }

    /// Counts a failed TLS handshake by its reason, one of [`tls::FAILURES`].
    pub fn record_tls_failure(&self, reason: &str) {
        add_by_reason(&tls::FAILURES, &self.tls_failures, reason, 1);
    }

    /// Fields counted so far as decoded by `handling`.
    pub fn nonconforming(&self, handling: Nonconformity) -> u64 {
        let index = NONCONFORMITIES.iter().position(|&h| h == handling);
        index
            .and_then(|i| self.nonconforming.get(i))
            .map_or(0, Counter::get)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let plain: [(&str, &str, &Counter); 35] = [
            (
                "flowvm_messages_received_total",
                "counter",
                &self.messages_received,
            ),
            (
                "flowvm_bytes_received_total",
                "counter",
                &self.bytes_received,
            ),
            (
                "flowvm_messages_dropped_total",
                "counter",
                &self.messages_dropped,
            ),
            (
                "flowvm_records_decoded_total",
                "counter",
                &self.records_decoded,
            ),
            (
                "flowvm_records_decoded_late_total",
                "counter",
                &self.records_decoded_late,
            ),
            ("flowvm_records_lost_total", "counter", &self.records_lost),
            ("flowvm_packets_lost_total", "counter", &self.packets_lost),
            (
                "flowvm_netflow9_count_mismatches_total",
                "counter",
                &self.netflow_count_mismatches,
            ),
            (
                "flowvm_messages_reordered_total",
                "counter",
                &self.messages_reordered,
            ),
            (
                "flowvm_exporter_restarts_total",
                "counter",
                &self.exporter_restarts,
            ),
            (
                "flowvm_sequence_untracked_total",
                "counter",
                &self.sequence_untracked,
            ),
            (
                "flowvm_templates_installed_total",
                "counter",
                &self.templates_installed,
            ),
            (
                "flowvm_templates_rejected_total",
                "counter",
                &self.templates_rejected,
            ),
            ("flowvm_templates_live", "gauge", &self.templates_live),
            (
                "flowvm_templates_removed_total",
                "counter",
                &self.templates_removed,
            ),
            ("flowvm_pending_sets", "gauge", &self.pending_sets),
            ("flowvm_pending_bytes", "gauge", &self.pending_bytes),
            (
                "flowvm_decode_queue_depth",
                "gauge",
                &self.decode_queue_depth,
            ),
            (
                "flowvm_archive_queue_depth",
                "gauge",
                &self.archive_queue_depth,
            ),
            ("flowvm_files_written_total", "counter", &self.files_written),
            ("flowvm_rows_written_total", "counter", &self.rows_written),
            (
                "flowvm_archive_rows_waiting",
                "gauge",
                &self.archive_rows_waiting,
            ),
            ("flowvm_archive_stalled", "gauge", &self.archive_stalled),
            (
                "flowvm_recovered_files_total",
                "counter",
                &self.recovered_files,
            ),
            (
                "flowvm_recovered_rows_total",
                "counter",
                &self.recovered_rows,
            ),
            (
                "flowvm_journal_torn_tails_total",
                "counter",
                &self.journal_torn_tails,
            ),
            (
                "flowvm_connections_accepted_total",
                "counter",
                &self.connections_accepted,
            ),
            ("flowvm_connections_open", "gauge", &self.connections_open),
            (
                "flowvm_connections_reset_total",
                "counter",
                &self.connections_reset,
            ),
            ("flowvm_tls_sessions_total", "counter", &self.tls_sessions),
            ("flowvm_udp_kernel_drops", "gauge", &self.udp_kernel_drops),
            ("flowvm_uploads_total", "counter", &self.uploads),
            (
                "flowvm_uploads_already_present_total",
                "counter",
                &self.uploads_already_present,
            ),
            ("flowvm_spool_bytes", "gauge", &self.spool_bytes),
            (
                "flowvm_upload_lag_seconds",
                "gauge",
                &self.upload_lag_seconds,
            ),
        ];
        for (name, kind, counter) in plain {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {}", counter.get());
        }
        let dropped = DropReason::ALL.map(DropReason::label);
        render_by_reason(&mut out, "flowvm_dropped_total", &dropped, &self.dropped);
        render_by_reason(
            &mut out,
            "flowvm_archive_errors_total",
            &ARCHIVE_ERRORS,
            &self.archive_error_reasons,
        );
        render_by_reason(
            &mut out,
            "flowvm_upload_errors_total",
            &UPLOAD_ERRORS,
            &self.upload_error_reasons,
        );
        render_by_reason(
            &mut out,
            "flowvm_tls_handshakes_failed_total",
            &tls::FAILURES,
            &self.tls_failures,
        );
        let nonconforming = NONCONFORMITIES.map(Nonconformity::label);
        render_by_reason(
            &mut out,
            "flowvm_fields_nonconforming_total",
            &nonconforming,
            &self.nonconforming,
        );
        out
    }
}

/// Keys the [`LogLimiter`] remembers at most.
const MAX_KEYS: usize = 4096;

/// Lets the first warning per (exporter, reason) through, then one per `interval` with the
/// number suppressed in between.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    seen: HashMap<(IpAddr, &'static str), (Instant, u64)>,
}

impl LogLimiter {
    /// At most one line per key per `interval`; remembers at most 4096 keys.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when a line may be logged now, with how many were held back since
    /// the last one; `None` to stay quiet.
    pub fn allow(&mut self, exporter: IpAddr, reason: &'static str, now: Instant) -> Option<u64> {
        if self.seen.len() >= MAX_KEYS && !self.seen.contains_key(&(exporter, reason)) {
            self.seen
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < self.interval);
            // Still full within one interval (a flood from many addresses): stay quiet rather
            // than grow; the drop counters still count every one.
            if self.seen.len() >= MAX_KEYS {
                return None;
            }
        }
        // A new key has never logged: `now` less two intervals would be its natural "last
        // time", but an Instant cannot go below the clock's start (a panic in the first seconds
        // after boot), so the first line is let through explicitly.
        let mut fresh = false;
        let entry = self.seen.entry((exporter, reason)).or_insert_with(|| {
            fresh = true;
            (now, 0)
        });
        if fresh || now.saturating_duration_since(entry.0) >= self.interval || entry.0 > now {
            let suppressed = std::mem::take(&mut entry.1);
            entry.0 = now;
            Some(suppressed)
        } else {
            entry.1 += 1;
            None
        }
    }
}

/// Installs the tracing subscriber: `RUST_LOG` if set, otherwise `level`.
pub fn init(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_one_line_through_per_interval_and_counts_the_rest() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let ip = IpAddr::from([192, 0, 2, 1]);
        let t0 = crate::clock::now();
        assert_eq!(l.allow(ip, "truncated", t0), Some(0));
        assert_eq!(l.allow(ip, "truncated", t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(ip, "truncated", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            l.allow(ip, "bad_set_length", t0 + Duration::from_secs(2)),
            Some(0)
        );
        assert_eq!(
            l.allow(ip, "truncated", t0 + Duration::from_secs(11)),
            Some(2)
        );
    }

    #[test]
    fn limiter_stays_bounded_when_many_addresses_warn_at_once() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = crate::clock::now();
        let allowed = (0..10_000_u32)
            .filter(|&i| {
                l.allow(IpAddr::from(i.to_be_bytes()), "truncated", t0)
                    .is_some()
            })
            .count();
        assert_eq!((allowed, l.seen.len()), (MAX_KEYS, MAX_KEYS));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            l.allow(IpAddr::from([10, 0, 0, 1]), "truncated", later),
            Some(0)
        );
        assert_eq!(l.seen.len(), 1);
    }

    #[test]
    fn renders_every_reason() {
        let c = Counters::default();
        c.record_drop(DropReason::QueueFull, 3);
        let text = c.render();
        assert!(text.contains("flowvm_dropped_total{reason=\"queue_full\"} 3"));
        assert_eq!(
            text.matches("flowvm_dropped_total{").count(),
            DropReason::ALL.len()
        );
    }
}
