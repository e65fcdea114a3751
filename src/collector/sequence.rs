//! Sequence numbers (RFC 7011 §3.1; RFC 3954 §5.1 for NetFlow v9, which counts packets):
//! records (or packets) lost, messages reordered, exporter restarts.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::wire::packet::SequenceUnit;

use crate::collector::FastMap;
use crate::collector::session::TransportSession;

/// A forward jump larger than this is taken as an exporter restart, not as loss.
const MAX_GAP: u32 = 1 << 24;
/// A backward step up to this is a late (reordered or duplicated) Message.
const MAX_REORDER: u32 = 1 << 16;

/// What one Message's sequence number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceEvent {
    /// The first Message of a stream, or the first after one whose record count was unknown.
    Synced,
    /// Exactly the number expected.
    InOrder,
    /// This many Data Records were never received.
    Lost(u32),
    /// An earlier Message arriving late (or twice).
    Reordered,
    /// The exporter started counting anew.
    Restart,
    /// A new stream past the tracker's bounds: not tracked, its losses are not counted.
    Untracked,
    /// In order once read as softflowd counts: the exporter's header carries the records sent
    /// *including* this Message's, options records not counted. The stream is read that way
    /// from now on.
    CountsItsOwnRecords,
}

/// A packet's place in its stream: its sequence number, what that counts, and (NetFlow) the
/// exporter's uptime, which going back says the exporter restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceNumber {
    /// The header's sequence number.
    pub value: u32,
    /// What one step of it is.
    pub unit: SequenceUnit,
    /// The header's sysUpTime in milliseconds, when the protocol has one.
    pub sys_uptime: Option<u32>,
}

impl SequenceNumber {
    /// An IPFIX sequence number: Data Records sent before the Message.
    pub fn records(value: u32) -> Self {
        Self {
            value,
            unit: SequenceUnit::Records,
            sys_uptime: None,
        }
    }
}

/// The Data Records of one Message, for sequence accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRecords {
    /// Every Data Record of the Message.
    pub all: u32,
    /// Those of them decoded with an Options Template.
    pub options: u32,
}

impl MessageRecords {
    /// `all` records, none of them options records.
    pub fn plain(all: u32) -> Self {
        Self { all, options: 0 }
    }

    /// Both Messages' records together.
    pub fn plus(self, other: Self) -> Self {
        Self {
            all: self.all.saturating_add(other.all),
            options: self.options.saturating_add(other.options),
        }
    }

    /// The records that are not options records.
    fn flow(self) -> u32 {
        self.all.saturating_sub(self.options)
    }
}

/// How an exporter's sequence numbers count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Convention {
    /// RFC 7011 §3.1: Data Records sent before this Message.
    Rfc,
    /// softflowd (1.1.0 and earlier): flow records sent up to and including this Message,
    /// options records not counted.
    IncludingThisMessage,
}

/// Bounds of the tracker: one stream per (Transport Session, Observation Domain) seen, and a
/// hostile exporter can invent domains (and, over UDP, source ports) at will.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceLimits {
    /// Streams over all exporters.
    pub max_streams: usize,
    /// Streams of one exporter address over all its sessions.
    pub max_per_exporter: usize,
    /// A UDP stream not heard from for this long is forgotten (TCP streams end with their
    /// connection).
    pub idle: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    /// What the stream's sequence numbers count.
    unit: SequenceUnit,
    /// The exporter's uptime in the last packet, when the protocol has one.
    uptime: Option<u32>,
    /// The next sequence number expected; `None` until synced.
    expected: Option<u32>,
    /// The sequence number of the last Message accounted in order, lost or restarted.
    last: u32,
    convention: Convention,
    lost: u64,
    seen: Instant,
}

/// Expected versus received sequence numbers per (Transport Session, Observation Domain).
#[derive(Debug)]
pub struct SequenceTracker {
    streams: FastMap<(TransportSession, ObservationDomainId), Stream>,
    per_exporter: FastMap<Option<IpAddr>, usize>,
    limits: SequenceLimits,
}

impl SequenceTracker {
    /// A tracker with no stream.
    pub fn new(limits: SequenceLimits) -> Self {
        Self {
            streams: FastMap::default(),
            per_exporter: FastMap::default(),
            limits,
        }
    }

