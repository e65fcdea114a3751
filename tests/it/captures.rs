//! The corpus of real devices' captures in `testdata/captures/` (see its `PROVENANCE.md`):
//! every Data Record that an independent walker (below, RFC 7011, RFC 3954 and NetFlow v5's
//! layout, sharing nothing with flowvm's decoder) finds decodable reaches the archive, offline through `flowvm decode`, and for the
//! Cisco router's capture also over UDP into a running collector on its defaults.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::flows::pcap_frames;
use common::{Running, read_archive, scratch};
use flowvm::config::Config;
use flowvm::telemetry::DropReason;

/// The captures of the corpus: IPFIX, NetFlow v9 and v5.
fn captures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    files
}

/// The Cisco router's capture: two exporters, Observation Domains, options templates,
/// enterprise and variable-length fields, thousands of records before their templates.
fn cisco() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/captures/netflow-parser-cisco-avc-ipfix.pcap")
}

/// One UDP datagram of a capture: from, to, payload.
struct Datagram {
    source: SocketAddr,
    destination: SocketAddr,
    payload: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The UDP datagram an Ethernet frame (802.1Q tags allowed) carries over IPv4 or IPv6, if any.
fn datagram(frame: &[u8]) -> Option<Datagram> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    while matches!(ethertype, 0x8100 | 0x88a8) {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    let ip = frame.get(at + 2..)?;
    let (source, destination, udp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 15) * 4;
            if *ip.get(9)? != 17 || be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::from(be32(ip, 12)?));
            let dst = IpAddr::V4(Ipv4Addr::from(be32(ip, 16)?));
            (src, dst, ip.get(ihl..)?)
        }
        0x86dd => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?));
            (src, dst, ip.get(40..)?)
        }
        _ => return None,
    };
    let len = usize::from(be16(udp, 4)?);
    Some(Datagram {
        source: SocketAddr::new(source, be16(udp, 0)?),
        destination: SocketAddr::new(destination, be16(udp, 2)?),
        payload: udp.get(8..len)?.to_vec(),
    })
}

/// Every export datagram (IPFIX, NetFlow v9 or v5) of a capture, in order.
fn export_datagrams(path: &Path) -> Vec<Datagram> {
    pcap_frames(path)
        .iter()
        .filter_map(|(_, frame, _)| datagram(frame))
        .filter(|d| matches!(d.payload.get(..2), Some([0, 5 | 9 | 10])))
        .collect()
}

/// What the walker found in a capture.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    templates: u64,
    options_templates: u64,
    /// Data Records that can be decoded: their template is defined somewhere in the capture.
    records: u64,
    /// Of those, the ones that arrived before their template.
    before: u64,
    /// Data Sets whose template never arrives.
    undecodable_sets: u64,
}

/// A template's Field Lengths (65535 for variable length).
type Lengths = Vec<u16>;

/// Records in a Data Set's content under `lengths`, walked one field at a time (RFC 7011 §3.3.1,
/// §7): records follow one another while at least the shortest record fits; the rest is padding.
fn records(lengths: &[u16], body: &[u8]) -> u64 {
    let min: usize = lengths
        .iter()
        .map(|&l| if l == 65_535 { 1 } else { usize::from(l) })
        .sum();
    let (mut at, mut n) = (0, 0);
    while min > 0 && body.len() - at >= min {
        for &l in lengths {
            let len = match l {
                65_535 => match body[at] {
                    255 => {
                        at += 3;
                        usize::from(be16(body, at - 2).unwrap())
                    }
                    short => {
                        at += 1;
                        usize::from(short)
                    }
                },
                fixed => usize::from(fixed),
            };
            at += len;
            assert!(at <= body.len(), "a record runs past its Set");
        }
        n += 1;
    }
    n
}

/// What a packet holds, as the walker reads it.
enum Walked {
    /// A (Options) Template Record: its ID and Field Lengths.
    Template(u16, Lengths, bool),
    /// A Data Set or Data FlowSet for a template, its content.
    Data(u16, Vec<u8>),
}

