//! The flow table's hash map: open addressing over an index of one word per slot, the flows in
//! a dense array beside it, each entry one 128-octet pair of cache lines (its [`PackedKey`],
//! then its value and tag).
//!
//! Why not `hashbrown`: the meter wants, as VPP's flowprobe node does, to start the memory
//! loads of a whole vector of packets before it counts the first one, so that their cache
//! misses overlap instead of queueing (at 100 k flows a flow's entry is a miss to memory on
//! nearly every packet). That needs the address of a key's entry from its hash alone, which
//! `hashbrown` keeps to itself. Here [`FlowMap::prefetch_slot`] starts the load of a key's
//! index line as the key is hashed, and [`FlowMap::prefetch_entry`], a few packets before the
//! key is looked up, the loads of both cache lines of the entry it points at: prefetch
//! instructions retire at once, so misses overlap each other and the counting of the packets
//! before.
//!
//! The index: slot `i` is 0 when empty, otherwise the top 32 bits of the key's hash (its
//! "tag") above the entry's position + 1. A key's home slot is `tag & mask`; collisions probe
//! linearly; deletion shifts the following run back (no tombstones), so a lookup stops at the
//! first empty slot. The index is kept at most half full. Keys are hashed once per packet
//! with `foldhash` under a per-table random seed, so an attacker cannot aim packets at one
//! chain.

use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;

use crate::capture::sys;
use crate::flow::key::PackedKey;

/// One flow: its key in the first cache line, its value in the second.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Entry<V> {
    key: PackedKey,
    value: V,
    /// The key's tag, for moving the entry without hashing its key again.
    tag: u32,
}

/// A key with its hash, computed once per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedKey {
    /// The key.
    pub key: PackedKey,
    /// Its hash under the table's seed.
    pub hash: u64,
}

impl HashedKey {
    /// The top 32 bits of the hash, stored in the index.
    fn tag(&self) -> u64 {
        self.hash >> 32
    }
}

/// How one map hashes its keys: `foldhash` under the map's random seed. A copy may hash keys
/// on another thread (a capture file's reader, see [`crate::run::replay_pipelined`]), so that
/// each key is still hashed once, where it is packed.
#[derive(Clone, Debug)]
pub struct KeyHasher(RandomState);

impl KeyHasher {
    /// `key` with its hash.
    #[inline]
    pub fn hash(&self, key: PackedKey) -> HashedKey {
        let mut hasher = self.0.build_hasher();
        for word in key.0 {
            hasher.write_u64(word);
        }
        HashedKey {
            key,
            hash: hasher.finish(),
        }
    }
}

/// Open-addressing map from flow keys to `V`.
#[derive(Debug)]
pub struct FlowMap<V> {
    /// One word per slot: 0, or tag << 32 | (entry position + 1).
    index: Vec<u64>,
    mask: usize,
    entries: Vec<Entry<V>>,
    hasher: KeyHasher,
}

/// An empty vector with room for `capacity` items, on huge pages where the kernel has them (a
/// lookup at 100 k flows or more misses the TLB on nearly every packet otherwise): advised
/// before anything is written to it.
fn huge_vec<T>(capacity: usize) -> Vec<T> {
    let mut items = Vec::with_capacity(capacity);
    sys::advise_huge_pages(items.spare_capacity_mut());
    items
}

/// An index of `slots` empty slots, on huge pages (see [`huge_vec`]).
fn new_index(slots: usize) -> Vec<u64> {
    let mut index = huge_vec(slots);
    index.resize(slots, 0);
    index
}

/// The index word of an entry at `position` whose key has `tag`.
fn index_word(tag: u64, position: usize) -> u64 {
    tag << 32 | (position as u64 + 1)
}

/// The position of the entry an index word points at (`usize::MAX` for an empty slot).
fn position_of(word: u64) -> usize {
    usize::try_from(word & 0xffff_ffff)
        .unwrap_or(0)
        .wrapping_sub(1)
}

