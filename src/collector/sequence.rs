//! Sequence numbers (RFC 7011 §3.1): records lost, messages reordered, exporter restarts.

use std::collections::HashMap;

use flowvm_vm::wire::ids::ObservationDomainId;

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
}

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// The next sequence number expected; `None` until synced.
    expected: Option<u32>,
    lost: u64,
}

/// Expected versus received sequence numbers per (Transport Session, Observation Domain).
#[derive(Debug, Default)]
pub struct SequenceTracker {
    streams: HashMap<(TransportSession, ObservationDomainId), Stream>,
}

impl SequenceTracker {
    /// A tracker with no stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts a Message of `session`/`domain` carrying `sequence_number` and `records` Data
    /// Records (`None` when some could not be counted, e.g. held for a missing template: the
    /// next Message then re-syncs instead of counting loss).
    pub fn observe(
        &mut self,
        session: TransportSession,
        domain: ObservationDomainId,
        sequence_number: u32,
        records: Option<u32>,
    ) -> SequenceEvent {
        let stream = self.streams.entry((session, domain)).or_default();
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.1
        //# Incremental sequence counter modulo 2^32 of all IPFIX Data Records
        //# sent in the current stream from the current Observation Domain by
        //# the Exporting Process.
        let event = match stream.expected {
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
        match event {
            SequenceEvent::Reordered => {
                // A late Message fills part of a gap counted as lost before.
                stream.lost = stream.lost.saturating_sub(u64::from(records.unwrap_or(0)));
            }
            _ => {
                if let SequenceEvent::Lost(n) = event {
                    stream.lost += u64::from(n);
                }
                stream.expected = records.map(|r| sequence_number.wrapping_add(r));
            }
        }
        event
    }

    /// Records lost so far per stream, for the per-exporter metric.
    pub fn lost(&self) -> impl Iterator<Item = (TransportSession, ObservationDomainId, u64)> + '_ {
        self.streams
            .iter()
            .map(|(&(s, d), stream)| (s, d, stream.lost))
    }

    /// Forgets the streams of a session that ended.
    pub fn remove_session(&mut self, session: TransportSession) {
        self.streams.retain(|(s, _), _| *s != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> TransportSession {
        TransportSession::example_udp(1)
    }

    fn run(steps: &[(u32, Option<u32>)]) -> (Vec<SequenceEvent>, u64) {
        let mut t = SequenceTracker::new();
        let events = steps
            .iter()
            .map(|&(seq, n)| t.observe(session(), ObservationDomainId(1), seq, n))
            .collect();
        let lost = t.lost().map(|(_, _, l)| l).sum();
        (events, lost)
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
}