/// The Observation Domain and the items of an IPFIX Message (RFC 7011 §3).
fn ipfix_items(m: &[u8]) -> (u32, Vec<Walked>) {
    let length = usize::from(be16(m, 2).unwrap());
    let mut items = Vec::new();
    let mut at = 16;
    while at + 4 <= length {
        let (id, set_len) = (be16(m, at).unwrap(), usize::from(be16(m, at + 2).unwrap()));
        let body = &m[at + 4..at + set_len];
        at += set_len;
        if id == 2 || id == 3 {
            let mut r = 0;
            while r + 4 <= body.len() {
                let template = be16(body, r).unwrap();
                let count = usize::from(be16(body, r + 2).unwrap());
                r += if id == 3 { 6 } else { 4 };
                if count == 0 {
                    continue; // a withdrawal: ignored over UDP (§8.4)
                }
                let mut lengths = Vec::new();
                for _ in 0..count {
                    let element = be16(body, r).unwrap();
                    lengths.push(be16(body, r + 2).unwrap());
                    r += if element & 0x8000 != 0 { 8 } else { 4 };
                }
                items.push(Walked::Template(template, lengths, id == 3));
            }
        } else if id >= 256 {
            items.push(Walked::Data(id, body.to_vec()));
        }
    }
    (be32(m, 12).unwrap(), items)
}

/// The Source ID and the items of a NetFlow v9 packet (RFC 3954 §5, §6): FlowSets to the end of
/// the datagram; an options template gives its scope and option lengths in octets.
fn netflow9_items(p: &[u8]) -> (u32, Vec<Walked>) {
    let mut items = Vec::new();
    let mut at = 20;
    while at + 4 <= p.len() {
        let (id, set_len) = (be16(p, at).unwrap(), usize::from(be16(p, at + 2).unwrap()));
        let body = &p[at + 4..at + set_len];
        at += set_len;
        let mut r = 0;
        match id {
            0 => {
                while r + 4 <= body.len() && be16(body, r).unwrap() >= 256 {
                    let template = be16(body, r).unwrap();
                    let count = usize::from(be16(body, r + 2).unwrap());
                    let lengths = (0..count)
                        .map(|k| be16(body, r + 6 + 4 * k).unwrap())
                        .collect();
                    r += 4 + 4 * count;
                    items.push(Walked::Template(template, lengths, false));
                }
            }
            1 => {
                while r + 6 <= body.len() && be16(body, r).unwrap() >= 256 {
                    let template = be16(body, r).unwrap();
                    let fields =
                        usize::from(be16(body, r + 2).unwrap() + be16(body, r + 4).unwrap()) / 4;
                    let lengths = (0..fields)
                        .map(|k| be16(body, r + 8 + 4 * k).unwrap())
                        .collect();
                    r += 6 + 4 * fields;
                    items.push(Walked::Template(template, lengths, true));
                }
            }
            id if id >= 256 => items.push(Walked::Data(id, body.to_vec())),
            _ => {}
        }
    }
    (be32(p, 16).unwrap(), items)
}

/// Walks every export packet of a capture by its protocol's specification alone: templates are
/// keyed by exporter, collector, Observation Domain (v9: Source ID) and Template ID (RFC 7011
/// §8.4, RFC 3954 §5.1), a Data Set that arrives before its template counts once the template
/// comes, and a v5 packet holds the records its count says.
fn walk(path: &Path) -> Tally {
    type Key = (SocketAddr, SocketAddr, u32, u16);
    let mut t = Tally::default();
    let mut templates: HashMap<Key, Lengths> = HashMap::new();
    let mut waiting: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
    for d in export_datagrams(path) {
        let m = &d.payload;
        t.messages += 1;
        let (domain, items) = match m[1] {
            10 => ipfix_items(m),
            9 => netflow9_items(m),
            _ => {
                t.records += u64::from(be16(m, 2).unwrap());
                continue;
            }
        };
        let key = |template: u16| (d.source, d.destination, domain, template);
        for item in items {
            match item {
                Walked::Template(template, lengths, options) => {
                    if options {
                        t.options_templates += 1;
                    } else {
                        t.templates += 1;
                    }
                    for held in waiting.remove(&key(template)).unwrap_or_default() {
                        let n = records(&lengths, &held);
                        t.records += n;
                        t.before += n;
                    }
                    templates.insert(key(template), lengths);
                }
                Walked::Data(id, body) => match templates.get(&key(id)) {
                    Some(lengths) => t.records += records(lengths, &body),
                    None => waiting.entry(key(id)).or_default().push(body),
                },
            }
        }
    }
    t.undecodable_sets = waiting.values().map(|v| v.len() as u64).sum();
    t
}

