//! The exporter's throughput in packets per second:
//!
//! - `flow_table`: the flow table with 1 k, 100 k and 1 M live flows, packets visiting the
//!   flows in a scrambled order (so the table is not walked in memory order; their keys read in
//!   arrival order, as a meter reads its packets), the capture clock advancing 100 ns a packet
//!   so timers run as they would: `observe_N_flows` in batches of 32, each packet hashed as it
//!   comes, then the batch counted with its lookups running ahead, as the meter does;
//!   `observe_N_flows_unbatched` one lookup at a time, without prefetch;
//! - `pcap_to_ipfix`: the whole path from an in-memory pcap of 1 M packets (100 k UDP flows of
//!   10 packets) through dissection, the flow table and the Exporting Process to IPFIX
//!   Messages sent over UDP on loopback (path MTU 512), flows flushed at the end; the same
//!   over TCP and over TLS 1.3 (a new session each iteration, handshake included) into a
//!   loopback reader that decrypts and discards, to price the transport.
//!
//! Run with `cargo bench --bench meter`.
#![expect(
    clippy::panic,
    reason = "a bench whose setup fails is a bug to see at once"
)]

use std::hint::black_box;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flowvm_exporter::export::templates::Templates;
use flowvm_exporter::export::transport::{
    SocketTransport, TlsClient, TransportConfig, TransportProtocol,
};
use flowvm_exporter::export::{ExportConfig, ExportingProcess};
use flowvm_exporter::flow::key::PackedKey;
use flowvm_exporter::flow::table::{Arrival, Observation};
use flowvm_exporter::flow::{FlowKey, FlowTable, RecordFlags, Timers, Variant};
use flowvm_exporter::run::{self, Meter};
use flowvm_vm::Registry;
use flowvm_vm::wire::ids::ObservationDomainId;
use rustls::pki_types::{PrivateKeyDer, ServerName};

/// Packets per batch, as the meter counts them.
const BATCH: usize = 32;

const T0: u64 = 1_700_000_000_000_000_000;

fn key(n: u32) -> FlowKey {
    let mut src = [0; 16];
    src[..4].copy_from_slice(&(0x0a00_0000 | n).to_be_bytes());
    let mut dst = [0; 16];
    dst[..4].copy_from_slice(&[192, 0, 2, 1]);
    FlowKey {
        variant: Variant::Ip4,
        protocol: 17,
        src_port: u16::try_from(n % 60_000).unwrap_or(0) + 1_024,
        dst_port: 53,
        ethertype: 0,
        vlan: 0,
        interface: 0,
        src_mac: [0; 6],
        dst_mac: [0; 6],
        src,
        dst,
    }
}

/// A 64-octet packet at `now`.
fn packet_at(now: u64) -> Observation {
    Observation {
        timestamp_ns: now,
        octets: 64,
        tcp_flags: 0,
    }
}

/// A scrambled visiting order of `flows` flows: a multiplicative step coprime with `flows`.
fn order(flows: u32, packets: usize) -> Vec<u32> {
    let step = (2_654_435_761_u64 % u64::from(flows)) | 1;
    let step = (step..)
        .find(|s| gcd(*s, u64::from(flows)) == 1)
        .unwrap_or(1);
    (0..packets as u64)
        .map(|i| u32::try_from(i * step % u64::from(flows)).unwrap_or(0))
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn flow_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_table");
    const PACKETS: usize = 1_000_000;
    group.throughput(Throughput::Elements(PACKETS as u64));
    for flows in [1_000_u32, 100_000, 1_000_000] {
        let keys: Vec<FlowKey> = (0..flows).map(key).collect();
        // The packets' keys in arrival order, packed as the meter packs them from a dissected
        // packet, read in sequence as a meter reads its packets.
        let visits: Vec<PackedKey> = order(flows, PACKETS)
            .into_iter()
            .map(|i| PackedKey::from(&keys[i as usize]))
            .collect();
        let mut table = FlowTable::new(Timers::default(), 2_000_000);
        let mut out = Vec::new();
        let mut now = T0;
        for k in &keys {
            table.observe(*k, packet_at(now), now, &mut out);
        }
        let mut batch: Vec<Arrival> = Vec::with_capacity(BATCH);
        let hasher = table.hasher();
        group.bench_function(format!("observe_{flows}_flows"), |b| {
            b.iter(|| {
                // As the meter does: a batch of packets hashed (each one's index slot
                // prefetched) into a buffer kept from batch to batch, then counted with the
                // lookups running ahead.
                for keys in visits.chunks(BATCH) {
                    batch.clear();
                    batch.extend(keys.iter().map(|key| {
                        now += 100;
                        let arrival = Arrival {
                            key: hasher.hash(*key),
                            packet: packet_at(now),
                            now_ns: now,
                        };
                        table.prefetch_slot(&arrival);
                        arrival
                    }));
                    table.observe_batch(&batch, &mut out, |_, _| {});
                }
                out.clear();
                black_box(table.len())
            });
        });
        group.bench_function(format!("observe_{flows}_flows_unbatched"), |b| {
            b.iter(|| {
                for key in &visits {
                    now += 100;
                    let key = table.hash(*key);
                    table.observe_hashed(&key, packet_at(now), now, &mut out);
                }
                out.clear();
                black_box(table.len())
            });
        });
    }
    group.finish();
}

