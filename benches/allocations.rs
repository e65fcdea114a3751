//! Heap allocations of the collector's decode path per Message in steady state, counted by a
//! counting global allocator: a template, then batches of data Messages (IPFIX, and NetFlow v5
//! and v9 from real captures) through [`Decoder::handle`]. Once templates are installed and a
//! batch has sized the columns, decoding a Message must allocate nothing: this exits with an
//! error when it does. `cargo test` runs it (`test = true`); `cargo bench --bench allocations`
//! prints the same figures.

use std::alloc::System;
use std::sync::Arc;

use flowvm::clock;
use flowvm::collector::decode::Decoder;
use flowvm::collector::session::TransportSession;
use flowvm::config::Config;
use flowvm::telemetry::Counters;
use flowvm_vm::Compiler;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Messages decoded to warm up (templates installed, one batch flushed to size the columns),
/// then counted.
const MESSAGES: usize = 1000;

fn main() {
    let session = TransportSession::Udp {
        exporter: ([192, 0, 2, 1], 40_000).into(),
        collector: ([127, 0, 0, 1], 4739).into(),
    };
    let (template, data) = flowvm::replay::messages(47 * MESSAGES as u64, 1400);
    let mut failed = false;
    failed |= !steady("IPFIX, bench-replay's records", session, &[template], &data);
    for capture in [
        "netflow-parser-softflowd-netflow9.pcap",
        "dpkt-unknown-netflow5.pcap",
    ] {
        let path = format!("{}/testdata/captures/{capture}", env!("CARGO_MANIFEST_DIR"));
        let packets = match flowvm::replay::read_capture(std::path::Path::new(&path)) {
            Ok(capture) => capture.payloads,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        // The packets as they came once, then their data alone (softflowd sends its
        // templates in every v9 packet), repeated to the length of the IPFIX load: a template
        // record is parsed into a definition (a vector of fields) each time it comes, so
        // refreshes are not what is counted here.
        let data: Vec<Vec<u8>> = packets
            .iter()
            .map(|p| without_templates(p))
            .cycle()
            .take(MESSAGES)
            .collect();
        failed |= !steady(capture, session, &packets, &data);
    }
    if failed {
        std::process::exit(1);
    }
}

/// A NetFlow v9 packet without its template FlowSets (IDs 0 and 1); other packets as they are.
fn without_templates(packet: &[u8]) -> Vec<u8> {
    const HEADER: usize = 20;
    if packet.get(..2) != Some(&[0, 9]) {
        return packet.to_vec();
    }
    let mut out = packet.get(..HEADER).unwrap_or_default().to_vec();
    let mut at = HEADER;
    while let Some(&[a, b, c, d]) = packet.get(at..at + 4) {
        let (id, len) = (
            u16::from_be_bytes([a, b]),
            usize::from(u16::from_be_bytes([c, d])),
        );
        let Some(flowset) = packet.get(at..at + len).filter(|_| len >= 4) else {
            break;
        };
        if id > 1 {
            out.extend_from_slice(flowset);
        }
        at += len;
    }
    out
}

/// Decodes `templates` and `data` once (warm-up), flushes, then `data` again counting
/// allocations; whether there were none.
fn steady(what: &str, session: TransportSession, templates: &[Vec<u8>], data: &[Vec<u8>]) -> bool {
    let config = Config {
        batch_rows: 1 << 20,
        ..Config::default()
    };
    let mut decoder = Decoder::new(
        Compiler::default(),
        config.decoder(),
        Arc::new(Counters::default()),
    );
    let mut out = Vec::new();
    let now = clock::now();
    for message in templates.iter().chain(data) {
        decoder.handle(session, message, now, &mut out);
    }
    decoder.flush(&mut out);
    let warm_rows: usize = out.iter().map(|b| b.num_rows()).sum();
    out.clear();
    out.reserve(16);
    let region = Region::new(GLOBAL);
    for message in data {
        decoder.handle(session, message, now, &mut out);
    }
    let change = region.change();
    let counted = decoder.counters().records_decoded.get();
    println!(
        "{what}: {} Messages ({warm_rows} rows) after warm-up: {} allocations, {} reallocations, {} octets ({} records decoded in all)",
        data.len(),
        change.allocations,
        change.reallocations,
        change.bytes_allocated,
        counted
    );
    change.allocations == 0 && change.reallocations == 0
}
