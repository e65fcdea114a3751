//! `collect_message`: the collector's decode path on arbitrary Messages.
//!
//! Input: one control octet, then Messages one after the other, each framed by its own Message
//! Length as TCP and IPFIX Files frame them; a length below 16 or past the input makes the rest
//! one (malformed) Message. The control octet chooses the Transport Session kind (UDP, TCP, an
//! IPFIX File), whether Messages alternate between two sessions of that kind, and how far the
//! clock moves between Messages (0 s to 4096 s, so template lifetimes and the age bound of held
//! data run out). The decoder runs with small bounds, so every bound is reached.
//!
//! Every Message goes through [`Decoder::handle`], the code `flowvm collect` and `flowvm decode`
//! run on each Message, with timers applied and columns handed over after each, as the decode
//! thread's tick does.
//!
//! Oracle: no panic, no hang; every Message is counted as received; a Message is either dropped
//! whole, with exactly one drop reason and nothing else changed (no template installed, no data
//! held, no row appended: RFC 7011 §9.1), or accepted; the records counted as decoded are the
//! rows handed over, Message by Message; nothing breaks an Arrow invariant; the gauges stay
//! within the bounds; at the end nothing is still held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use flowvm::collector::decode::Decoder;
use flowvm::collector::session::TransportSession;
use flowvm::config::Config;
use flowvm::telemetry::{Counters, DropReason};
use flowvm_vm::Compiler;
use flowvm_vm::wire::HEADER_LEN;

/// Drop reasons that discard a whole Message or packet (those of a `DecodeError`).
const MESSAGE_REASONS: [DropReason; 7] = [
    DropReason::UnsupportedVersion,
    DropReason::LengthMismatch,
    DropReason::BadSetLength,
    DropReason::Truncated,
    DropReason::ReservedSetId,
    DropReason::BadTemplateId,
    DropReason::BadScopeFieldCount,
];

/// The bounds the decoder runs with: small, so that fuzzing reaches them.
fn config() -> Config {
    Config {
        max_templates: 16,
        max_templates_per_session: 8,
        pending_max_bytes: 4096,
        pending_max_session_bytes: 2048,
        pending_max_age: 60,
        template_lifetime: 1800,
        batch_rows: 64,
        ..Config::default()
    }
}

/// Splits `input` into Messages by their Message Length (the framing of TCP and of IPFIX Files).
pub fn messages(mut input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let len = input
            .get(2..4)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        let (message, rest) = match input.split_at_checked(len) {
            Some(split) if len >= HEADER_LEN => split,
            _ => (input, &[][..]),
        };
        out.push(message);
        input = rest;
    }
    out
}

/// The Transport Session of Message `n`.
fn session(control: u8, n: usize) -> TransportSession {
    let second = control & 0x04 != 0 && n % 2 == 1;
    let port = if second { 40_001 } else { 40_000 };
    match control & 0x03 {
        0 | 3 => TransportSession::Udp {
            exporter: ([192, 0, 2, 1], port).into(),
            collector: ([127, 0, 0, 1], 4739).into(),
        },
        1 => TransportSession::Tcp {
            exporter: ([192, 0, 2, 1], port).into(),
            connection: u64::from(port),
        },
        _ => TransportSession::File {
            index: u32::from(second),
        },
    }
}

/// What one Message changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    received: u64,
    dropped: u64,
    decoded: u64,
    late: u64,
    installed: u64,
    rejected: u64,
    pending_sets: u64,
    reasons: [u64; DropReason::ALL.len()],
}

impl Snapshot {
    fn of(c: &Counters) -> Self {
        Self {
            received: c.messages_received.get(),
            dropped: c.messages_dropped.get(),
            decoded: c.records_decoded.get(),
            late: c.records_decoded_late.get(),
            installed: c.templates_installed.get(),
            rejected: c.templates_rejected.get(),
            pending_sets: c.pending_sets.get(),
            reasons: DropReason::ALL.map(|r| c.dropped(r)),
        }
    }
}

fn rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| u64::try_from(b.num_rows()).unwrap_or(u64::MAX))
        .sum()
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    run(control, &messages(rest));
}

/// The oracle over `packets` (IPFIX Messages or NetFlow packets, whole or not), as the control
/// octet `control` says to deliver them; shared with `collect_packet`.
pub fn run(control: u8, packets: &[&[u8]]) {
    let config = config();
    let limits = config.decoder();
    let counters = Arc::new(Counters::default());
    let mut decoder = Decoder::new(Compiler::default(), limits, Arc::clone(&counters));
    let step = Duration::from_secs(match (control >> 3) & 0x07 {
        0 => 0,
        k => 1 << (2 * (k - 1)),
    });
    let mut now: Instant = flowvm::clock::now();
    let mut out = Vec::new();
    for (n, &message) in packets.iter().enumerate() {
        now += step;
        decoder.expire(now);
        decoder.flush(&mut out);
        out.clear();
        let before = Snapshot::of(&counters);
        decoder.handle(session(control, n), message, now, &mut out);
        decoder.flush(&mut out);
        let after = Snapshot::of(&counters);
        assert_eq!(
            after.received,
            before.received + 1,
            "message {n} not counted"
        );
        let reasons: Vec<(DropReason, u64)> = DropReason::ALL
            .iter()
            .zip(after.reasons.iter().zip(&before.reasons))
            .map(|(&r, (a, b))| (r, a - b))
            .filter(|&(_, d)| d > 0)
            .collect();
        let dropped = after.dropped - before.dropped;
        assert!(dropped <= 1, "message {n} dropped {dropped} times");
        if dropped == 1 {
            // §9.1: discarded whole, for one reason, and nothing else changed.
            assert!(
                matches!(reasons.as_slice(), [(r, 1)] if MESSAGE_REASONS.contains(r)),
                "message {n} dropped with reasons {reasons:?}"
            );
            let unchanged = Snapshot {
                received: before.received + 1,
                dropped: before.dropped + 1,
                reasons: after.reasons,
                ..before
            };
            assert_eq!(
                after, unchanged,
                "message {n} was dropped but changed state"
            );
            assert!(out.is_empty(), "message {n} was dropped but added rows");
        }
        assert_eq!(
            rows(&out),
            after.decoded - before.decoded,
            "message {n}: records decoded are not the rows handed over"
        );
        assert!(after.late <= after.decoded);
        assert!(
            counters.pending_bytes.get() <= u64::try_from(config.pending_max_bytes).unwrap_or(0)
        );
        assert!(counters.templates_live.get() <= u64::try_from(config.max_templates).unwrap_or(0));
        assert_eq!(
            counters.archive_errors.get(),
            0,
            "a batch broke an Arrow invariant"
        );
    }
    out.clear();
    let before = counters.records_decoded.get();
    decoder.finish(&mut out);
    assert_eq!(rows(&out), counters.records_decoded.get() - before);
    assert_eq!(
        counters.pending_sets.get(),
        0,
        "data still held after finish"
    );
    assert_eq!(
        counters.pending_bytes.get(),
        0,
        "data still held after finish"
    );
    assert_eq!(counters.archive_errors.get(), 0);
}
