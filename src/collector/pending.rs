//! Data Sets that arrived before their template, held so they can be decoded when it comes.
//!
//! RFC 7011 §8 lets a Collecting Process that receives data without its template drop it; over
//! UDP the template often arrives a little after the first data (exporter restart, collector
//! restart, reordering), and dropping loses exactly the start of every flow. A router sends
//! hundreds of Sets per template between its boot and its first Template, for several
//! Observation Domains, and refreshes templates only every few minutes: flowvm keeps such Sets,
//! bounded by octets per session, octets in all (each Set is charged its bookkeeping too, so
//! octets bound the count) and age, not by a count per template; what a bound drops is counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::collector::FastMap;
use crate::collector::batch::Provenance;
use crate::collector::session::TransportSession;
use crate::collector::templates::TemplateKey;

/// Bookkeeping cost charged per held Set on top of its octets.
const OVERHEAD: usize = 64;

/// One held Data Set, with the context its rows need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSet {
    /// The Set's content (after its header).
    pub body: Vec<u8>,
    /// Offset of the content in its Message, for error reports.
    pub offset: usize,
    /// What its rows keep of the packet it came in.
    pub provenance: Provenance,
    /// When it arrived.
    pub arrived: Instant,
}

impl PendingSet {
    fn cost(&self) -> usize {
        self.body.len() + OVERHEAD
    }
}

/// Bounds of the pending buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// Octets held in all.
    pub max_bytes: usize,
    /// Octets held for one Transport Session, so one exporter cannot crowd out the others.
    pub max_session_bytes: usize,
    /// Age after which a held Set is dropped.
    pub max_age: Duration,
}

//= https://www.rfc-editor.org/rfc/rfc7011#section-9.3
//# The Collecting Process SHOULD accept Data Records without the
//# associated Template Record (or other definitions such as Common
//# Properties) required to decode the Data Record.
/// The buffer of Sets waiting for their template.
#[derive(Debug)]
pub struct PendingStore {
    map: FastMap<TemplateKey, VecDeque<PendingSet>>,
    session_bytes: FastMap<TransportSession, usize>,
    bytes: usize,
    sets: usize,
    limits: PendingLimits,
}

impl PendingStore {
    /// An empty buffer.
    pub fn new(limits: PendingLimits) -> Self {
        Self {
            map: FastMap::default(),
            session_bytes: FastMap::default(),
            bytes: 0,
            sets: 0,
            limits,
        }
    }

    /// Octets held, bookkeeping included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sets held.
    pub fn sets(&self) -> usize {
        self.sets
    }

    /// Holds `set` for `key`; `false` (the Set is dropped) when the session's share or the
    /// whole buffer has no room for it. What is held stays: the oldest data of a flow is the
    /// start of it.
    pub fn push(&mut self, key: TemplateKey, set: PendingSet) -> bool {
        let cost = set.cost();
        let session = self.session_bytes.get(&key.session).copied().unwrap_or(0);
        if cost > self.limits.max_session_bytes.saturating_sub(session)
            || cost > self.limits.max_bytes.saturating_sub(self.bytes)
        {
            return false;
        }
        self.map.entry(key).or_default().push_back(set);
        self.sets += 1;
        self.bytes += cost;
        *self.session_bytes.entry(key.session).or_insert(0) += cost;
        true
    }

    fn release(&mut self, session: TransportSession, cost: usize) {
        if let Some(b) = self.session_bytes.get_mut(&session) {
            *b = b.saturating_sub(cost);
            if *b == 0 {
                self.session_bytes.remove(&session);
            }
        }
    }

    /// Takes every Set held for `key`, oldest first.
    pub fn take(&mut self, key: &TemplateKey) -> VecDeque<PendingSet> {
        let queue = self.map.remove(key).unwrap_or_default();
        let cost: usize = queue.iter().map(PendingSet::cost).sum();
        self.bytes -= cost;
        self.sets -= queue.len();
        self.release(key.session, cost);
        queue
    }

