//! Writes the captures in `testdata/pcap/` that the exporter's tests and benches replay:
//!
//! ```text
//! cargo run -p flowvm-exporter --example make_testdata -- testdata/pcap
//! ```
//!
//! Every frame is built with `etherparse`'s `PacketBuilder` (checksums included) from a fixed
//! script, so the files are the same on every run; a test regenerates them and compares.
#![expect(
    clippy::expect_used,
    reason = "a generator of fixed frames: a failure is a bug in the script, to see at once"
)]

use std::io::Write;
use std::path::Path;

use etherparse::{PacketBuilder, VlanId};

/// 2023-11-14T22:13:20Z: the first timestamp of every capture.
const T0_US: u64 = 1_700_000_000_000_000;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

struct Frame {
    at_us: u64,
    bytes: Vec<u8>,
    orig_len: usize,
}

fn frame(at_us: u64, bytes: Vec<u8>) -> Frame {
    let orig_len = bytes.len();
    Frame {
        at_us: T0_US + at_us,
        bytes,
        orig_len,
    }
}

fn build(
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), etherparse::err::packet::BuildWriteError>,
) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v).expect("building a frame in memory cannot fail");
    v
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 4] {
    [a, b, c, d]
}

fn v6(last: u16) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    build(|v| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(v, &vec![0x55; payload])
    })
}

fn tcp4(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: &str,
    payload: usize,
) -> Vec<u8> {
    build(|v| {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 65_000);
        for flag in flags.chars() {
            b = match flag {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'P' => b.psh(),
                'R' => b.rst(),
                _ => b,
            };
        }
        b.write(v, &vec![0x66; payload])
    })
}

fn tcp6(src: u16, dst: u16, sport: u16, dport: u16, flags: &str, payload: usize) -> Vec<u8> {
    build(|v| {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(v6(src), v6(dst), 64)
            .tcp(sport, dport, 1000, 65_000);
        for flag in flags.chars() {
            b = match flag {
                'S' => b.syn(),
                'A' => b.ack(1),
                'F' => b.fin(),
                'P' => b.psh(),
                _ => b,
            };
        }
        b.write(v, &vec![0x77; payload])
    })
}

fn udp6(src: u16, dst: u16, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    build(|v| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(v6(src), v6(dst), 64)
            .udp(sport, dport)
            .write(v, &vec![0x88; payload])
    })
}

/// An IPv6 UDP datagram behind an 8-octet hop-by-hop options header.
fn udp6_hop_by_hop(src: u16, dst: u16, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut f = udp6(src, dst, sport, dport, payload);
    f[14 + 6] = 0; // next header: hop-by-hop
    let payload_len = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&payload_len.to_be_bytes());
    // next header UDP, length 0 (8 octets), a PadN option of 4 octets.
    f.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
    f
}