/// A classic pcap in memory: `flows` UDP flows of `per_flow` 60-octet frames, round-robin,
/// one microsecond apart.
fn pcap(flows: u32, per_flow: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65_535_u32.to_le_bytes());
    out.extend_from_slice(&1_u32.to_le_bytes());
    let mut us = 0_u32;
    for _ in 0..per_flow {
        for n in 0..flows {
            us += 1;
            out.extend_from_slice(&1_700_000_000_u32.to_le_bytes());
            out.extend_from_slice(&us.to_le_bytes());
            out.extend_from_slice(&60_u32.to_le_bytes());
            out.extend_from_slice(&60_u32.to_le_bytes());
            let mut frame = [0_u8; 60];
            frame[12..14].copy_from_slice(&0x0800_u16.to_be_bytes());
            let ip = &mut frame[14..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&46_u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&(0x0a00_0000 | n).to_be_bytes());
            ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
            let udp = &mut ip[20..];
            udp[0..2]
                .copy_from_slice(&u16::try_from(n % 60_000 + 1_024).unwrap_or(0).to_be_bytes());
            udp[2..4].copy_from_slice(&53_u16.to_be_bytes());
            udp[4..6].copy_from_slice(&26_u16.to_be_bytes());
            out.extend_from_slice(&frame);
        }
    }
    out
}

/// A loopback TCP listener that reads every connection to its end and discards it, through
/// TLS when `tls` is given; its address.
fn stream_reader(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let tls = tls.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                let mut stream: Box<dyn Read> = match tls {
                    None => Box::new(tcp),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config)
                            .unwrap_or_else(|e| panic!("tls: {e}"));
                        Box::new(rustls::StreamOwned::new(conn, tcp))
                    }
                };
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A self-signed certificate for `localhost`: the reader's configuration and the exporter's.
fn tls_pair() -> (Arc<rustls::ServerConfig>, TlsClient) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .unwrap_or_else(|e| panic!("rcgen: {e}"));
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
        })
        .unwrap_or_else(|e| panic!("server config: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap_or_else(|e| panic!("root: {e}"));
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("client config: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = TlsClient {
        config: Arc::new(client),
        server_name: ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}")),
    };
    (Arc::new(server), client)
}

fn pcap_to_ipfix(c: &mut Criterion) {
    let mut group = c.benchmark_group("pcap_to_ipfix");
    let capture = pcap(100_000, 10);
    group.throughput(Throughput::Elements(1_000_000));
    // Bound and never read: the kernel drops what overflows its buffer, as a slow collector
    // would; the exporter's side is what is measured.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let udp = sink.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    let (server, client) = tls_pair();
    let runs = [
        ("udp_mtu_512_100k_flows", TransportProtocol::Udp, udp, None),
        (
            "tcp_mtu_512_100k_flows",
            TransportProtocol::Tcp,
            stream_reader(None),
            None,
        ),
        (
            "tls_mtu_512_100k_flows",
            TransportProtocol::Tls,
            stream_reader(Some(server)),
            Some(client),
        ),
    ];
    let registry = Registry::new();
    let stop = AtomicBool::new(false);
    for (name, protocol, collector, tls) in runs {
        let config = TransportConfig {
            collector,
            src: None,
            src_port: 0,
            protocol,
            udp_checksum: true,
        };
        let budget = 512 - config.header_overhead();
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut transport = SocketTransport::new(config.clone())
                        .unwrap_or_else(|e| panic!("socket: {e}"));
                    if let Some(client) = &tls {
                        transport = transport.with_tls(client.clone());
                    }
                    let templates = Templates::new(RecordFlags::L3_L4, &registry)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let exporter = ExportingProcess::new(
                        ExportConfig {
                            message_budget: budget,
                            template_interval_ns: 20_000_000_000,
                            flush_interval_ns: 5_000_000_000,
                            domain: ObservationDomainId(1),
                        },
                        templates,
                        transport,
                    );
                    Meter::new(
                        RecordFlags::L3_L4,
                        FlowTable::new(Timers::default(), 1 << 20),
                        exporter,
                        None,
                    )
                },
                |mut meter| {
                    run::replay(capture.as_slice(), &mut meter, None, &stop)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let summary = meter.finish();
                    assert_eq!(summary.export.records, 100_000);
                    assert_eq!(summary.export.send_errors, 0);
                    black_box(summary)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    targets = flow_table, pcap_to_ipfix
}
criterion_main!(benches);
