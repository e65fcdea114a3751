//! `roundtrip`: Flow Records through the exporter's encoding and back through the collector's
//! decoder.
//!
//! Input: record flags (`l2`, `l3`, `l4`), UDP or TCP rules, a path MTU (68 to 1450), template
//! and flush intervals, how many Messages a run may carry (1 to 64, as UDP segmentation offload
//! takes them), and a sequence of steps on a capture clock: export a record, poll the timers,
//! flush. Each record's key is made by [`FlowKey::new`] from arbitrary header fields, as
//! the meter makes it; times lie in the range dateTimeNanoseconds can carry (NTP era 0, before
//! 2036-02-07).
//!
//! The [`ExportingProcess`] sends into memory, a run cut into Messages of the run's length as
//! the kernel cuts a segmented send; every Message goes through the collector's [`Decoder`] as
//! one UDP datagram or one Message of a TCP stream, in the order sent.
//!
//! Oracle: every Message is accepted (nothing dropped, no template rejected, no record lost by
//! sequence number, nothing left waiting for a template); the records decoded are as many as
//! were sent, and the rows are the records sent, field by field, as the template of their
//! variant carries them (fields the flags leave out read as zero, as the key holds them).

use std::io;
use std::sync::Arc;

use arbitrary::Arbitrary;
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use flowvm::collector::decode::Decoder;
use flowvm::collector::session::TransportSession;
use flowvm::config::Config;
use flowvm::telemetry::{Counters, DropReason};
use flowvm_exporter::dissect::{Addresses, Dissected};
use flowvm_exporter::export::templates::Templates;
use flowvm_exporter::export::transport::Transport;
use flowvm_exporter::export::{ExportConfig, ExportingProcess, check_path_mtu};
use flowvm_exporter::flow::{FlowEndReason, FlowKey, FlowRecord, RecordFlags, Variant};
use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::{Compiler, Registry};

/// Nanoseconds from the UNIX epoch to the end of NTP era 0 (2036-02-07), the last time a
/// dateTimeNanoseconds value can carry.
const NTP_ERA_END_NS: u64 = ((1 << 32) - 2_208_988_800) * 1_000_000_000;

/// The Export Time of every Message (pinned, so rows can be checked for it).
const EXPORT_TIME: u32 = 1_700_000_000;

#[derive(Arbitrary, Debug)]
struct Record {
    kind: u8,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: u16,
    ethertype: u16,
    src: [u8; 16],
    dst: [u8; 16],
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u16,
    interface: u32,
    start: u64,
    duration: u32,
    packets: u64,
    octets: u64,
    end_reason: u8,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Export(Record, u16),
    Poll(u16),
    Flush,
}

#[derive(Arbitrary, Debug)]
struct Input {
    l2: bool,
    l3: bool,
    l4: bool,
    tcp: bool,
    run_capacity: u8,
    path_mtu: u16,
    template_interval_ms: u16,
    flush_interval_ms: u16,
    domain: u32,
    steps: Vec<Step>,
}

/// Messages kept in memory; the first `open` starts the one Transport Session.
#[derive(Debug, Default)]
struct Memory {
    messages: Vec<Vec<u8>>,
    open: bool,
    tcp: bool,
    run_capacity: usize,
}

impl Transport for Memory {
    fn open(&mut self) -> io::Result<bool> {
        Ok(!std::mem::replace(&mut self.open, true))
    }

    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.messages.push(message.to_vec());
        Ok(())
    }

    fn unreliable(&self) -> bool {
        !self.tcp
    }

    fn run_capacity(&self, _: usize) -> usize {
        self.run_capacity
    }
}

impl Record {
    /// The Flow Record the meter would make of these fields under `flags`, if it meters them.
    fn flow(&self, flags: RecordFlags) -> Option<FlowRecord> {
        let (mut src4, mut dst4) = ([0; 4], [0; 4]);
        src4.copy_from_slice(self.src.get(..4)?);
        dst4.copy_from_slice(self.dst.get(..4)?);
        let packet = Dissected {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            vlan: self.vlan & 0x0fff,
            ethertype: self.ethertype,
            addresses: match self.kind % 3 {
                0 => Addresses::V4(src4, dst4),
                1 => Addresses::V6(self.src, self.dst),
                _ => Addresses::None,
            },
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            octets: self.octets,
        };
        let key = FlowKey::new(&packet, flags, self.interface)?;
        let start_ns = self.start % NTP_ERA_END_NS;
        let end_ns = start_ns
            .saturating_add(u64::from(self.duration))
            .min(NTP_ERA_END_NS - 1);
        Some(FlowRecord {
            key,
            start_ns,
            end_ns,
            packets: self.packets,
            octets: self.octets,
            tcp_flags: self.tcp_flags,
            end_reason: match self.end_reason % 4 {
                0 => FlowEndReason::IdleTimeout,
                1 => FlowEndReason::ActiveTimeout,
                2 => FlowEndReason::ForcedEnd,
                _ => FlowEndReason::LackOfResources,
            },
        })
    }
}