    /// Streams tracked.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is tracked.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-11.6
    //# IPFIX Collecting Processes MUST detect potential IPFIX Message
    //# insertion or loss conditions by tracking the IPFIX Sequence Number
    //= https://www.rfc-editor.org/rfc/rfc3954#section-5.1
    //# Incremental sequence counter of all Export Packets sent from
    //# the current Observation Domain by the Exporter.  This value
    //# MUST be cumulative, and SHOULD be used by the Collector to
    //# identify whether any Export Packets have been missed.
    /// Accounts a Message of `session`/`domain` at `sequence` carrying `records` Data Records
    /// (`None` when some could not be counted, e.g. held for a missing template: the next
    /// Message then re-syncs instead of counting loss), received at `now`. A stream counted in
    /// packets steps by one a packet, whatever it holds; one whose exporter's uptime goes back
    /// (not a wrap of its 2^32 milliseconds) restarted.
    pub fn observe(
        &mut self,
        session: TransportSession,
        domain: ObservationDomainId,
        sequence: SequenceNumber,
        records: Option<MessageRecords>,
        now: Instant,
    ) -> SequenceEvent {
        let sequence_number = sequence.value;
        let records = match sequence.unit {
            SequenceUnit::Packets => Some(MessageRecords::plain(1)),
            SequenceUnit::Records => records,
        };
        // One hash of the stream's key per Message: a new stream is checked against the
        // bounds in the vacant entry.
        let streams = self.streams.len();
        let stream = match self.streams.entry((session, domain)) {
            Entry::Occupied(stream) => stream.into_mut(),
            Entry::Vacant(vacant) => {
                let exporter = session.exporter_ip();
                let of_exporter = self.per_exporter.get(&exporter).copied().unwrap_or(0);
                if streams >= self.limits.max_streams || of_exporter >= self.limits.max_per_exporter
                {
                    return SequenceEvent::Untracked;
                }
                *self.per_exporter.entry(exporter).or_insert(0) += 1;
                vacant.insert(Stream {
                    unit: sequence.unit,
                    uptime: None,
                    expected: None,
                    last: 0,
                    convention: Convention::Rfc,
                    lost: 0,
                    seen: now,
                })
            }
        };
        stream.seen = now;
        let rebooted = match (stream.uptime, sequence.sys_uptime) {
            // Backwards by less than half the clock's range: not a wrap past 2^32 ms.
            (Some(before), Some(now)) => now < before && before - now < 1 << 31,
            _ => false,
        };
        stream.uptime = sequence.sys_uptime;
        stream.unit = sequence.unit;
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.1
        //# Incremental sequence counter modulo 2^32 of all IPFIX Data Records
        //# sent in the current stream from the current Observation Domain by
        //# the Exporting Process.
        let expected = match (stream.convention, records) {
            (Convention::IncludingThisMessage, Some(r)) => {
                stream.expected.map(|_| stream.last.wrapping_add(r.flow()))
            }
            (Convention::IncludingThisMessage, None) => None,
            (Convention::Rfc, _) => stream.expected,
        };
        let mut event = match expected {
            Some(_) if rebooted => SequenceEvent::Restart,
            None => SequenceEvent::Synced,
            Some(expected) => {
                // Modulo 2^32: the distance forward and backward, both wrapping.
                let ahead = sequence_number.wrapping_sub(expected);
                let behind = expected.wrapping_sub(sequence_number);
                if ahead == 0 {
                    SequenceEvent::InOrder
                } else if ahead < MAX_GAP {
                    SequenceEvent::Lost(ahead)
                } else if behind <= MAX_REORDER {
                    SequenceEvent::Reordered
                } else {
                    SequenceEvent::Restart
                }
            }
        };
        // softflowd puts the count after this Message in its header (and leaves its options
        // records out): a mismatch that this explains exactly, for a Message that holds flow
        // records, switches the stream to that reading instead of reporting a bogus gap.
        if let Some(r) = records
            && stream.convention == Convention::Rfc
            && stream.expected.is_some()
            && !matches!(event, SequenceEvent::InOrder)
            && r.flow() > 0
            && sequence_number == stream.last.wrapping_add(r.flow())
        {
            stream.convention = Convention::IncludingThisMessage;
            event = SequenceEvent::CountsItsOwnRecords;
        } else if stream.convention == Convention::IncludingThisMessage
            && !matches!(event, SequenceEvent::InOrder)
            && stream.expected == Some(sequence_number)
        {
            // The switch was a coincidence (an RFC exporter's gap equal to the next Message's
            // record count): a mismatch that RFC 7011's reading explains exactly switches back.
            stream.convention = Convention::Rfc;
            event = SequenceEvent::InOrder;
        }
        match event {
            SequenceEvent::Reordered => {
                // A late Message fills part of a gap counted as lost before.
                stream.lost = stream
                    .lost
                    .saturating_sub(u64::from(records.map_or(0, |r| r.all)));
            }
            _ => {
                if let SequenceEvent::Lost(n) = event {
                    stream.lost += u64::from(n);
                }
                stream.expected = records.map(|r| sequence_number.wrapping_add(r.all));
                stream.last = sequence_number;
            }
        }
        event
    }

