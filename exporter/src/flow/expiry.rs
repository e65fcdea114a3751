//! When flows are looked at again: a hashed timer wheel of deadlines.
//!
//! STYLE.md suggests starting with a `BTreeSet<(Deadline, FlowKey)>`; the metering bench asks
//! for more. Every packet moves its flow's passive deadline, and a B-tree would pay a removal
//! and an insertion (O(log n), two cache misses) per packet for that. The wheel instead holds
//! one entry per flow at a deadline no later than the flow's true one, and is never touched by
//! packets: when an entry comes due, the table re-reads the flow's deadlines and re-schedules it
//! if it is not due yet (lazy expiry). Scheduling and firing are O(1) per flow and the cost does
//! not grow with the table.
//!
//! Time is cut in ticks. A deadline `d` is due at tick `ceil(d / tick)`, and fires at the first
//! [`ExpiryWheel::advance`] whose `now` has reached that tick: timers are never early and at most
//! one tick late, and the same packet timestamps always fire the same timers.

use crate::flow::key::PackedKey;

/// Slots in the wheel: 4096 one-second ticks cover 68 minutes; a later deadline waits in its
/// slot for the wheel's turn that reaches it.
const SLOTS: usize = 4096;

/// A hashed timer wheel of flow keys.
#[derive(Debug)]
pub struct ExpiryWheel {
    tick_ns: u64,
    /// Slot `t % SLOTS` holds the entries due at tick `t` (and at `t + k * SLOTS`).
    slots: Vec<Vec<(u64, PackedKey)>>,
    /// The first tick not yet processed; `None` before the first advance.
    next_tick: Option<u64>,
    /// The capture time at which `next_tick` begins: an advance before it has nothing to do
    /// (checked without dividing, as every packet advances the wheel).
    next_tick_ns: u64,
    len: usize,
}

impl ExpiryWheel {
    /// An empty wheel of `tick_ns` nanoseconds per tick (at least 1).
    pub fn new(tick_ns: u64) -> Self {
        Self {
            tick_ns: tick_ns.max(1),
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_tick: None,
            next_tick_ns: 0,
            len: 0,
        }
    }

    /// The tick at which `deadline_ns` is due.
    pub fn due_tick(&self, deadline_ns: u64) -> u64 {
        deadline_ns.div_ceil(self.tick_ns)
    }

    /// The tick `now_ns` has reached.
    pub fn tick_of(&self, now_ns: u64) -> u64 {
        now_ns / self.tick_ns
    }

    /// Entries scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `key` at `deadline_ns` (a deadline already past fires at the next advance).
    pub fn schedule(&mut self, deadline_ns: u64, key: PackedKey) {
        let mut due = self.due_tick(deadline_ns);
        if let Some(next) = self.next_tick {
            due = due.max(next);
        }
        let slot = usize::try_from(due % SLOTS as u64).unwrap_or(0);
        if let Some(entries) = self.slots.get_mut(slot) {
            entries.push((due, key));
            self.len += 1;
        }
    }

    /// Whether [`Self::advance`] to `now_ns` has a tick to process: checked inline on every
    /// packet, without a call, as most packets fall in a tick already processed.
    #[inline]
    pub fn reaches_next_tick(&self, now_ns: u64) -> bool {
        now_ns >= self.next_tick_ns
    }

    /// Moves every entry due by `now_ns` into `fired`. Calling it again with the same or an
    /// earlier `now_ns` does nothing.
    pub fn advance(&mut self, now_ns: u64, fired: &mut Vec<PackedKey>) {
        if !self.reaches_next_tick(now_ns) {
            return;
        }
        let now_tick = self.tick_of(now_ns);
        let next = *self.next_tick.get_or_insert(now_tick);
        if now_tick < next {
            return;
        }
        if self.len > 0 {
            let span = now_tick - next + 1;
            if span >= SLOTS as u64 {
                for slot in 0..SLOTS {
                    self.fire_slot(slot, now_tick, fired);
                }
            } else {
                for tick in next..=now_tick {
                    let slot = usize::try_from(tick % SLOTS as u64).unwrap_or(0);
                    self.fire_slot(slot, now_tick, fired);
                }
            }
        }
        self.next_tick = Some(now_tick + 1);
        self.next_tick_ns = (now_tick + 1).saturating_mul(self.tick_ns);
    }

    fn fire_slot(&mut self, slot: usize, now_tick: u64, fired: &mut Vec<PackedKey>) {
        let Some(entries) = self.slots.get_mut(slot) else {
            return;
        };
        let mut i = 0;
        while let Some(&(due, key)) = entries.get(i) {
            if due <= now_tick {
                entries.swap_remove(i);
                fired.push(key);
                self.len -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.clear();
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowKey, Variant};

    fn key(n: u16) -> PackedKey {
        PackedKey::from(&FlowKey {
            variant: Variant::Ip4,
            protocol: 6,
            src_port: n,
            dst_port: 80,
            ethertype: 0,
            vlan: 0,
            interface: 0,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src: [0; 16],
            dst: [0; 16],
        })
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn fires_at_the_tick_a_deadline_rounds_up_to() {
        let mut w = ExpiryWheel::new(S);
        let mut fired = Vec::new();
        w.advance(100 * S, &mut fired);
        w.schedule(105 * S + 1, key(1));
        w.schedule(105 * S, key(2));
        w.advance(105 * S, &mut fired);
        assert_eq!(fired, [key(2)]);
        w.advance(106 * S - 1, &mut fired);
        assert_eq!(fired, [key(2)]);
        w.advance(106 * S, &mut fired);
        assert_eq!(fired, [key(2), key(1)]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_wait_for_their_turn_and_big_jumps_fire_everything_due() {
        let mut w = ExpiryWheel::new(S);
        let mut fired = Vec::new();
        w.advance(0, &mut fired);
        w.schedule(10_000 * S, key(1));
        w.schedule(3 * S, key(2));
        w.advance(9_999 * S, &mut fired);
        assert_eq!(fired, [key(2)]);
        w.advance(1_000_000 * S, &mut fired);
        assert_eq!(fired, [key(2), key(1)]);
    }

    #[test]
    fn a_past_deadline_fires_at_the_next_advance_and_time_never_runs_back() {
        let mut w = ExpiryWheel::new(S);
        let mut fired = Vec::new();
        w.advance(50 * S, &mut fired);
        w.schedule(10 * S, key(1));
        w.advance(40 * S, &mut fired);
        assert!(fired.is_empty());
        w.advance(51 * S, &mut fired);
        assert_eq!(fired, [key(1)]);
    }
}