/// One record as a row: what the template of its variant carries, fields left out as zero.
/// `class` is the variant as far as the columns tell it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    class: u8,
    interface: u64,
    egress: u64,
    start_ns: u64,
    end_ns: u64,
    packets: u64,
    octets: u64,
    end_reason: u64,
    src_mac: Vec<u8>,
    dst_mac: Vec<u8>,
    ethertype: u64,
    vlan: u64,
    src: Vec<u8>,
    dst: Vec<u8>,
    protocol: u64,
    src_port: u64,
    dst_port: u64,
    tcp_flags: u64,
    export_time: u64,
}

/// Classes of rows: which template fields a row has.
const IP4: u8 = 0;
const IP6: u8 = 1;
const L2: u8 = 2;

impl Row {
    /// What the collector should read back for `r` under `flags`.
    fn expected(r: &FlowRecord, flags: RecordFlags) -> Self {
        let k = &r.key;
        let class = match k.variant {
            Variant::L2 => L2,
            Variant::Ip6 if flags.l3 => IP6,
            _ if flags.l3 || flags.l4 => IP4,
            _ => L2,
        };
        let l3 = flags.l3 && class != L2;
        let l4 = flags.l4 && class != L2;
        let address = |a: &[u8; 16]| match (l3, class) {
            (false, _) => vec![0; 16],
            (true, IP4) => a
                .get(..4)
                .unwrap_or_default()
                .iter()
                .copied()
                .chain([0; 12])
                .collect(),
            (true, _) => a.to_vec(),
        };
        let mac = |m: &[u8; 6]| if flags.l2 { m.to_vec() } else { vec![0; 6] };
        Self {
            class,
            interface: u64::from(k.interface),
            egress: 0,
            start_ns: r.start_ns,
            end_ns: r.end_ns,
            packets: r.packets,
            octets: r.octets,
            end_reason: u64::from(r.end_reason.code()),
            src_mac: mac(&k.src_mac),
            dst_mac: mac(&k.dst_mac),
            ethertype: if flags.l2 { u64::from(k.ethertype) } else { 0 },
            vlan: if flags.l2 { u64::from(k.vlan) } else { 0 },
            src: address(&k.src),
            dst: address(&k.dst),
            protocol: if l3 || l4 { u64::from(k.protocol) } else { 0 },
            src_port: if l4 { u64::from(k.src_port) } else { 0 },
            dst_port: if l4 { u64::from(k.dst_port) } else { 0 },
            tcp_flags: if l4 { u64::from(r.tcp_flags) } else { 0 },
            export_time: u64::from(EXPORT_TIME),
        }
    }

    /// Every row of a batch the collector handed over.
    fn read(batch: &RecordBatch) -> Vec<Self> {
        let has = |name: &str| batch.column_by_name(name).is_some();
        let class = if has("sourceIPv6Address") {
            IP6
        } else if has("sourceIPv4Address") || has("protocolIdentifier") {
            IP4
        } else {
            L2
        };
        (0..batch.num_rows())
            .map(|i| {
                let n = |name: &str| number(batch, name, i);
                let b = |name: &str, len: usize| octets(batch, name, i, len);
                let v4 = |name: &str| {
                    batch.column_by_name(name).map(|_| {
                        let a = u32::try_from(n(name)).unwrap_or(0);
                        a.to_be_bytes().into_iter().chain([0; 12]).collect()
                    })
                };
                Self {
                    class,
                    interface: n("ingressInterface"),
                    egress: n("egressInterface"),
                    start_ns: n("flowStartNanoseconds"),
                    end_ns: n("flowEndNanoseconds"),
                    packets: n("packetDeltaCount"),
                    octets: n("octetDeltaCount"),
                    end_reason: n("flowEndReason"),
                    src_mac: b("sourceMacAddress", 6),
                    dst_mac: b("destinationMacAddress", 6),
                    ethertype: n("ethernetType"),
                    vlan: n("vlanId"),
                    src: v4("sourceIPv4Address").unwrap_or_else(|| b("sourceIPv6Address", 16)),
                    dst: v4("destinationIPv4Address")
                        .unwrap_or_else(|| b("destinationIPv6Address", 16)),
                    protocol: n("protocolIdentifier"),
                    src_port: n("sourceTransportPort"),
                    dst_port: n("destinationTransportPort"),
                    tcp_flags: n("tcpControlBits"),
                    export_time: number(batch, "export_time", i),
                }
            })
            .collect()
    }
}

