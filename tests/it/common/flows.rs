//! An independent reference for `flowvm export`: its own pcap frame parser and a literal
//! simulation of flowprobe's timers, written plainly (no code shared with the exporter).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Nanoseconds in a second.
pub(crate) const S: u64 = 1_000_000_000;

/// A capture in `testdata/pcap/`.
pub(crate) fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/pcap")
        .join(name)
}

/// What the L2 part of a flow key holds: MACs, EtherType (after the tags), outer VLAN ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct L2 {
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst_mac: [u8; 6],
    pub(crate) ethertype: u16,
    pub(crate) vlan: u16,
}

/// Addresses, protocol and ports: the flow key under `record l3,l4`.
pub(crate) type Key = (String, String, u8, u16, u16);

/// One frame as the meter must see it.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) l2: L2,
    /// `None` for non-IP frames.
    pub(crate) ip: Option<Key>,
    pub(crate) octets: u64,
    pub(crate) flags: u16,
    /// An 802.1ad (QinQ, 0x88a8) tag came first: meters that know only 802.1Q skip the frame.
    pub(crate) qinq: bool,
}

/// One captured frame.
pub(crate) struct Packet {
    pub(crate) ts: u64,
    /// `None` for frames the meter skips (cut, invalid).
    pub(crate) frame: Option<Frame>,
}

impl Packet {
    /// The `record l3,l4` key (non-IP frames are not metered).
    pub(crate) fn l3_l4(f: &Frame) -> Option<Key> {
        f.ip.clone()
    }

    /// The `record l2,l3,l4` key: every frame is metered, the IP part empty for non-IP ones.
    pub(crate) fn l2_l3_l4(f: &Frame) -> Option<(L2, Option<Key>)> {
        Some((f.l2.clone(), f.ip.clone()))
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac(f: &[u8], at: usize) -> Option<[u8; 6]> {
    f.get(at..at + 6)?.try_into().ok()
}

/// `None` when the frame's headers are cut or invalid; `orig_len` counts non-IP frames.
fn parse_frame(f: &[u8], orig_len: u64) -> Option<Frame> {
    let mut et = be16(f, 12)?;
    let mut at = 14;
    let mut vlan = 0;
    let qinq = et == 0x88a8;
    while et == 0x8100 || et == 0x88a8 {
        if at == 14 {
            vlan = be16(f, at)? & 0x0fff;
        }
        et = be16(f, at + 2)?;
        at += 4;
    }
    let l2 = L2 {
        dst_mac: mac(f, 0)?,
        src_mac: mac(f, 6)?,
        ethertype: et,
        vlan,
    };
    let ip = f.get(at..)?;
    let (src, dst, proto, l4, octets, fragment, offset) = match et {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 15) * 4;
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]).to_string();
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]).to_string();
            let fragment = be16(ip, 6)? & 0x3fff != 0;
            (
                src,
                dst,
                ip[9],
                ip.get(ihl..)?,
                u64::from(be16(ip, 2)?),
                fragment,
                be16(ip, 6)? & 0x1fff,
            )
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?).to_string();
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?).to_string();
            let (mut next, mut off) = (ip[6], 40);
            let (mut fragment, mut offset) = (false, 0);
            while matches!(next, 0 | 43 | 44 | 60) {
                if next == 44 {
                    // The Fragment header: 8 octets, offset in its top 13 bits (RFC 8200 §4.5).
                    fragment = true;
                    offset = be16(ip, off + 2)? >> 3;
                    next = *ip.get(off)?;
                    off += 8;
                } else {
                    next = *ip.get(off)?;
                    off += (usize::from(*ip.get(off + 1)?) + 1) * 8;
                }
            }
            let octets = u64::from(be16(ip, 4)?) + 40;
            (src, dst, next, ip.get(off..)?, octets, fragment, offset)
        }
        _ => {
            return Some(Frame {
                l2,
                ip: None,
                octets: orig_len,
                flags: 0,
                qinq,
            });
        }
    };
    // A later fragment has no transport header: ports 0. A first fragment (offset 0) carries
    // it, and is keyed by it as softflowd and flowprobe do; one too short for the whole header
    // keeps zeros, where an unfragmented packet cut as short is skipped.
    let (sport, dport, flags) = match transport(proto, l4) {
        _ if fragment && offset != 0 => (0, 0, 0),
        Some(t) => t,
        None if fragment => (0, 0, 0),
        None => return None,
    };
    Some(Frame {
        l2,
        ip: Some((src, dst, proto, sport, dport)),
        octets,
        flags,
        qinq,
    })
}