fn mixed() -> Vec<Frame> {
    let (a, b, c) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2), v4(10, 0, 0, 3));
    let mut f = vec![
        // A TCP connection, both directions.
        frame(0, tcp4(a, b, 40_000, 80, "S", 0)),
        frame(1_000, tcp4(b, a, 80, 40_000, "SA", 0)),
        frame(2_000, tcp4(a, b, 40_000, 80, "A", 0)),
        frame(3_000, tcp4(a, b, 40_000, 80, "PA", 100)),
        frame(4_000, tcp4(b, a, 80, 40_000, "PA", 1_200)),
        frame(5_000, tcp4(a, b, 40_000, 80, "FA", 0)),
        frame(6_000, tcp4(b, a, 80, 40_000, "FA", 0)),
        // UDP (mDNS) and ICMP echo.
        frame(100_000, udp4(a, v4(224, 0, 0, 251), 5353, 5353, 40)),
        frame(1_100_000, udp4(a, v4(224, 0, 0, 251), 5353, 5353, 60)),
        frame(2_100_000, udp4(a, v4(224, 0, 0, 251), 5353, 5353, 80)),
        frame(
            200_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv4(a, c, 64)
                    .icmpv4_echo_request(7, 1)
                    .write(v, &[1; 56])
            }),
        ),
        frame(
            201_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_B, MAC_A)
                    .ipv4(c, a, 64)
                    .icmpv4_echo_reply(7, 1)
                    .write(v, &[1; 56])
            }),
        ),
        // IPv6: TCP, UDP behind a hop-by-hop header, ICMPv6 echo.
        frame(300_000, tcp6(1, 2, 40_001, 443, "S", 0)),
        frame(301_000, tcp6(1, 2, 40_001, 443, "A", 0)),
        frame(302_000, tcp6(1, 2, 40_001, 443, "PA", 517)),
        frame(1_302_000, tcp6(1, 2, 40_001, 443, "FA", 0)),
        frame(400_000, udp6_hop_by_hop(1, 3, 546, 547, 30)),
        frame(1_400_000, udp6_hop_by_hop(1, 3, 546, 547, 30)),
        frame(
            500_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .ipv6(v6(1), v6(2), 64)
                    .icmpv6_echo_request(9, 1)
                    .write(v, &[2; 32])
            }),
        ),
        // 802.1Q and 802.1ad (QinQ) tagged.
        frame(
            600_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .single_vlan(VlanId::try_new(100).expect("valid VLAN ID"))
                    .ipv4(v4(192, 168, 100, 1), v4(192, 168, 100, 2), 64)
                    .udp(1_000, 2_000)
                    .write(v, &[3; 20])
            }),
        ),
        frame(
            1_600_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .single_vlan(VlanId::try_new(100).expect("valid VLAN ID"))
                    .ipv4(v4(192, 168, 100, 1), v4(192, 168, 100, 2), 64)
                    .udp(1_000, 2_000)
                    .write(v, &[3; 200])
            }),
        ),
        frame(
            700_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .double_vlan(
                        VlanId::try_new(200).expect("valid VLAN ID"),
                        VlanId::try_new(300).expect("valid VLAN ID"),
                    )
                    .ipv4(v4(172, 16, 0, 1), v4(172, 16, 0, 2), 64)
                    .tcp(50_000, 22, 1, 1_000)
                    .syn()
                    .write(v, &[])
            }),
        ),
        frame(
            701_000,
            build(|v| {
                PacketBuilder::ethernet2(MAC_A, MAC_B)
                    .double_vlan(
                        VlanId::try_new(200).expect("valid VLAN ID"),
                        VlanId::try_new(300).expect("valid VLAN ID"),
                    )
                    .ipv4(v4(172, 16, 0, 1), v4(172, 16, 0, 2), 64)
                    .tcp(50_000, 22, 1, 1_000)
                    .ack(1)
                    .write(v, &[4; 48])
            }),
        ),
    ];
    // An ARP request: not IP, so metered only with `record l2`.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&a);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&b);
    f.push(frame(800_000, arp));
    // A frame cut inside its IPv4 header, and one whose IP version is 7: both skipped.
    let whole = udp4(a, b, 9, 9, 10);
    f.push(frame(900_000, whole[..24].to_vec()));
    let mut bad = whole;
    bad[14] = 0x75;
    f.push(frame(900_001, bad));
    // A UDP datagram in two IPv4 fragments: the first is keyed by its ports, the second has
    // none.
    let mut first = udp4(a, c, 7_000, 7_001, 64);
    first[14 + 6] = 0x20; // MF
    first.truncate(14 + 20 + 8 + 32);
    first[16..18].copy_from_slice(&60_u16.to_be_bytes());
    f.push(frame(950_000, first));
    let mut second = udp4(a, c, 7_000, 7_001, 0);
    second.truncate(14 + 20);
    second.extend_from_slice(&[0x55; 40]);
    second[14 + 6..14 + 8].copy_from_slice(&5_u16.to_be_bytes()); // offset 40 octets
    second[16..18].copy_from_slice(&60_u16.to_be_bytes());
    f.push(frame(951_000, second));
    f.sort_by_key(|f| f.at_us);
    f
}

