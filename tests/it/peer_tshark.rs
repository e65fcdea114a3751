//! Other decoders of `flowvm export`: the real binary replays a testdata capture to a UDP
//! socket (or TCP listener) this test owns, the test writes what arrives into a pcap of its
//! own framing (raw IPv4, linktype 101), and tshark (`-d udp.port==PORT,cflow`) and
//! python-ipfix (`ipfix.message` over the payloads) decode it, through
//! `tests/peers/tshark_records.py`. Every record of every Message must carry the values of the
//! independent reference (`common::flows`), the templates the fields flowvm means, the
//! sequence numbers count records without a gap, and tshark must raise no expert item
//! (malformed packet, "Unexpected flow sequence") above the TCP handshake's chat.
//!
//! Peer quirks handled here (see the script): tshark truncates a nanosecond fraction through a
//! floating-point divisor, so an exact .5 s reads as .499999999 s (1 ns low, allowed for
//! tshark only); python-ipfix reads NTP seconds as UNIX seconds (70 years late) through a
//! float into a datetime (the script takes the 70 years off; within 1 µs allowed).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::flows::{Key, L2, Packet, Record, S, pcap, read_pcap, reference};
use common::scratch;
use common::wire_capture::{CAPTURE_COLLECTOR_PORT, Received, write_pcap};

/// Debian's Python, the one python3-ipfix is installed for (not pyenv's `python3`).
const PYTHON: &str = "/usr/bin/python3";

/// Fails with the fix when tshark or python3-ipfix is missing.
fn require_peers() {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(
        works("tshark", &["--version"]),
        "tshark is missing: run sh tests/setup.sh"
    );
    assert!(
        works(PYTHON, &["-c", "import ipfix.message"]),
        "python3-ipfix is missing for {PYTHON}: run sh tests/setup.sh"
    );
}

/// Runs the real binary on `pcap_name` towards a socket of ours; returns what arrived and the
/// exporter's summary.
fn capture_export(pcap_name: &str, tcp: bool, extra: &[&str]) -> (Received, String) {
    let stop = Arc::new(AtomicBool::new(false));
    let (port, receiver) = if tcp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = std::thread::spawn(move || {
            // The exporter connects at start-up and closes at the end of the capture.
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut chunks = Vec::new();
            let mut buf = vec![0; 1400];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return Received { chunks };
                }
                chunks.push(buf[..n].to_vec());
            }
        });
        (port, receiver)
    } else {
        let socket = common::loopback_udp_receiver();
        let port = socket.local_addr().unwrap().port();
        let flag = Arc::clone(&stop);
        let receiver = std::thread::spawn(move || {
            let mut chunks = Vec::new();
            let mut buf = vec![0; 65_535];
            // Until told to stop and then quiet for one timeout: bounded by the exporter's run.
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        chunks.push(buf[..n].to_vec());
                    }
                    Err(_) if flag.load(Ordering::Relaxed) => {
                        return Received { chunks };
                    }
                    Err(_) => {}
                }
            }
        });
        (port, receiver)
    };
    let path = pcap(pcap_name);
    let collector = format!("127.0.0.1:{port}");
    let mut args = vec![
        "export",
        "--pcap",
        path.to_str().unwrap(),
        "--collector",
        &collector,
        "--src-port",
        "0",
        "--active",
        "10",
        "--passive",
        "30",
    ];
    if tcp {
        args.push("--transport=tcp");
    }
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(&args)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flowvm {args:?} failed:\n{summary}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, Ordering::Relaxed);
    (receiver.join().unwrap(), summary)
}

/// The script's lines for one decoder.
fn decode(decoder: &str, capture: &Path, port: u16, tcp: bool) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/tshark_records.py");
    let out = Command::new(PYTHON)
        .arg(script)
        .args([decoder, capture.to_str().unwrap(), &port.to_string()])
        .arg(if tcp { "tcp" } else { "udp" })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{decoder} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A reference record in the script's vocabulary.