impl<V> FlowMap<V> {
    /// Keys held at most: an entry's position + 1 is 32 bits of its index word.
    pub const MAX_LEN: usize = 0xffff_fffe;

    /// An empty map with room for `capacity` keys before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        let slots = (capacity.max(8) * 2).next_power_of_two();
        Self {
            index: new_index(slots),
            mask: slots - 1,
            entries: huge_vec(capacity),
            hasher: KeyHasher(RandomState::default()),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How the map hashes its keys.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// `key` with its hash.
    #[inline]
    pub fn hash(&self, key: PackedKey) -> HashedKey {
        self.hasher.hash(key)
    }

    fn home(&self, tag: u64) -> usize {
        usize::try_from(tag).unwrap_or(0) & self.mask
    }

    /// Starts the load of `key`'s home slot of the index, without waiting for it: the first
    /// of a lookup's two steps, taken as soon as the key is hashed.
    #[inline]
    pub fn prefetch_slot(&self, key: &HashedKey) {
        sys::prefetch(&self.index, self.home(key.tag()));
    }

    /// Starts the loads of `key`'s entry, both its cache lines, without waiting for them: the
    /// second step, taken a few packets before the key is looked up. Reads the index (by
    /// then, it should be in cache) to find the entry, following the probe a few slots at
    /// most: a longer probe is rare at half load, and this is a hint.
    #[inline]
    pub fn prefetch_entry(&self, key: &HashedKey) {
        let tag = key.tag();
        let mut slot = self.home(tag);
        for _ in 0..4 {
            let word = self.index.get(slot).copied().unwrap_or(0);
            if word == 0 {
                return;
            }
            if word >> 32 == tag {
                // Both cache lines: the key's and the value's (no adjacent-line prefetch is
                // assumed).
                if let Some(e) = self.entries.get(position_of(word)) {
                    sys::prefetch(&e.key.0, 0);
                    sys::prefetch(std::slice::from_ref(&e.tag), 0);
                }
                return;
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// The slot holding `key` and the position of its entry, if held.
    #[inline]
    fn find(&self, key: &HashedKey) -> Option<(usize, usize)> {
        let tag = key.tag();
        let mut slot = self.home(tag);
        loop {
            let word = *self.index.get(slot)?;
            if word == 0 {
                return None;
            }
            if word >> 32 == tag {
                let position = position_of(word);
                if self.entries.get(position)?.key.same(&key.key) {
                    return Some((slot, position));
                }
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// The value of `key`, if held.
    #[inline]
    pub fn get_mut(&mut self, key: &HashedKey) -> Option<&mut V> {
        let (_, position) = self.find(key)?;
        self.entries.get_mut(position).map(|e| &mut e.value)
    }

    /// Adds `key`, which must not be held, with `value`; the caller keeps the map within
    /// [`Self::MAX_LEN`] keys.
    pub fn insert_new(&mut self, key: HashedKey, value: V) {
        if (self.entries.len() + 1) * 2 > self.index.len() {
            self.grow();
        }
        if self.entries.len() == self.entries.capacity() {
            // Moved by hand rather than by `reserve`, so that the new memory is advised
            // before the copy first writes it.
            let mut entries = huge_vec(self.entries.len().max(8) * 2);
            entries.append(&mut self.entries);
            self.entries = entries;
        }
        self.entries.push(Entry {
            key: key.key,
            value,
            tag: u32::try_from(key.tag()).unwrap_or(0),
        });
        self.place(key.tag(), self.entries.len() - 1);
    }

    /// Points the first empty slot from the tag's home at the entry at `position`.
    fn place(&mut self, tag: u64, position: usize) {
        let mut slot = self.home(tag);
        while let Some(word) = self.index.get_mut(slot) {
            if *word == 0 {
                *word = index_word(tag, position);
                return;
            }
            slot = (slot + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let slots = self.index.len() * 2;
        self.index = new_index(slots);
        self.mask = slots - 1;
        for position in 0..self.entries.len() {
            let Some(tag) = self.entries.get(position).map(|e| u64::from(e.tag)) else {
                break;
            };
            self.place(tag, position);
        }
    }

    /// Removes `key`; its value, if it was held.
    pub fn remove(&mut self, key: &HashedKey) -> Option<V> {
        let (slot, position) = self.find(key)?;
        self.clear_slot(slot);
        let last = self.entries.len().checked_sub(1)?;
        if position != last {
            // The last entry moves into the hole: point its slot at its new position.
            let moved_tag = u64::from(self.entries.get(last)?.tag);
            let mut s = self.home(moved_tag);
            while let Some(word) = self.index.get_mut(s) {
                if *word == index_word(moved_tag, last) {
                    *word = index_word(moved_tag, position);
                    break;
                }
                s = (s + 1) & self.mask;
            }
        }
        Some(self.entries.swap_remove(position).value)
    }

    /// Empties `slot` and shifts the run after it back, so no lookup stops short.
    fn clear_slot(&mut self, mut hole: usize) {
        if let Some(word) = self.index.get_mut(hole) {
            *word = 0;
        }
        let mut slot = hole;
        loop {
            slot = (slot + 1) & self.mask;
            let word = self.index.get(slot).copied().unwrap_or(0);
            if word == 0 {
                return;
            }
            let home = self.home(word >> 32);
            // The entry at `slot` may fill the hole if its home is not cyclically in
            // (hole, slot].
            let stays = if hole <= slot {
                hole < home && home <= slot
            } else {
                hole < home || home <= slot
            };
            if !stays {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = word;
                }
                if let Some(s) = self.index.get_mut(slot) {
                    *s = 0;
                }
                hole = slot;
            }
        }
    }

    /// Removes every key, yielding each with its value.
    pub fn drain(&mut self) -> impl Iterator<Item = (PackedKey, V)> + '_ {
        self.index.fill(0);
        self.entries.drain(..).map(|e| (e.key, e.value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn key(n: u64) -> PackedKey {
        PackedKey([n, 0, 0, 0, n.wrapping_mul(7), 0, 0, 0])
    }

    /// A map whose tags all collide into few homes: every probe and shift path is taken.
    fn crowded(map: &FlowMap<u64>, n: u64) -> HashedKey {
        let mut h = map.hash(key(n));
        h.hash = (n % 3) << 32 | n;
        h
    }

    #[test]
    fn insert_find_remove_with_collisions_and_growth() {
        let mut map = FlowMap::with_capacity(2);
        for n in 0..100 {
            let k = crowded(&map, n);
            map.insert_new(k, n * 10);
        }
        assert_eq!(map.len(), 100);
        for n in (0..100).step_by(3) {
            let k = crowded(&map, n);
            assert_eq!(map.remove(&k), Some(n * 10));
            assert_eq!(map.remove(&k), None);
        }
        for n in 0..100 {
            let k = crowded(&map, n);
            let want = (n % 3 != 0).then_some(n * 10);
            assert_eq!(map.get_mut(&k).copied(), want, "key {n}");
        }
        let mut drained: Vec<_> = map.drain().map(|(_, v)| v).collect();
        drained.sort_unstable();
        assert_eq!(drained.len(), 66);
        assert!(map.is_empty());
    }

    proptest! {
        /// The map agrees with std's `HashMap` over any sequence of inserts and removes.
        #[test]
        fn agrees_with_a_hash_map(ops in prop::collection::vec((any::<bool>(), 0_u64..64), 0..400)) {
            let mut map = FlowMap::with_capacity(4);
            let mut model = HashMap::new();
            for (i, (insert, n)) in ops.into_iter().enumerate() {
                let k = map.hash(key(n));
                if insert {
                    match map.get_mut(&k) {
                        Some(v) => *v = i,
                        None => map.insert_new(k, i),
                    }
                    model.insert(n, i);
                } else {
                    prop_assert_eq!(map.remove(&k), model.remove(&n));
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for n in 0..64 {
                let k = map.hash(key(n));
                prop_assert_eq!(map.get_mut(&k).copied(), model.get(&n).copied());
            }
        }
    }
}