fn long() -> Vec<Frame> {
    let mut f = Vec::new();
    // A UDP flow with a packet every 500 ms for 65 s: several active intervals.
    for i in 0..130 {
        f.push(frame(
            i * 500_000,
            udp4(
                v4(10, 1, 0, 1),
                v4(10, 1, 0, 2),
                1_000,
                2_000,
                100 + usize::try_from(i % 7).expect("below 7"),
            ),
        ));
    }
    // An IPv6 TCP flow every 3 s for 60 s, silent 45 s, then 20 s more: it goes idle and a
    // new flow of the same key starts.
    for i in 0..=20 {
        f.push(frame(
            i * 3_000_000 + 250_000,
            tcp6(10, 20, 33_000, 443, "A", 64),
        ));
    }
    for i in 0..=10 {
        f.push(frame(
            105_000_000 + i * 2_000_000,
            tcp6(10, 20, 33_000, 443, "PA", 128),
        ));
    }
    // A short UDP flow at the start that idles out while the others run.
    for i in 0..3 {
        f.push(frame(
            1_000_000 + i * 100_000,
            udp4(v4(10, 2, 0, 1), v4(10, 2, 0, 2), 53, 53, 30),
        ));
    }
    f.sort_by_key(|f| f.at_us);
    f
}

fn many() -> Vec<Frame> {
    let mut f = Vec::new();
    for round in 0..2_u64 {
        for n in 0..2_000_u16 {
            let at = round * 1_000_000 + u64::from(n) * 400;
            let bytes = if n % 3 == 0 {
                tcp6(0x100 + n, 0x9000, 10_000 + n, 443, "A", usize::from(n % 50))
            } else {
                let [hi, lo] = n.to_be_bytes();
                udp4(
                    v4(10, 3, hi, lo),
                    v4(10, 4, 0, 1),
                    20_000 + n,
                    53,
                    usize::from(n % 90),
                )
            };
            f.push(frame(at, bytes));
        }
    }
    f
}

fn write_pcap(path: &Path, frames: &[Frame]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2_u16.to_le_bytes());
    out.extend_from_slice(&4_u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535_u32.to_le_bytes());
    out.extend_from_slice(&1_u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for f in frames {
        out.extend_from_slice(
            &u32::try_from(f.at_us / 1_000_000)
                .expect("fits")
                .to_le_bytes(),
        );
        out.extend_from_slice(
            &u32::try_from(f.at_us % 1_000_000)
                .expect("fits")
                .to_le_bytes(),
        );
        out.extend_from_slice(&u32::try_from(f.bytes.len()).expect("fits").to_le_bytes());
        out.extend_from_slice(&u32::try_from(f.orig_len).expect("fits").to_le_bytes());
        out.extend_from_slice(&f.bytes);
    }
    std::fs::File::create(path)?.write_all(&out)
}

/// The same frames as pcapng: a section header, one Ethernet interface with nanosecond
/// timestamps (`if_tsresol` 9), then enhanced packet blocks.
fn write_pcapng(path: &Path, frames: &[Frame]) -> std::io::Result<()> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = u32::try_from(12 + body.len().next_multiple_of(4)).expect("fits");
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + body.len().next_multiple_of(4) - body.len(), 0);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4d_u32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1_u16.to_le_bytes());
    shb.extend_from_slice(&0_u16.to_le_bytes());
    shb.extend_from_slice(&(-1_i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = 1_u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&0_u16.to_le_bytes());
    idb.extend_from_slice(&65_535_u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut out, 1, &idb);
    for f in frames {
        let ns = f.at_us * 1_000;
        let mut epb = 0_u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&u32::try_from(ns >> 32).expect("fits").to_le_bytes());
        epb.extend_from_slice(&u32::try_from(ns & 0xffff_ffff).expect("fits").to_le_bytes());
        epb.extend_from_slice(&u32::try_from(f.bytes.len()).expect("fits").to_le_bytes());
        epb.extend_from_slice(&u32::try_from(f.orig_len).expect("fits").to_le_bytes());
        epb.extend_from_slice(&f.bytes);
        epb.resize(epb.len().next_multiple_of(4), 0);
        block(&mut out, 6, &epb);
    }
    std::fs::File::create(path)?.write_all(&out)
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "testdata/pcap".to_owned());
    write_all(Path::new(&dir))
}

/// Writes every capture into `dir`.
pub(crate) fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mixed = mixed();
    write_pcap(&dir.join("mixed.pcap"), &mixed)?;
    write_pcapng(&dir.join("mixed.pcapng"), &mixed)?;
    write_pcap(&dir.join("long.pcap"), &long())?;
    write_pcap(&dir.join("many.pcap"), &many())?;
    Ok(())
}
