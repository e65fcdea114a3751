//! What crossed a socket, kept and written as a capture: a recording UDP relay between an
//! exporter and the collector, a pcap writer (raw IPv4, linktype 101) for what arrived, and
//! tshark's decode of NetFlow in such a capture.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::flows::Key;

/// What `flowvm export` sent, in arrival order; over TCP the stream in the chunks the socket
/// gave.
pub(crate) struct Received {
    pub(crate) chunks: Vec<Vec<u8>>,
}

/// The exporter's port in a written capture. Not the port the OS picked for it: tshark reads
/// UDP to or from 33434-33534 as a traceroute and adds an expert item, which the checks refuse.
const CAPTURE_EXPORTER_PORT: u16 = 50_000;

/// The collector's port in a written capture, for the same reason; tshark is told to decode
/// it as IPFIX.
pub(crate) const CAPTURE_COLLECTOR_PORT: u16 = 4739;

/// The IPv4 header checksum (RFC 791), so the capture is as a real one would be.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap()
}

/// Writes `received` as a classic pcap of raw IPv4 packets (linktype 101), one UDP datagram
/// per packet, or a TCP handshake then the stream's chunks as segments.
pub(crate) fn write_pcap(path: &Path, received: &Received, port: u16, tcp: bool) {
    let exporter_port = CAPTURE_EXPORTER_PORT;
    let mut file = Vec::new();
    for word in [0xa1b2_c3d4_u32, 0x0004_0002, 0, 0, 65_535, 101] {
        file.extend(word.to_le_bytes());
    }
    let mut packet = |n: u32, transport: &[u8], payload: &[u8]| {
        let proto = if tcp { 6 } else { 17 };
        let total = u16::try_from(20 + transport.len() + payload.len()).unwrap();
        let mut ip = vec![0x45, 0];
        ip.extend(total.to_be_bytes());
        ip.extend(u16::try_from(n & 0xffff).unwrap().to_be_bytes());
        ip.extend([0x40, 0, 64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let len = u32::from(total);
        for word in [1_700_000_000 + n / 1000, (n % 1000) * 1000, len, len] {
            file.extend(word.to_le_bytes());
        }
        file.extend(ip);
        file.extend(transport);
        file.extend(payload);
    };
    if tcp {
        // (from exporter?, seq, ack, flags): SYN, SYN-ACK, ACK, then the data with PSH-ACK.
        let segment = |to_collector: bool, seq: u32, ack: u32, flags: u8| {
            let (src, dst) = if to_collector {
                (exporter_port, port)
            } else {
                (port, exporter_port)
            };
            let mut h = Vec::new();
            h.extend(src.to_be_bytes());
            h.extend(dst.to_be_bytes());
            h.extend(seq.to_be_bytes());
            h.extend(ack.to_be_bytes());
            h.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            h
        };
        packet(0, &segment(true, 0, 0, 0x02), &[]);
        packet(1, &segment(false, 0, 1, 0x12), &[]);
        packet(2, &segment(true, 1, 1, 0x10), &[]);
        let mut seq = 1_u32;
        for (i, chunk) in received.chunks.iter().enumerate() {
            let n = u32::try_from(i).unwrap() + 3;
            packet(n, &segment(true, seq, 1, 0x18), chunk);
            seq += u32::try_from(chunk.len()).unwrap();
        }
    } else {
        for (i, datagram) in received.chunks.iter().enumerate() {
            let length = u16::try_from(8 + datagram.len()).unwrap();
            let mut h = Vec::new();
            h.extend(exporter_port.to_be_bytes());
            h.extend(port.to_be_bytes());
            h.extend(length.to_be_bytes());
            h.extend([0, 0]); // no checksum, as flowvm sends it by default
            packet(u32::try_from(i).unwrap(), &h, datagram);
        }
    }
    std::fs::write(path, file).unwrap();
}

/// A UDP relay on 127.0.0.1 that forwards every datagram to a target and keeps a copy.
pub(crate) struct Recorder {
    /// Where exporters send.
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Received>,
}

impl Recorder {
    /// Relays to `target` until [`Self::finish`].
    pub(crate) fn start(target: SocketAddr) -> Self {
        let socket: UdpSocket = super::loopback_udp_receiver();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut received = Received { chunks: Vec::new() };
            let mut buf = vec![0; 65_535];
            // Until told to stop and then quiet for one read timeout: bounded by the run.
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        received.chunks.push(buf[..n].to_vec());
                        socket.send_to(&buf[..n], target).unwrap();
                    }
                    Err(_) if flag.load(Ordering::Relaxed) => return received,
                    Err(_) => {}
                }
            }
        });
        Self { addr, stop, thread }
    }

    /// Stops relaying; returns what was relayed.
    pub(crate) fn finish(self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// tshark's reading of the datagrams in `received` agrees with the archive's `flows` (key,
/// packets, octets): the same flow records (addresses, protocol, packets, octets, and ports
/// where tshark shows them: not for v9's ICMP template), and no expert item.
pub(crate) fn assert_tshark_reads(received: &Received, flows: &[(Key, u64, u64)], name: &str) {
    let lines = tshark_flows(received, &super::scratch(&format!("{name}-tshark")));
    assert!(lines.iter().all(|l| !l.starts_with("expert")), "{lines:#?}");
    let archived: Vec<Vec<String>> = flows
        .iter()
        .map(|((src, dst, proto, sport, dport), packets, octets)| {
            let numbers = [
                u64::from(*proto),
                *packets,
                *octets,
                u64::from(*sport),
                u64::from(*dport),
            ];
            [src.clone(), dst.clone()]
                .into_iter()
                .chain(numbers.iter().map(u64::to_string))
                .collect()
        })
        .collect();
    let read: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    let prefixes = |v: &[Vec<String>]| -> Vec<Vec<String>> {
        let mut p: Vec<Vec<String>> = v.iter().map(|l| l[..5].to_vec()).collect();
        p.sort();
        p
    };
    assert_eq!(prefixes(&read), prefixes(&archived), "{name}");
    for line in read.iter().filter(|l| l.len() == 7) {
        assert!(
            archived.contains(line),
            "{name}: tshark read {line:?}, which the archive does not hold"
        );
    }
}

/// tshark's reading of the NetFlow (or IPFIX) records in `received`, one line per flow record
/// (`tests/peers/tshark_netflow.py`): source, destination, protocol, packets, octets, and the
/// ports where the record has them; then `expert …` lines for anything tshark flags.
fn tshark_flows(received: &Received, dir: &Path) -> Vec<String> {
    let capture = dir.join("relayed.pcap");
    // The port the capture shows the collector on: tshark is told to decode it as cflow.
    let port = 2055;
    write_pcap(&capture, received, port, false);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/tshark_netflow.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&capture)
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark failed (run sh tests/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
