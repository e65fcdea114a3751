//! `flow_table_model`: the flow table (hash table plus timer wheel, lazy expiry) against a naive
//! model that keeps flows in a `HashMap` and, at every tick the clock reaches, looks at every
//! flow.
//!
//! Input: the tick, active and passive timers (the active timer may be 0, the stateless mode),
//! the table bound, and a sequence of `observe` (one of 16 flows, octets, TCP flags, a capture
//! timestamp up to a second behind the clock), `expire` and `flush` calls on a synthetic clock
//! that moves forward by arbitrary steps, from small to days, starting anywhere a pcap
//! timestamp can be.
//!
//! The model states the rules of `flow/table.rs` directly: a deadline `d` is due at tick
//! `ceil(d / tick)` and takes effect at the first call whose tick has reached it and is later
//! than the tick of the previous call; the passive deadline (last packet + passive) removes the
//! flow, exporting it if it counted packets (flowEndReason 1); otherwise the active deadline
//! exports a flow that counted packets (2), resets its counters, and moves to the first boundary
//! of the flow's own phase (creation + k × active) that is not yet due; `flush` exports every flow
//! that counted packets (4); a packet of a new flow when `max_flows` flows are held is exported
//! alone (5), and so is every packet in the stateless mode (2).
//!
//! Oracle: after every call, the records handed over (as a multiset: the wheel's order is its
//! own), the number of flows and the table's counters equal the model's.

use std::collections::HashMap;

use arbitrary::Arbitrary;
use flowvm_exporter::flow::table::Observation;
use flowvm_exporter::flow::{
    FlowEndReason, FlowKey, FlowRecord, FlowTable, TableStats, Timers, Variant,
};

#[derive(Arbitrary, Debug)]
enum Call {
    Observe {
        flow: u8,
        step: u16,
        octets: u16,
        tcp_flags: u8,
        /// How far behind the clock the packet's own timestamp is (ms).
        late_ms: u16,
    },
    Expire {
        step: u16,
    },
    Flush,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Tick: 1 s, 1 ms, or 1 ns..=65535 ns.
    tick: u8,
    tick_ns: u16,
    active_ticks: u8,
    passive_ticks: u8,
    /// Finer timers: add up to this many nanoseconds to each.
    active_extra_ns: u32,
    passive_extra_ns: u32,
    max_flows: u8,
    /// The clock starts here (seconds; pcap timestamps are 32-bit seconds).
    start_s: u32,
    /// Unit of the clock steps: 1 ns, 1 ms, 1 s or 1 min.
    unit: u8,
    calls: Vec<Call>,
}

/// One flow of the model.
#[derive(Clone, Copy, Debug)]
struct Flow {
    start_ns: u64,
    end_ns: u64,
    packets: u64,
    octets: u64,
    tcp_flags: u16,
    last_seen: u64,
    next_active: u64,
}

/// The naive model of the table.
#[derive(Debug)]
struct Model {
    timers: Timers,
    max_flows: usize,
    flows: HashMap<FlowKey, Flow>,
    /// The tick of the last call that looked at the flows.
    last_tick: Option<u64>,
    stats: TableStats,
}

impl Model {
    fn due(&self, deadline: u64) -> u64 {
        deadline.div_ceil(self.timers.tick_ns)
    }

    fn record(key: FlowKey, f: &mut Flow, end_reason: FlowEndReason) -> FlowRecord {
        let r = FlowRecord {
            key,
            start_ns: f.start_ns,
            end_ns: f.end_ns,
            packets: f.packets,
            octets: f.octets,
            tcp_flags: f.tcp_flags,
            end_reason,
        };
        (f.packets, f.octets, f.tcp_flags) = (0, 0, 0);
        r
    }