    /// Records (or, for NetFlow v9, packets) lost so far per stream, for the per-exporter
    /// metrics.
    pub fn lost(
        &self,
    ) -> impl Iterator<Item = (TransportSession, ObservationDomainId, SequenceUnit, u64)> + '_ {
        self.streams
            .iter()
            .map(|(&(s, d), stream)| (s, d, stream.unit, stream.lost))
    }

    /// Forgets the streams of a session that ended.
    pub fn remove_session(&mut self, session: TransportSession) {
        self.forget(|(s, _), _| *s == session);
    }

    /// Forgets UDP streams idle past the bound; returns how many. Harmless to call early.
    pub fn expire(&mut self, now: Instant) -> usize {
        let idle = self.limits.idle;
        self.forget(|(s, _), stream| {
            s.is_udp() && now.saturating_duration_since(stream.seen) >= idle
        })
    }

    fn forget(
        &mut self,
        gone: impl Fn(&(TransportSession, ObservationDomainId), &Stream) -> bool,
    ) -> usize {
        let per_exporter = &mut self.per_exporter;
        let before = self.streams.len();
        self.streams.retain(|key, stream| {
            if !gone(key, stream) {
                return true;
            }
            let exporter = key.0.exporter_ip();
            if let Some(count) = per_exporter.get_mut(&exporter) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_exporter.remove(&exporter);
                }
            }
            false
        });
        before - self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> TransportSession {
        TransportSession::example_udp(1)
    }

    fn limits() -> SequenceLimits {
        SequenceLimits {
            max_streams: 8,
            max_per_exporter: 4,
            idle: Duration::from_secs(1800),
        }
    }

    fn run(steps: &[(u32, Option<u32>)]) -> (Vec<SequenceEvent>, u64) {
        let mut t = SequenceTracker::new(limits());
        let now = crate::clock::now();
        let events = steps
            .iter()
            .map(|&(seq, n)| {
                let n = n.map(MessageRecords::plain);
                t.observe(
                    session(),
                    ObservationDomainId(1),
                    SequenceNumber::records(seq),
                    n,
                    now,
                )
            })
            .collect();
        let lost = t.lost().map(|(_, _, _, l)| l).sum();
        (events, lost)
    }

    #[test]
    fn softflowds_count_after_the_message_is_read_as_such() {
        // softflowd: header = flow records sent including this Message's; its options record
        // (sent with the templates) is not counted.
        let mut t = SequenceTracker::new(limits());
        let now = crate::clock::now();
        let mut observe = |seq, all, options| {
            let r = MessageRecords { all, options };
            t.observe(
                session(),
                ObservationDomainId(1),
                SequenceNumber::records(seq),
                Some(r),
                now,
            )
        };
        assert_eq!(observe(26, 27, 1), SequenceEvent::Synced);
        // RFC 7011 would expect 26 + 27 = 53; 26 + this Message's 26 is exact.
        assert_eq!(observe(52, 26, 0), SequenceEvent::CountsItsOwnRecords);
        assert_eq!(observe(70, 18, 0), SequenceEvent::InOrder);
        assert_eq!(observe(96, 27, 1), SequenceEvent::InOrder);
        assert_eq!(observe(100, 4, 0), SequenceEvent::InOrder);
        // A real gap is still a gap: 10 records never came.
        assert_eq!(observe(114, 4, 0), SequenceEvent::Lost(10));
        assert_eq!(t.lost().map(|(_, _, _, l)| l).sum::<u64>(), 10);
    }

    #[test]
    fn a_coincidence_taken_for_softflowd_is_undone_by_the_next_rfc_message() {
        // 5 records lost after the first Message (10 records), so the second (15 records)
        // starts at 0 + 15, as softflowd would number it; the third fits only RFC 7011's
        // reading, which is restored.
        let (events, lost) = run(&[(0, Some(10)), (15, Some(15)), (30, Some(7)), (37, Some(1))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::CountsItsOwnRecords,
                SequenceEvent::InOrder,
                SequenceEvent::InOrder
            ]
        );
        // The 5 lost records go uncounted: the price of reading softflowd without false loss.
        assert_eq!(lost, 0);
    }

    #[test]
    fn an_rfc_gap_is_not_taken_for_softflowd() {
        // The gap (5) differs from this Message's own records (3): loss, convention kept.
        let (events, lost) = run(&[(0, Some(10)), (15, Some(3)), (18, Some(2))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::Lost(5),
                SequenceEvent::InOrder
            ]
        );
        assert_eq!(lost, 5);
    }

    #[test]
    fn counts_records_not_messages() {
        let (events, lost) = run(&[(0, Some(10)), (10, Some(5)), (15, Some(0)), (15, Some(3))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::InOrder,
                SequenceEvent::InOrder,
                SequenceEvent::InOrder
            ]
        );
        assert_eq!(lost, 0);
    }

    #[test]
    fn counts_a_gap_as_lost_and_a_late_message_gives_it_back() {
        let (events, lost) = run(&[(0, Some(10)), (20, Some(10)), (10, Some(10))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::Lost(10),
                SequenceEvent::Reordered
            ]
        );
        assert_eq!(lost, 0);
    }

    #[test]
    fn wraps_modulo_2_32() {
        let (events, lost) = run(&[(u32::MAX - 4, Some(10)), (5, Some(1)), (8, Some(1))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::InOrder,
                SequenceEvent::Lost(2)
            ]
        );
        assert_eq!(lost, 2);
    }

    #[test]
    fn a_restart_is_not_counted_as_loss() {
        let (events, lost) = run(&[(3_000_000_000, Some(10)), (0, Some(10)), (10, Some(1))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::Restart,
                SequenceEvent::InOrder
            ]
        );
        assert_eq!(lost, 0);
    }

    #[test]
    fn unknown_record_counts_resync() {
        let (events, lost) = run(&[(0, Some(10)), (10, None), (99, Some(1))]);
        assert_eq!(
            events,
            [
                SequenceEvent::Synced,
                SequenceEvent::InOrder,
                SequenceEvent::Synced
            ]
        );
        assert_eq!(lost, 0);
    }

    #[test]
    fn streams_are_bounded_per_exporter_and_idle_udp_streams_expire() {
        let mut t = SequenceTracker::new(limits());
        let t0 = crate::clock::now();
        for domain in 0..6 {
            let event = t.observe(
                session(),
                ObservationDomainId(domain),
                SequenceNumber::records(0),
                Some(MessageRecords::plain(1)),
                t0,
            );
            let expected = if domain < 4 {
                SequenceEvent::Synced
            } else {
                SequenceEvent::Untracked
            };
            assert_eq!(event, expected, "domain {domain}");
        }
        assert_eq!(t.len(), 4);
        let later = t0 + Duration::from_secs(1000);
        assert_eq!(
            t.observe(
                session(),
                ObservationDomainId(0),
                SequenceNumber::records(1),
                Some(MessageRecords::plain(1)),
                later
            ),
            SequenceEvent::InOrder
        );
        assert_eq!(t.expire(t0 + Duration::from_secs(1800)), 3);
        assert_eq!(
            t.observe(
                session(),
                ObservationDomainId(9),
                SequenceNumber::records(0),
                Some(MessageRecords::plain(1)),
                later
            ),
            SequenceEvent::Synced
        );
        t.remove_session(session());
        assert!(t.is_empty());
    }

    #[test]
    fn netflow9_counts_packets_and_an_uptime_going_back_is_a_restart() {
        let mut t = SequenceTracker::new(limits());
        let now = crate::clock::now();
        let mut observe = |value, uptime, records| {
            let seq = SequenceNumber {
                value,
                unit: SequenceUnit::Packets,
                sys_uptime: Some(uptime),
            };
            t.observe(session(), ObservationDomainId(7), seq, records, now)
        };
        // Whatever a packet holds (even data held for its template), it is one step.
        assert_eq!(observe(10, 5_000, None), SequenceEvent::Synced);
        assert_eq!(
            observe(11, 6_000, Some(MessageRecords::plain(30))),
            SequenceEvent::InOrder
        );
        assert_eq!(observe(14, 7_000, None), SequenceEvent::Lost(2));
        // The uptime wraps past 2^32 ms (49.7 days): not a restart.
        assert_eq!(observe(15, u32::MAX - 5, None), SequenceEvent::InOrder);
        assert_eq!(observe(16, 60_000, None), SequenceEvent::InOrder);
        // The device rebooted: its uptime went back, its counter started again.
        assert_eq!(observe(0, 100, None), SequenceEvent::Restart);
        assert_eq!(observe(1, 200, None), SequenceEvent::InOrder);
        let lost: Vec<_> = t.lost().map(|(_, _, unit, l)| (unit, l)).collect();
        assert_eq!(lost, [(SequenceUnit::Packets, 2)]);
    }
}
