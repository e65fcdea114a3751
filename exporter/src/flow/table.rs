//! The flow table of one worker: a hash table of flows with their counters, and an
//! [`ExpiryWheel`] for the active and passive timers.
//!
//! Flowprobe's rules, with capture time as the clock:
//! - a flow's first packet creates it; each packet adds to its packets, octets and TCP flags;
//! - every active interval from its creation, a flow that counted packets since its previous
//!   record is exported (flowEndReason 2) and its counters start again;
//! - a flow that sees no packet for the passive interval is exported if it counted packets
//!   (flowEndReason 1) and removed;
//! - an active timer of 0 is flowprobe's stateless mode: each packet is exported as it comes;
//! - [`FlowTable::flush`] exports every flow at the end (flowEndReason 4).
//!
//! A deadline `d` takes effect at the first `now` whose tick reaches `ceil(d / tick)` (see
//! [`expiry`](crate::flow::expiry)); when both are due the passive one wins.
//!
//! Unlike flowprobe, each record's flowStart is the first packet that record counts (not the
//! flow's first packet), so that every record's start, end and delta counters describe the
//! same packets, as Cisco's active timeout does.
//!
//! The table is bounded: when it holds `max_flows` flows, a packet of a new flow is exported on
//! its own (flowEndReason 5) and counted, so nothing is lost and memory stays bounded.

use crate::flow::expiry::ExpiryWheel;
use crate::flow::key::PackedKey;
use crate::flow::map::{FlowMap, HashedKey, KeyHasher};
use crate::flow::{FlowEndReason, FlowKey, FlowRecord};

/// The meter's timers, in nanoseconds of capture time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Export a running flow this often; 0 is the stateless mode.
    pub active_ns: u64,
    /// Expire a flow idle this long.
    pub passive_ns: u64,
    /// Granularity of both (the wheel's tick).
    pub tick_ns: u64,
}

impl Default for Timers {
    /// Flowprobe's defaults: active 15 s, passive 120 s; one-second ticks.
    fn default() -> Self {
        Self {
            active_ns: 15_000_000_000,
            passive_ns: 120_000_000_000,
            tick_ns: 1_000_000_000,
        }
    }
}

/// What the table has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Packets metered.
    pub packets: u64,
    /// Flows created.
    pub flows: u64,
    /// Records handed to export.
    pub records: u64,
    /// Packets exported alone because the table was full.
    pub table_full: u64,
}

/// One flow's state.
#[derive(Clone, Copy, Debug)]
struct Flow {
    start_ns: u64,
    end_ns: u64,
    packets: u64,
    octets: u64,
    tcp_flags: u16,
    /// Clock at the flow's last packet: the passive timer runs from here.
    last_seen: u64,
    /// The next active deadline.
    next_active: u64,
}

impl Flow {
    fn record(&mut self, key: &PackedKey, end_reason: FlowEndReason) -> FlowRecord {
        let record = FlowRecord {
            key: key.into(),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            packets: self.packets,
            octets: self.octets,
            tcp_flags: self.tcp_flags,
            end_reason,
        };
        self.packets = 0;
        self.octets = 0;
        self.tcp_flags = 0;
        record
    }
}

/// How many packets ahead of the one counted [`FlowTable::observe_batch`] starts a lookup's
/// loads: enough for a miss to arrive while the packets before it are counted, few enough
/// that the loads in flight stay within what the processor tracks at once.
pub const LOOKAHEAD: usize = 8;

/// A packet waiting in a batch to be counted (see [`FlowTable::observe_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Its flow's key, hashed.
    pub key: HashedKey,
    /// What it counts for.
    pub packet: Observation,
    /// The clock when it came.
    pub now_ns: u64,
}

/// One packet as the table counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Capture time, ns since the UNIX epoch.
    pub timestamp_ns: u64,
    /// Octets it counts for.
    pub octets: u64,
    /// Its TCP flags (0 if not TCP).
    pub tcp_flags: u16,
}

