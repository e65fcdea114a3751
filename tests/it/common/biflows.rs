//! The flows of meters descended from softflowd (softflowd itself, pmacct's nfprobe), from
//! the frames `flows.rs` parses: a connection is one flow with a record per direction, both
//! directions stamped with the connection's first and last packet.

use std::collections::BTreeMap;

use crate::common::flows::{Frame, Key, Packet};

/// Nanoseconds in a millisecond.
pub(crate) const MS: u64 = 1_000_000;

/// One direction of a flow as softflowd exports it: key, TCP flags (one octet), packets,
/// octets, start and end (ns; softflowd gives both directions of a connection the times of
/// the whole connection), and for `-T ether`/`-T vlan` the MACs and VLAN of the endpoints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Row {
    pub(crate) key: Key,
    pub(crate) flags: u8,
    pub(crate) packets: u64,
    pub(crate) octets: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) macs: (String, String),
    pub(crate) vlan: u16,
}

/// softflowd's key of a frame: it reads 802.1Q but not 802.1ad.
pub(crate) fn softflowd_key(f: &Frame) -> Option<Key> {
    if f.qinq {
        return None;
    }
    f.ip.clone()
}

/// softflowd in `-r` mode: no timer fires (they run on the wall clock), every flow is
/// exported at the end of the file; a connection is one flow with a record per direction
/// that saw packets. With `l2` (`-T vlan`, `-T ether`) the VLAN and each endpoint's MAC are
/// part of the flow key.
pub(crate) fn reference(packets: &[Packet], l2: bool) -> Vec<Row> {
    // An endpoint: address, port, MAC (with `l2`).
    type Endpoint = (String, u16, String);
    // (protocol, VLAN, lower endpoint, higher endpoint) -> directions, start, end.
    type Connection = (u8, u16, Endpoint, Endpoint);
    let mut flows: BTreeMap<Connection, (BTreeMap<Key, Row>, u64, u64)> = BTreeMap::new();
    for p in packets {
        let Some(frame) = &p.frame else { continue };
        let Some(key) = softflowd_key(frame) else {
            continue;
        };
        let (src_mac, dst_mac) = (
            super::mac_text(&frame.l2.src_mac),
            super::mac_text(&frame.l2.dst_mac),
        );
        let (a, b) = if l2 {
            (
                (key.0.clone(), key.3, src_mac.clone()),
                (key.1.clone(), key.4, dst_mac.clone()),
            )
        } else {
            (
                (key.0.clone(), key.3, String::new()),
                (key.1.clone(), key.4, String::new()),
            )
        };
        let vlan = if l2 { frame.l2.vlan } else { 0 };
        let connection = if a <= b {
            (key.2, vlan, a, b)
        } else {
            (key.2, vlan, b, a)
        };
        let (directions, _, end) = flows
            .entry(connection)
            .or_insert_with(|| (BTreeMap::new(), p.ts, p.ts));
        *end = p.ts;
        let row = directions.entry(key.clone()).or_insert(Row {
            key,
            flags: 0,
            packets: 0,
            octets: 0,
            start: 0,
            end: 0,
            macs: (src_mac, dst_mac),
            vlan: frame.l2.vlan,
        });
        row.packets += 1;
        row.octets += frame.octets;
        row.flags |= u8::try_from(frame.flags & 0xff).unwrap();
    }
    let mut rows = Vec::new();
    for (directions, start, end) in flows.into_values() {
        for mut row in directions.into_values() {
            row.start = start;
            row.end = end;
            rows.push(row);
        }
    }
    rows.sort();
    rows
}