fn line(l2: Option<&L2>, ip: Option<&Key>, r: &Record<impl Ord>) -> String {
    let template = match ip {
        Some(k) if k.0.contains(':') => 257,
        Some(_) => 256,
        None => 258,
    };
    let mut pairs = vec![format!("template={template}")];
    if let Some((src, dst, proto, sport, dport)) = ip {
        pairs.extend([
            format!("src={src}"),
            format!("dst={dst}"),
            format!("proto={proto}"),
            format!("sport={sport}"),
            format!("dport={dport}"),
            format!("flags={}", r.flags),
        ]);
    }
    pairs.extend([
        format!("packets={}", r.packets),
        format!("octets={}", r.octets),
        format!("start={}", r.start),
        format!("end={}", r.end),
        format!("reason={}", r.reason),
    ]);
    if let Some(l2) = l2 {
        pairs.extend([
            format!("srcmac={}", common::mac_text(&l2.src_mac)),
            format!("dstmac={}", common::mac_text(&l2.dst_mac)),
            format!("ethertype={}", l2.ethertype),
            format!("vlan={}", l2.vlan),
        ]);
    }
    pairs.extend(["in=0".to_owned(), "out=0".to_owned()]);
    pairs.join("\t")
}

/// The reference's records for `pcap_name` under `--record l3,l4` or `l2,l3,l4`.
fn expected(pcap_name: &str, l2: bool) -> Vec<String> {
    let packets = read_pcap(&pcap(pcap_name));
    let mut lines: Vec<String> = if l2 {
        reference(&packets, 10 * S, 30 * S, Packet::l2_l3_l4)
            .iter()
            .map(|r| line(Some(&r.key.0), r.key.1.as_ref(), r))
            .collect()
    } else {
        reference(&packets, 10 * S, 30 * S, Packet::l3_l4)
            .iter()
            .map(|r| line(None, Some(&r.key), r))
            .collect()
    };
    lines.sort();
    lines
}

/// The fields flowvm means for each template (IANA element/length, in order).
fn templates(l2: bool) -> BTreeMap<u16, String> {
    let common = "10/4,14/4,156/8,157/8,2/8,1/8,136/1";
    let l2_fields = if l2 { ",56/6,80/6,256/2,58/2" } else { "" };
    let l4 = "4/1,7/2,11/2,6/2";
    let mut t = BTreeMap::from([
        (256, format!("{common}{l2_fields},8/4,12/4,{l4}")),
        (257, format!("{common}{l2_fields},27/16,28/16,{l4}")),
    ]);
    if l2 {
        t.insert(258, format!("{common}{l2_fields}"));
    }
    t
}

/// Start and end differ by at most `slack` ns (low only when `low_only`), the rest equal.
fn same_record(got: &str, want: &str, slack: u64, low_only: bool) -> bool {
    let parse = |l: &str| -> Vec<(String, String)> {
        l.split('\t')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    };
    let (g, w) = (parse(got), parse(want));
    g.len() == w.len()
        && g.iter().zip(&w).all(|((gk, gv), (wk, wv))| {
            if gk != wk {
                return false;
            }
            if gk == "start" || gk == "end" {
                let (gv, wv): (u64, u64) = (gv.parse().unwrap(), wv.parse().unwrap());
                let low = wv.saturating_sub(gv);
                let high = gv.saturating_sub(wv);
                low <= slack && (high == 0 || (!low_only && high <= slack))
            } else {
                gv == wv
            }
        })
}