/// Ports (ICMP type × 256 + code) and TCP flags of a whole transport header at the start of
/// `l4`; `None` when it is cut.
fn transport(proto: u8, l4: &[u8]) -> Option<(u16, u16, u16)> {
    Some(match proto {
        6 => {
            l4.get(..20)?;
            (be16(l4, 0)?, be16(l4, 2)?, be16(l4, 12)? & 0x0fff)
        }
        17 => {
            l4.get(..8)?;
            (be16(l4, 0)?, be16(l4, 2)?, 0)
        }
        1 | 58 => {
            l4.get(..8)?;
            (0, be16(l4, 0)?, 0)
        }
        _ => (0, 0, 0),
    })
}

/// Classic pcap (microseconds, little-endian), as the generator writes it.
pub(crate) fn read_pcap(path: &Path) -> Vec<Packet> {
    pcap_frames(path)
        .into_iter()
        .map(|(ts, frame, orig_len)| Packet {
            ts,
            frame: parse_frame(&frame, orig_len),
        })
        .collect()
}

/// Every frame of a classic pcap (microseconds, little-endian): its time in nanoseconds, its
/// captured octets and its length on the wire.
pub(crate) fn pcap_frames(path: &Path) -> Vec<(u64, Vec<u8>, u64)> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "{}", path.display());
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let word = |o: usize| {
            u64::from(u32::from_le_bytes(
                bytes[at + o..at + o + 4].try_into().unwrap(),
            ))
        };
        let ts = word(0) * S + word(4) * 1_000;
        let len = usize::try_from(word(8)).unwrap();
        out.push((ts, bytes[at + 16..at + 16 + len].to_vec(), word(12)));
        at += 16 + len;
    }
    out
}

/// One exported record: the flow key, then TCP flags, packets, octets, start and end (ns since
/// the UNIX epoch), flowEndReason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Record<K> {
    pub(crate) key: K,
    pub(crate) flags: u16,
    pub(crate) packets: u64,
    pub(crate) octets: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) reason: u8,
}

struct Flow {
    start: u64,
    end: u64,
    packets: u64,
    octets: u64,
    flags: u16,
    last_seen: u64,
    next_active: u64,
}

/// Flowprobe's rules, checked against every flow at every frame: a deadline `d` takes effect at
/// the first frame whose second reaches `ceil(d / 1 s)`; idle beats active. `key` gives a
/// frame's flow key (`None`: not metered). The records come out sorted.
pub(crate) fn reference<K: Ord + Clone>(
    packets: &[Packet],
    active: u64,
    passive: u64,
    key: impl Fn(&Frame) -> Option<K>,
) -> Vec<Record<K>> {
    let tick = |t: u64| t.div_ceil(S);
    let mut flows: BTreeMap<K, Flow> = BTreeMap::new();
    let mut rows = Vec::new();
    let emit = |rows: &mut Vec<Record<K>>, k: &K, f: &mut Flow, reason| {
        if f.packets > 0 {
            rows.push(Record {
                key: k.clone(),
                flags: f.flags,
                packets: f.packets,
                octets: f.octets,
                start: f.start,
                end: f.end,
                reason,
            });
        }
        f.packets = 0;
        f.octets = 0;
        f.flags = 0;
    };
    let mut now = 0;
    for p in packets {
        now = now.max(p.ts);
        let now_tick = now / S;
        let mut idle = Vec::new();
        for (k, f) in &mut flows {
            if tick(f.last_seen + passive) <= now_tick {
                emit(&mut rows, k, f, 1);
                idle.push(k.clone());
            } else if tick(f.next_active) <= now_tick {
                emit(&mut rows, k, f, 2);
                while tick(f.next_active) <= now_tick {
                    f.next_active += active;
                }
            }
        }
        for k in idle {
            flows.remove(&k);
        }
        let Some(frame) = &p.frame else { continue };
        let Some(k) = key(frame) else { continue };
        let f = flows.entry(k).or_insert(Flow {
            start: p.ts,
            end: p.ts,
            packets: 0,
            octets: 0,
            flags: 0,
            last_seen: now,
            next_active: now + active,
        });
        if f.packets == 0 {
            f.start = p.ts;
        }
        f.end = p.ts;
        f.packets += 1;
        f.octets += frame.octets;
        f.flags |= frame.flags;
        f.last_seen = now;
    }
    for (k, f) in &mut flows {
        emit(&mut rows, k, f, 4);
    }
    rows.sort();
    rows
}