/// An integer or timestamp column's value at `row`; 0 when the column is absent.
fn number(batch: &RecordBatch, name: &str, row: usize) -> u64 {
    let Some(col) = batch.column_by_name(name) else {
        return 0;
    };
    if let Some(a) = col.as_primitive_opt::<UInt8Type>() {
        return u64::from(a.value(row));
    }
    if let Some(a) = col.as_primitive_opt::<UInt16Type>() {
        return u64::from(a.value(row));
    }
    if let Some(a) = col.as_primitive_opt::<UInt32Type>() {
        return u64::from(a.value(row));
    }
    if let Some(a) = col.as_primitive_opt::<UInt64Type>() {
        return a.value(row);
    }
    if let Some(a) = col.as_primitive_opt::<TimestampNanosecondType>() {
        return u64::try_from(a.value(row)).unwrap_or(u64::MAX);
    }
    if let Some(a) = col.as_primitive_opt::<arrow_array::types::TimestampSecondType>() {
        return u64::try_from(a.value(row)).unwrap_or(u64::MAX);
    }
    u64::MAX
}

/// A fixed-size binary column's value at `row`; zeros when the column is absent.
fn octets(batch: &RecordBatch, name: &str, row: usize, len: usize) -> Vec<u8> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_fixed_size_binary_opt().map(|a| a.value(row).to_vec()))
        .unwrap_or_else(|| vec![0; len])
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some(input) = super::structured::<Input>(data) else {
        return;
    };
    let mut flags = RecordFlags {
        l2: input.l2,
        l3: input.l3,
        l4: input.l4,
    };
    if !(flags.l2 || flags.l3 || flags.l4) {
        flags = RecordFlags::L3_L4;
    }
    let registry = Registry::new();
    let Ok(templates) = Templates::new(flags, &registry) else {
        return;
    };
    let mtu = u32::from(input.path_mtu) % 1500;
    let Ok(mtu) = check_path_mtu(mtu.clamp(68, 1450)) else {
        return;
    };
    let config = ExportConfig {
        message_budget: usize::from(mtu) - 28,
        template_interval_ns: u64::from(input.template_interval_ms) * 1_000_000,
        flush_interval_ns: u64::from(input.flush_interval_ms) * 1_000_000,
        domain: ObservationDomainId(input.domain),
    };
    let transport = Memory {
        tcp: input.tcp,
        run_capacity: usize::from(input.run_capacity % 64) + 1,
        ..Memory::default()
    };
    let mut exporter =
        ExportingProcess::new(config, templates, transport).with_export_time(|| EXPORT_TIME);
    let mut now_ns = 1_700_000_000_000_000_000_u64;
    let mut expected = Vec::new();
    for step in &input.steps {
        match step {
            Step::Export(record, dt) => {
                now_ns += u64::from(*dt) * 1_000_000;
                if let Some(flow) = record.flow(flags) {
                    expected.push(Row::expected(&flow, flags));
                    exporter.export(&flow, now_ns);
                }
            }
            Step::Poll(dt) => {
                now_ns += u64::from(*dt) * 1_000_000;
                exporter.poll(now_ns);
            }
            Step::Flush => exporter.flush(now_ns),
        }
    }
    exporter.flush(now_ns);
    let stats = exporter.stats();
    assert_eq!(stats.records, u64::try_from(expected.len()).unwrap_or(0));
    assert_eq!((stats.send_errors, stats.records_lost), (0, 0));

    let counters = Arc::new(Counters::default());
    let mut decoder = Decoder::new(
        Compiler::new(registry, flowvm_vm::Limits::default()),
        Config::default().decoder(),
        Arc::clone(&counters),
    );
    let session = if input.tcp {
        TransportSession::Tcp {
            exporter: ([192, 0, 2, 1], 40_000).into(),
            connection: 1,
        }
    } else {
        TransportSession::Udp {
            exporter: ([192, 0, 2, 1], 40_000).into(),
            collector: ([127, 0, 0, 1], 4739).into(),
        }
    };
    let now = flowvm::clock::now();
    let mut batches = Vec::new();
    for message in &exporter.transport().messages {
        assert!(
            message.len() <= usize::from(mtu) - 28 || stats.oversize_messages > 0,
            "a Message over the budget ({} octets) not counted as oversize",
            message.len()
        );
        decoder.handle(session, message, now, &mut batches);
    }
    decoder.finish(&mut batches);
    assert_eq!(counters.messages_dropped.get(), 0, "a Message was dropped");
    assert_eq!(
        counters.templates_rejected.get(),
        0,
        "a template was rejected"
    );
    assert_eq!(
        counters.records_lost.get(),
        0,
        "records lost by sequence number"
    );
    assert_eq!(counters.dropped(DropReason::PendingUnresolved), 0);
    assert_eq!(counters.records_decoded.get(), stats.records);
    let mut decoded: Vec<Row> = batches.iter().flat_map(Row::read).collect();
    decoded.sort();
    expected.sort();
    assert_eq!(decoded, expected);
}