/// The flow table of one worker.
#[derive(Debug)]
pub struct FlowTable {
    flows: FlowMap<Flow>,
    wheel: ExpiryWheel,
    timers: Timers,
    max_flows: usize,
    fired: Vec<PackedKey>,
    stats: TableStats,
}

impl FlowTable {
    /// An empty table that holds at most `max_flows` flows (and never more than
    /// [`FlowMap::MAX_LEN`], about four thousand million).
    pub fn new(timers: Timers, max_flows: usize) -> Self {
        Self {
            flows: FlowMap::with_capacity(max_flows.min(1 << 16)),
            wheel: ExpiryWheel::new(timers.tick_ns),
            timers,
            max_flows: max_flows.min(FlowMap::<Flow>::MAX_LEN),
            fired: Vec::new(),
            stats: TableStats::default(),
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Counters so far.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// `key` hashed, once per packet, for [`Self::observe_hashed`].
    #[inline]
    pub fn hash(&self, key: PackedKey) -> HashedKey {
        self.flows.hash(key)
    }

    /// How the table hashes keys: a copy hashes them where they are packed, on any thread.
    pub fn hasher(&self) -> KeyHasher {
        self.flows.hasher().clone()
    }

    /// Starts the load of the index slot of a packet's flow, without waiting for it: the
    /// first step of its lookup, taken as the packet joins a batch for
    /// [`Self::observe_batch`], which takes the second.
    #[inline]
    pub fn prefetch_slot(&self, arrival: &Arrival) {
        self.flows.prefetch_slot(&arrival.key);
    }

    /// Counts a batch of packets in order, as [`Self::observe_hashed`] one at a time would,
    /// calling `after` with the records made and the clock after each. The lookups run
    /// [`LOOKAHEAD`] packets ahead (VPP's prefetch of a vector's buckets, as a pipeline): as a
    /// packet is counted, the loads of a later packet's flow are started, so that its cache
    /// misses overlap the counting instead of stalling it.
    #[inline]
    pub fn observe_batch(
        &mut self,
        batch: &[Arrival],
        out: &mut Vec<FlowRecord>,
        mut after: impl FnMut(&mut Vec<FlowRecord>, u64),
    ) {
        for arrival in batch.iter().take(LOOKAHEAD) {
            self.flows.prefetch_entry(&arrival.key);
        }
        for (i, arrival) in batch.iter().enumerate() {
            if let Some(ahead) = batch.get(i + LOOKAHEAD) {
                self.flows.prefetch_entry(&ahead.key);
            }
            self.observe_hashed(&arrival.key, arrival.packet, arrival.now_ns, out);
            after(out, arrival.now_ns);
        }
    }

    /// Counts one packet of flow `key` at clock `now_ns`, after firing the timers due by then;
    /// records go to `out`.
    pub fn observe(
        &mut self,
        key: FlowKey,
        packet: Observation,
        now_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        let key = self.hash((&key).into());
        self.observe_hashed(&key, packet, now_ns, out);
    }

    /// [`Self::observe`] with the key already hashed by [`Self::hash`]. Inlined into the
    /// meter's loop: a packet of a flow held is a few adds; a new flow, the stateless mode and a
    /// full table go out of line.
    #[inline]
    pub fn observe_hashed(
        &mut self,
        key: &HashedKey,
        packet: Observation,
        now_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        self.expire(now_ns, out);
        self.stats.packets += 1;
        if self.timers.active_ns != 0
            && let Some(flow) = self.flows.get_mut(key)
        {
            if flow.packets == 0 {
                flow.start_ns = packet.timestamp_ns;
                flow.end_ns = packet.timestamp_ns;
            }
            flow.start_ns = flow.start_ns.min(packet.timestamp_ns);
            flow.end_ns = flow.end_ns.max(packet.timestamp_ns);
            flow.packets += 1;
            flow.octets += packet.octets;
            flow.tcp_flags |= packet.tcp_flags;
            flow.last_seen = now_ns;
            return;
        }
        self.observe_new(key, packet, now_ns, out);
    }

    /// [`Self::observe_hashed`] for a packet of no flow held: a new flow, or a record of its
    /// own in the stateless mode or when the table is full.
    #[inline(never)]
    fn observe_new(
        &mut self,
        key: &HashedKey,
        packet: Observation,
        now_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) {
        let lone = |end_reason| FlowRecord {
            key: (&key.key).into(),
            start_ns: packet.timestamp_ns,
            end_ns: packet.timestamp_ns,
            packets: 1,
            octets: packet.octets,
            tcp_flags: packet.tcp_flags,
            end_reason,
        };
        if self.timers.active_ns == 0 {
            self.stats.records += 1;
            out.push(lone(FlowEndReason::ActiveTimeout));
            return;
        }
        if self.flows.len() >= self.max_flows {
            self.stats.table_full += 1;
            self.stats.records += 1;
            out.push(lone(FlowEndReason::LackOfResources));
            return;
        }
        let next_active = now_ns + self.timers.active_ns;
        self.flows.insert_new(
            *key,
            Flow {
                start_ns: packet.timestamp_ns,
                end_ns: packet.timestamp_ns,
                packets: 1,
                octets: packet.octets,
                tcp_flags: packet.tcp_flags,
                last_seen: now_ns,
                next_active,
            },
        );
        self.stats.flows += 1;
        let deadline = next_active.min(now_ns + self.timers.passive_ns);
        self.wheel.schedule(deadline, key.key);
    }

    /// Fires the timers due by `now_ns`: exports running flows whose active interval elapsed and
    /// removes idle ones. Calling it early or twice is harmless.
    #[inline]
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<FlowRecord>) {
        if self.wheel.reaches_next_tick(now_ns) {
            self.fire(now_ns, out);
        }
    }

    /// [`Self::expire`] once the clock has reached a tick not yet processed.
    fn fire(&mut self, now_ns: u64, out: &mut Vec<FlowRecord>) {
        self.wheel.advance(now_ns, &mut self.fired);
        if self.fired.is_empty() {
            return;
        }
        let now_tick = self.wheel.tick_of(now_ns);
        let mut fired = std::mem::take(&mut self.fired);
        for packed in fired.drain(..) {
            let key = self.flows.hash(packed);
            let Some(flow) = self.flows.get_mut(&key) else {
                continue;
            };
            let passive_deadline = flow.last_seen.saturating_add(self.timers.passive_ns);
            if self.wheel.due_tick(passive_deadline) <= now_tick {
                if flow.packets > 0 {
                    self.stats.records += 1;
                    out.push(flow.record(&packed, FlowEndReason::IdleTimeout));
                }
                self.flows.remove(&key);
                continue;
            }
            if self.wheel.due_tick(flow.next_active) <= now_tick {
                if flow.packets > 0 {
                    self.stats.records += 1;
                    out.push(flow.record(&packed, FlowEndReason::ActiveTimeout));
                }
                // The next interval boundary after now, keeping the flow's own phase.
                while self.wheel.due_tick(flow.next_active) <= now_tick {
                    let behind = (now_ns.saturating_sub(flow.next_active)) / self.timers.active_ns;
                    flow.next_active += self.timers.active_ns * behind.max(1);
                }
            }
            let deadline = flow.next_active.min(passive_deadline);
            self.wheel.schedule(deadline, packed);
        }
        self.fired = fired;
    }

    /// Hands `export` a record of every flow that counted packets (flowEndReason 4), one at
    /// a time (a whole table's records at once would be megabytes of fresh memory), and
    /// empties the table.
    pub fn flush(&mut self, mut export: impl FnMut(FlowRecord)) {
        for (key, mut flow) in self.flows.drain() {
            if flow.packets > 0 {
                self.stats.records += 1;
                export(flow.record(&key, FlowEndReason::ForcedEnd));
            }
        }
        self.wheel.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Variant;

    const S: u64 = 1_000_000_000;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            variant: Variant::Ip4,
            protocol: 17,
            src_port: port,
            dst_port: 53,
            ethertype: 0,
            vlan: 0,
            interface: 0,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    fn at(t: u64) -> Observation {
        Observation {
            timestamp_ns: t,
            octets: 100,
            tcp_flags: 0,
        }
    }

    fn timers(active: u64, passive: u64) -> Timers {
        Timers {
            active_ns: active * S,
            passive_ns: passive * S,
            tick_ns: S,
        }
    }

    #[test]
    fn a_running_flow_is_exported_every_active_interval() {
        let mut t = FlowTable::new(timers(10, 100), 16);
        let mut out = Vec::new();
        for s in 0..35 {
            t.observe(key(1), at(1_000 * S + s * S), 1_000 * S + s * S, &mut out);
        }
        let counts: Vec<_> = out.iter().map(|r| (r.packets, r.end_reason)).collect();
        assert_eq!(
            counts,
            [
                (10, FlowEndReason::ActiveTimeout),
                (10, FlowEndReason::ActiveTimeout),
                (10, FlowEndReason::ActiveTimeout)
            ]
        );
        assert_eq!(out[1].start_ns, 1_010 * S);
        assert_eq!(out[1].end_ns, 1_019 * S);
        t.flush(|r| out.push(r));
        assert_eq!(out[3].packets, 5);
        assert_eq!(out[3].end_reason, FlowEndReason::ForcedEnd);
        assert!(t.is_empty());
    }

    #[test]
    fn an_idle_flow_expires_and_a_later_packet_starts_a_new_one() {
        let mut t = FlowTable::new(timers(60, 5), 16);
        let mut out = Vec::new();
        t.observe(key(1), at(100 * S), 100 * S, &mut out);
        t.observe(key(1), at(102 * S), 102 * S, &mut out);
        t.expire(106 * S, &mut out);
        assert!(out.is_empty(), "passive deadline 107 s not reached");
        t.observe(key(2), at(107 * S), 107 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].packets, out[0].octets, out[0].end_reason),
            (2, 200, FlowEndReason::IdleTimeout)
        );
        assert_eq!(t.len(), 1);
        t.observe(key(1), at(108 * S), 108 * S, &mut out);
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().flows, 3);
    }

    #[test]
    fn stateless_mode_exports_each_packet() {
        let mut t = FlowTable::new(timers(0, 100), 16);
        let mut out = Vec::new();
        t.observe(key(1), at(5 * S), 5 * S, &mut out);
        t.observe(key(1), at(6 * S), 6 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_exports_new_flows_alone_and_keeps_its_bound() {
        let mut t = FlowTable::new(timers(60, 60), 2);
        let mut out = Vec::new();
        for port in 0..5 {
            t.observe(key(port), at(S), S, &mut out);
        }
        assert_eq!(t.len(), 2);
        assert_eq!(out.len(), 3);
        assert!(
            out.iter()
                .all(|r| r.end_reason == FlowEndReason::LackOfResources)
        );
        assert_eq!(t.stats().table_full, 3);
    }

    #[test]
    fn active_records_keep_the_flows_phase_across_quiet_intervals() {
        let mut t = FlowTable::new(timers(10, 1_000), 16);
        let mut out = Vec::new();
        t.observe(key(1), at(3 * S), 3 * S, &mut out);
        t.observe(key(1), at(45 * S), 45 * S, &mut out);
        // Exported at 13 (1 packet); 23, 33, 43 had nothing; 45 falls in [43, 53).
        assert_eq!(out.len(), 1);
        t.expire(53 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].start_ns, 45 * S);
    }
}