    /// Drops Sets older than the age bound; returns how many. Harmless to call early.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let max_age = self.limits.max_age;
        let mut freed = Vec::new();
        self.map.retain(|key, queue| {
            // Each queue is in arrival order: the oldest are at the front.
            while queue
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.arrived) >= max_age)
            {
                if let Some(old) = queue.pop_front() {
                    freed.push((key.session, old.cost()));
                }
            }
            !queue.is_empty()
        });
        for &(session, cost) in &freed {
            self.bytes -= cost;
            self.sets -= 1;
            self.release(session, cost);
        }
        u64::try_from(freed.len()).unwrap_or(u64::MAX)
    }

    /// Drops everything held for `session` (a closed connection); returns how many Sets.
    pub fn remove_session(&mut self, session: TransportSession) -> u64 {
        let keys: Vec<TemplateKey> = self
            .map
            .keys()
            .filter(|k| k.session == session)
            .copied()
            .collect();
        keys.iter()
            .map(|k| u64::try_from(self.take(k).len()).unwrap_or(0))
            .sum()
    }

    /// Drops everything (shutdown); returns how many Sets.
    pub fn clear(&mut self) -> u64 {
        let sets = u64::try_from(self.sets).unwrap_or(u64::MAX);
        self.map.clear();
        self.session_bytes.clear();
        self.bytes = 0;
        self.sets = 0;
        sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowvm_vm::wire::ids::{ObservationDomainId, TemplateId};

    fn key(port: u16) -> TemplateKey {
        let session = TransportSession::example_udp(port);
        TemplateKey {
            session,
            domain: ObservationDomainId(1),
            template_id: TemplateId(256),
        }
    }

    fn set(len: usize, arrived: Instant) -> PendingSet {
        PendingSet {
            body: vec![0; len],
            offset: 20,
            provenance: Provenance {
                version: 10,
                export_time: 0,
                export_nanos: 0,
                sys_uptime: None,
                netflow5: None,
            },
            arrived,
        }
    }

    fn limits() -> PendingLimits {
        PendingLimits {
            max_bytes: 1000,
            max_session_bytes: 600,
            max_age: Duration::from_secs(10),
        }
    }

    #[test]
    fn holds_every_set_of_a_template_in_arrival_order_within_the_octets() {
        let mut p = PendingStore::new(PendingLimits {
            max_session_bytes: 100_000,
            max_bytes: 100_000,
            ..limits()
        });
        let t = crate::clock::now();
        // A router's boot: far more Sets per template than any count bound used to allow.
        for i in 0..1000 {
            assert!(p.push(key(1), set(i % 7, t)));
        }
        let held: Vec<usize> = p.take(&key(1)).iter().map(|s| s.body.len()).collect();
        assert_eq!(held, (0..1000).map(|i| i % 7).collect::<Vec<_>>());
        assert_eq!((p.sets(), p.bytes()), (0, 0));
    }

    #[test]
    fn one_session_cannot_take_the_whole_buffer() {
        let mut p = PendingStore::new(limits());
        let t = crate::clock::now();
        let mut dropped = 0;
        for _ in 0..10 {
            dropped += u64::from(!p.push(key(1), set(100, t)));
        }
        assert_eq!(dropped, 7, "600 octets per session hold 3 sets of 164");
        assert!(p.push(key(2), set(100, t)));
        assert_eq!(p.remove_session(key(1).session), 3);
        assert_eq!(p.sets(), 1);
    }

    #[test]
    fn old_sets_expire() {
        let mut p = PendingStore::new(limits());
        let t = crate::clock::now();
        p.push(key(1), set(1, t));
        p.push(key(1), set(2, t + Duration::from_secs(5)));
        assert_eq!(p.expire(t + Duration::from_secs(9)), 0);
        assert_eq!(p.expire(t + Duration::from_secs(10)), 1);
        assert_eq!(p.sets(), 1);
        assert_eq!(p.clear(), 1);
        assert_eq!(p.bytes(), 0);
    }
}