/// Checks one decoder's lines: records equal the reference (within `slack` on times), every
/// template as meant, sequence numbers without a gap, no expert item. Returns the Messages.
fn check_decoder(
    decoder: &str,
    lines: &[String],
    want: &[String],
    l2: bool,
    slack: (u64, bool),
) -> usize {
    let mut records: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("template="))
        .collect();
    records.sort();
    assert_eq!(records.len(), want.len(), "{decoder}: {lines:#?}");
    for (g, w) in records.iter().zip(want) {
        assert!(
            same_record(g, w, slack.0, slack.1),
            "{decoder} decoded\n  {g}\nthe reference says\n  {w}"
        );
    }
    let meant = templates(l2);
    let mut seen = BTreeSet::new();
    let mut next_sequence: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages = 0;
    for l in lines {
        let words: Vec<&str> = l.split(' ').collect();
        match words[..] {
            ["template", id, fields] => {
                let id: u16 = id.parse().unwrap();
                assert_eq!(meant.get(&id).map(String::as_str), Some(fields), "{l}");
                seen.insert(id);
            }
            ["message", sequence, domain, count] => {
                // RFC 7011 §3.1: the Data Records sent before this Message, per domain.
                let next = next_sequence.entry(domain.to_owned()).or_default();
                assert_eq!(sequence.parse::<u64>().unwrap(), *next, "{decoder}: {l}");
                *next += count.parse::<u64>().unwrap();
                messages += 1;
            }
            ["expert", "chat", ..] => {}
            _ if l.starts_with("expert") => panic!("{decoder}: {l}"),
            _ => assert!(l.starts_with("template="), "{decoder}: {l}"),
        }
    }
    if decoder == "tshark" {
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            meant.keys().copied().collect::<Vec<_>>()
        );
    }
    messages
}

/// Exports `pcap_name` with `record` and `mtu`, captures it and checks both decoders.
fn decoders_read_what_flowvm_meant(pcap_name: &str, record: &str, mtu: &str, tcp: bool) {
    require_peers();
    let (received, summary) =
        capture_export(pcap_name, tcp, &["--record", record, "--path-mtu", mtu]);
    let name = format!(
        "tshark-{}-{record}-{mtu}-{}",
        pcap_name.trim_end_matches(".pcap"),
        if tcp { "tcp" } else { "udp" }
    );
    let dir = scratch(&name);
    let capture: PathBuf = dir.join("export.pcap");
    // The capture shows the collector on a port of its own, not the one the OS picked.
    let port = CAPTURE_COLLECTOR_PORT;
    write_pcap(&capture, &received, port, tcp);
    let l2 = record.contains("l2");
    let want = expected(pcap_name, l2);
    assert!(!want.is_empty());
    if !tcp {
        let mtu: usize = mtu.parse().unwrap();
        assert!(
            received.chunks.iter().all(|d| d.len() + 28 <= mtu),
            "a Message over the path MTU"
        );
    }
    let tshark = decode("tshark", &capture, port, tcp);
    let messages = check_decoder("tshark", &tshark, &want, l2, (1, true));
    let python = decode("python-ipfix", &capture, port, tcp);
    assert_eq!(
        check_decoder("python-ipfix", &python, &want, l2, (1_000, false)),
        messages
    );
    if !tcp {
        assert_eq!(messages, received.chunks.len(), "one Message a datagram");
    }
    assert!(
        summary.contains(&format!("records {}", want.len())),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tshark_and_python_ipfix_decode_l3_l4_over_udp_mtu_512() {
    decoders_read_what_flowvm_meant("mixed.pcap", "l3,l4", "512", false);
    decoders_read_what_flowvm_meant("many.pcap", "l3,l4", "512", false);
}

#[test]
fn tshark_and_python_ipfix_decode_l3_l4_over_udp_mtu_1450() {
    decoders_read_what_flowvm_meant("long.pcap", "l3,l4", "1450", false);
    decoders_read_what_flowvm_meant("many.pcap", "l3,l4", "1450", false);
}

#[test]
fn tshark_and_python_ipfix_decode_l2_l3_l4_over_udp() {
    for mtu in ["512", "1450"] {
        decoders_read_what_flowvm_meant("mixed.pcap", "l2,l3,l4", mtu, false);
        decoders_read_what_flowvm_meant("long.pcap", "l2,l3,l4", mtu, false);
    }
}

#[test]
fn tshark_and_python_ipfix_decode_the_tcp_stream() {
    decoders_read_what_flowvm_meant("mixed.pcap", "l2,l3,l4", "1450", true);
    decoders_read_what_flowvm_meant("many.pcap", "l3,l4", "512", true);
}