    fn expire(&mut self, now: u64, out: &mut Vec<FlowRecord>) {
        let tick = now / self.timers.tick_ns;
        if self.last_tick.is_some_and(|last| tick <= last) {
            return;
        }
        self.last_tick = Some(tick);
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            let Some(mut f) = self.flows.get(&key).copied() else {
                continue;
            };
            if self.due(f.last_seen + self.timers.passive_ns) <= tick {
                if f.packets > 0 {
                    out.push(Self::record(key, &mut f, FlowEndReason::IdleTimeout));
                }
                self.flows.remove(&key);
                continue;
            }
            if self.due(f.next_active) <= tick {
                if f.packets > 0 {
                    out.push(Self::record(key, &mut f, FlowEndReason::ActiveTimeout));
                }
                // The first boundary creation + k × active past the last instant due by now.
                let due_by_now = tick * self.timers.tick_ns;
                let k = (due_by_now - f.next_active) / self.timers.active_ns + 1;
                f.next_active += k * self.timers.active_ns;
            }
            self.flows.insert(key, f);
        }
    }

    fn observe(&mut self, key: FlowKey, p: Observation, now: u64, out: &mut Vec<FlowRecord>) {
        self.expire(now, out);
        self.stats.packets += 1;
        let lone = |end_reason| FlowRecord {
            key,
            start_ns: p.timestamp_ns,
            end_ns: p.timestamp_ns,
            packets: 1,
            octets: p.octets,
            tcp_flags: p.tcp_flags,
            end_reason,
        };
        if self.timers.active_ns == 0 {
            out.push(lone(FlowEndReason::ActiveTimeout));
        } else if let Some(f) = self.flows.get_mut(&key) {
            if f.packets == 0 {
                (f.start_ns, f.end_ns) = (p.timestamp_ns, p.timestamp_ns);
            }
            f.start_ns = f.start_ns.min(p.timestamp_ns);
            f.end_ns = f.end_ns.max(p.timestamp_ns);
            f.packets += 1;
            f.octets += p.octets;
            f.tcp_flags |= p.tcp_flags;
            f.last_seen = now;
        } else if self.flows.len() >= self.max_flows {
            self.stats.table_full += 1;
            out.push(lone(FlowEndReason::LackOfResources));
        } else {
            self.stats.flows += 1;
            let flow = Flow {
                start_ns: p.timestamp_ns,
                end_ns: p.timestamp_ns,
                packets: 1,
                octets: p.octets,
                tcp_flags: p.tcp_flags,
                last_seen: now,
                next_active: now + self.timers.active_ns,
            };
            self.flows.insert(key, flow);
        }
    }

    fn flush(&mut self, out: &mut Vec<FlowRecord>) {
        for (key, mut f) in self.flows.drain() {
            if f.packets > 0 {
                out.push(Self::record(key, &mut f, FlowEndReason::ForcedEnd));
            }
        }
    }
}

fn key(n: u8) -> FlowKey {
    FlowKey {
        variant: if n.is_multiple_of(2) {
            Variant::Ip4
        } else {
            Variant::Ip6
        },
        protocol: 6,
        src_port: u16::from(n % 16),
        dst_port: 443,
        ethertype: 0,
        vlan: 0,
        interface: 0,
        src_mac: [0; 6],
        dst_mac: [0; 6],
        src: [10; 16],
        dst: [192; 16],
    }
}

/// A comparable form of a record (records have no order of their own).
fn sortable(r: &FlowRecord) -> (u16, u64, u64, u64, u64, u16, u8, bool) {
    (
        r.key.src_port,
        r.start_ns,
        r.end_ns,
        r.packets,
        r.octets,
        r.tcp_flags,
        r.end_reason.code(),
        r.key.variant == Variant::Ip6,
    )
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some(input) = super::structured::<Input>(data) else {
        return;
    };
    let tick_ns = match input.tick % 3 {
        0 => 1_000_000_000,
        1 => 1_000_000,
        _ => u64::from(input.tick_ns.max(1)),
    };
    let timers = Timers {
        active_ns: match input.active_ticks {
            0 => 0,
            t => u64::from(t) * tick_ns + u64::from(input.active_extra_ns),
        },
        passive_ns: u64::from(input.passive_ticks) * tick_ns + u64::from(input.passive_extra_ns),
        tick_ns,
    };
    let max_flows = usize::from(input.max_flows % 17);
    let unit = [1, 1_000_000, 1_000_000_000, 60_000_000_000][usize::from(input.unit % 4)];
    let mut table = FlowTable::new(timers, max_flows);
    let mut model = Model {
        timers,
        max_flows,
        flows: HashMap::new(),
        last_tick: None,
        stats: TableStats::default(),
    };
    let mut now = u64::from(input.start_s) * 1_000_000_000;
    for (n, call) in input.calls.iter().enumerate() {
        let (mut got, mut want) = (Vec::new(), Vec::new());
        match *call {
            Call::Observe {
                flow,
                step,
                octets,
                tcp_flags,
                late_ms,
            } => {
                now += u64::from(step) * unit;
                let packet = Observation {
                    timestamp_ns: now.saturating_sub(u64::from(late_ms % 1000) * 1_000_000),
                    octets: u64::from(octets),
                    tcp_flags: u16::from(tcp_flags),
                };
                table.observe(key(flow), packet, now, &mut got);
                model.observe(key(flow), packet, now, &mut want);
            }
            Call::Expire { step } => {
                now += u64::from(step) * unit;
                table.expire(now, &mut got);
                model.expire(now, &mut want);
            }
            Call::Flush => {
                table.flush(|r| got.push(r));
                model.flush(&mut want);
            }
        }
        model.stats.records += u64::try_from(want.len()).unwrap_or(0);
        got.sort_by_key(sortable);
        want.sort_by_key(sortable);
        assert_eq!(got, want, "call {n}: {call:?} at {now}");
        assert_eq!(table.len(), model.flows.len(), "call {n}: flows held");
        assert_eq!(table.stats(), model.stats, "call {n}: counters");
    }
}