fn rows(out: &Path) -> u64 {
    read_archive(out).iter().map(|b| b.num_rows() as u64).sum()
}

#[test]
fn every_decodable_record_of_every_real_capture_is_archived() {
    let mut table = vec!["| capture | packets | Template Records (options) | Data Records | before their Template | Sets never decodable | archived |".to_owned()];
    for path in captures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = walk(&path);
        let out = scratch(&format!("capture-{name}"));
        let decode = Command::new(env!("CARGO_BIN_EXE_flowvm"))
            .args([
                "decode",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            decode.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&decode.stderr)
        );
        let archived = rows(&out);
        table.push(format!(
            "| `{name}` | {} | {} ({}) | {} | {} | {} | {archived} |",
            expected.messages,
            expected.templates + expected.options_templates,
            expected.options_templates,
            expected.records,
            expected.before,
            expected.undecodable_sets,
        ));
        assert_eq!(archived, expected.records, "{name}: {expected:?}");
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("{}", table.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cisco_routers_capture_over_udp_loses_nothing_on_the_defaults() {
    // Thousands of records arrive before their templates, hundreds of Sets per template, over
    // several Observation Domains; an options template carries samplerId (unsigned8) in 4
    // octets. On the defaults, every decodable record is archived.
    let path = cisco();
    let expected = walk(&path);
    assert!(expected.before > 9_000, "{expected:?}");
    let out = scratch("capture-cisco-udp");
    let c = Running::start(&out, Config::default()).await;
    // Each exporter of the capture (address and port) is one socket here, so each stays its own
    // Transport Session.
    let datagrams = export_datagrams(&path);
    let mut sockets = HashMap::new();
    for d in &datagrams {
        if let std::collections::hash_map::Entry::Vacant(e) = sockets.entry(d.source) {
            e.insert(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
    }
    for (n, d) in datagrams.iter().enumerate() {
        sockets[&d.source].send_to(&d.payload, c.udp).await.unwrap();
        // Paced by the collector, not the clock, so the kernel's buffer never overflows.
        if n % 200 == 199 {
            let sent = n as u64 + 1;
            c.until("the collector to catch up", |k| {
                k.messages_received.get() >= sent
            })
            .await;
        }
    }
    c.until("every decodable record", |k| {
        k.records_decoded.get() >= expected.records
    })
    .await;
    let k = c.stop().await;
    let text = k.render();
    assert_eq!(k.records_decoded.get(), expected.records, "{text}");
    assert_eq!(k.records_decoded_late.get(), expected.before, "{text}");
    assert_eq!(k.dropped(DropReason::PendingOverflow), 0, "{text}");
    assert_eq!(k.dropped(DropReason::PendingExpired), 0, "{text}");
    assert_eq!(
        k.dropped(DropReason::PendingUnresolved),
        expected.undecodable_sets,
        "{text}"
    );
    assert_eq!(k.templates_rejected.get(), 0, "{text}");
    assert_eq!(k.messages_dropped.get(), 0, "{text}");
    assert_eq!(rows(&out), expected.records);
    // samplerId in 4 octets lands in a UInt32 column under its own name.
    let batches = read_archive(&out);
    let sampler = batches
        .iter()
        .filter_map(|b| b.column_by_name("samplerId"))
        .map(|c| c.data_type().clone())
        .collect::<Vec<_>>();
    assert!(
        sampler.contains(&arrow_schema::DataType::UInt32),
        "{sampler:?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
