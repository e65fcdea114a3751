//! The decoder core on NetFlow v9 and v5 packets: the same templates, pending data, batches
//! and sequence accounting as IPFIX, with NetFlow's own header fields and times.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMillisecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};

use super::tests::{decoder, run, udp};
use super::*;

/// Seconds since the epoch at which the test packets leave the exporter.
const UNIX_SECS: u32 = 1_700_000_000;

/// A NetFlow v9 packet: header with `count`, `sys_uptime`, `sequence` and Source ID 7, then
/// the FlowSets (ID, content), each padded to four octets.
fn v9(count: u16, sys_uptime: u32, sequence: u32, flowsets: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0, 9];
    p.extend(count.to_be_bytes());
    p.extend(sys_uptime.to_be_bytes());
    p.extend(UNIX_SECS.to_be_bytes());
    p.extend(sequence.to_be_bytes());
    p.extend(7_u32.to_be_bytes());
    for (id, content) in flowsets {
        let padded = content.len().next_multiple_of(4);
        p.extend(id.to_be_bytes());
        p.extend(u16::try_from(padded + 4).unwrap().to_be_bytes());
        p.extend(content);
        p.resize(p.len() + padded - content.len(), 0);
    }
    p
}

/// Template FlowSet content: template 256 with (type, length) fields.
fn v9_template(fields: &[(u16, u16)]) -> (u16, Vec<u8>) {
    let mut c = vec![1, 0];
    c.extend(u16::try_from(fields.len()).unwrap().to_be_bytes());
    for (t, l) in fields {
        c.extend(t.to_be_bytes());
        c.extend(l.to_be_bytes());
    }
    (0, c)
}

/// sourceIPv4Address, octetDeltaCount, FIRST_SWITCHED, LAST_SWITCHED: 16 octets.
const FLOW: [(u16, u16); 4] = [(8, 4), (1, 4), (22, 4), (21, 4)];

fn flow(address: [u8; 4], octets: u32, first: u32, last: u32) -> Vec<u8> {
    [
        address.to_vec(),
        octets.to_be_bytes().to_vec(),
        first.to_be_bytes().to_vec(),
        last.to_be_bytes().to_vec(),
    ]
    .concat()
}

fn millis(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let c = batch.column_by_name(name).unwrap();
    c.as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec()
}

#[test]
fn netflow9_templates_and_data_land_in_the_same_columns_as_ipfix_with_absolute_times() {
    let mut d = decoder();
    let export = i64::from(UNIX_SECS) * 1000;
    // Two records, the FlowSet padded by the builder; a flow that started before the uptime
    // wrapped past 2^32 ms (49.7 days) is in the past all the same.
    let data = [
        flow([10, 0, 0, 1], 100, 90_000, 99_000),
        flow([10, 0, 0, 2], 200, u32::MAX - 999, 4_000),
    ];
    let packet = v9(3, 5_000, 0, &[v9_template(&FLOW), (256, data.concat())]);
    let out = run(&mut d, udp(1), &[packet]);
    let batch = &out[0];
    assert_eq!(batch.num_rows(), 2);
    let versions = batch.column_by_name("export_version").unwrap();
    assert_eq!(versions.as_primitive::<UInt16Type>().values(), &[9, 9]);
    let domains = batch.column_by_name("observation_domain_id").unwrap();
    assert_eq!(domains.as_primitive::<UInt32Type>().values(), &[7, 7]);
    let octets = batch.column_by_name("octetDeltaCount").unwrap();
    assert_eq!(octets.as_primitive::<UInt64Type>().values(), &[100, 200]);
    let uptime = batch.column_by_name("flowStartSysUpTime").unwrap();
    assert_eq!(uptime.as_primitive::<UInt32Type>().value(0), 90_000);
    // The device booted 5 s before the export; the first flow started at uptime 90 s, after
    // the packet by the device's clock: 85 s after the export, as sent.
    assert_eq!(
        millis(batch, "systemInitTimeMilliseconds"),
        [export - 5_000; 2]
    );
    assert_eq!(
        millis(batch, "flowStartMilliseconds"),
        [export + 85_000, export - 6_000]
    );
    assert_eq!(
        millis(batch, "flowEndMilliseconds"),
        [export + 94_000, export - 1_000]
    );
    let c = d.counters();
    assert_eq!(c.records_decoded.get(), 2);
    assert_eq!(c.netflow_count_mismatches.get(), 0);
}

#[test]
fn netflow9_data_before_its_template_waits_and_sequence_numbers_count_packets() {
    let mut d = decoder();
    let data = (256, flow([10, 0, 0, 1], 1, 1, 2));
    let out = run(
        &mut d,
        udp(1),
        &[
            v9(1, 1_000, 0, std::slice::from_ref(&data)),
            v9(1, 2_000, 1, &[v9_template(&FLOW)]),
            // Packets 2 and 3 never came.
            v9(1, 3_000, 4, &[data]),
        ],
    );
    assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    let c = d.counters();
    assert_eq!(c.records_decoded_late.get(), 1);
    assert_eq!(c.packets_lost.get(), 2);
    assert_eq!(c.records_lost.get(), 0);
    let lost: Vec<_> = d.sequences().lost().map(|(_, _, u, n)| (u, n)).collect();
    assert_eq!(lost, [(SequenceUnit::Packets, 2)]);
}

#[test]
fn netflow9_count_that_disagrees_is_counted_and_the_records_still_decode() {
    let mut d = decoder();
    // softflowd counts its flow records only: 2 here, where the packet holds 3 records.
    let data = [flow([10, 0, 0, 1], 1, 1, 2), flow([10, 0, 0, 2], 1, 1, 2)].concat();
    let out = run(
        &mut d,
        udp(1),
        &[v9(2, 1_000, 0, &[v9_template(&FLOW), (256, data)])],
    );
    assert_eq!(out[0].num_rows(), 2);
    assert_eq!(d.counters().netflow_count_mismatches.get(), 1);
}

#[test]
fn netflow9_options_scope_fields_are_named_and_exporters_never_mix() {
    let mut d = decoder();
    // Options template 257: scope Interface (4 octets); SAMPLING_INTERVAL (34) in 4.
    let options = (1, vec![1, 1, 0, 4, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4]);
    let record = [0, 0, 0, 3, 0, 0, 0, 100].to_vec();
    let out = run(
        &mut d,
        udp(1),
        &[v9(2, 1_000, 0, &[options, (257, record)])],
    );
    let batch = &out[0];
    let scope = batch.column_by_name("scopeInterface").unwrap();
    assert_eq!(scope.as_primitive::<UInt64Type>().value(0), 3);
    let field = batch
        .schema()
        .field_with_name("scopeInterface")
        .unwrap()
        .clone();
    assert_eq!(field.metadata()["ipfix.scope"], "true");
    // Template 256 means one layout to one router and another to the next.
    let mut d = decoder();
    let other = v9(
        2,
        1_000,
        0,
        &[v9_template(&[(2, 4)]), (256, vec![0, 0, 0, 9])],
    );
    let mine = v9(
        2,
        1_000,
        0,
        &[v9_template(&FLOW), (256, flow([10, 0, 0, 1], 5, 1, 2))],
    );
    let mut out = run(&mut d, udp(1), &[mine]);
    out.extend(run(&mut d, udp(2), &[other]));
    let packets: Vec<_> = out
        .iter()
        .filter_map(|b| b.column_by_name("packetDeltaCount"))
        .map(|c| c.as_primitive::<UInt64Type>().value(0))
        .collect();
    assert_eq!(packets, [9]);
    assert_eq!(d.counters().records_decoded.get(), 2);
}

/// A NetFlow v5 packet of `records` (48 octets each) at `flow_sequence`.
fn v5(flow_sequence: u32, records: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![0, 5];
    p.extend(u16::try_from(records.len()).unwrap().to_be_bytes());
    p.extend(60_000_u32.to_be_bytes()); // uptime 60 s
    p.extend(UNIX_SECS.to_be_bytes());
    p.extend(250_000_000_u32.to_be_bytes()); // .25 s
    p.extend(flow_sequence.to_be_bytes());
    p.extend([2, 9, 0x40, 0x0a]); // engine 2/9, sampling mode 1, interval 10
    for r in records {
        p.extend(r);
    }
    p
}

fn v5_record(octets: u32, first: u32, last: u32) -> Vec<u8> {
    let mut r = vec![192, 0, 2, 1, 198, 51, 100, 2, 0, 0, 0, 0, 0, 3, 0, 4];
    r.extend(7_u32.to_be_bytes());
    r.extend(octets.to_be_bytes());
    r.extend(first.to_be_bytes());
    r.extend(last.to_be_bytes());
    r.extend([0x30, 0x39, 0, 80, 0, 0x12, 6, 0, 0, 1, 0, 2, 24, 16, 0, 0]);
    r
}

#[test]
fn netflow5_records_run_the_built_in_template_with_their_header_fields() {
    let mut d = decoder();
    let packets = [
        v5(
            0,
            &[v5_record(100, 50_000, 59_000), v5_record(200, 1_000, 2_000)],
        ),
        // 3 flows lost between the packets; a count that disagrees with the length is dropped.
        v5(5, &[v5_record(300, 1, 2)]),
        {
            let mut lying = v5(6, &[v5_record(1, 1, 2)]);
            lying[3] = 31;
            lying
        },
    ];
    let out = run(&mut d, udp(1), &packets);
    let batch = &out[0];
    assert_eq!(batch.num_rows(), 3);
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(
        column("export_version")
            .as_primitive::<UInt16Type>()
            .value(0),
        5
    );
    assert_eq!(
        column("observation_domain_id")
            .as_primitive::<UInt32Type>()
            .value(0),
        0x0209
    );
    assert_eq!(column("engineType").as_primitive::<UInt8Type>().value(0), 2);
    assert_eq!(column("engineId").as_primitive::<UInt8Type>().value(0), 9);
    assert_eq!(
        column("samplingAlgorithm")
            .as_primitive::<UInt8Type>()
            .value(0),
        1
    );
    assert_eq!(
        column("samplingInterval")
            .as_primitive::<UInt32Type>()
            .value(0),
        10
    );
    assert_eq!(
        column("sourceTransportPort")
            .as_primitive::<UInt16Type>()
            .value(0),
        12_345
    );
    assert_eq!(
        column("bgpDestinationAsNumber")
            .as_primitive::<UInt32Type>()
            .value(0),
        2
    );
    assert_eq!(
        column("octetDeltaCount")
            .as_primitive::<UInt64Type>()
            .values(),
        &[100, 200, 300]
    );
    // Export at UNIX_SECS.25, uptime 60 s: the first flow started 10 s before the export.
    let export = i64::from(UNIX_SECS) * 1000 + 250;
    assert_eq!(millis(batch, "flowStartMilliseconds")[0], export - 10_000);
    let c = d.counters();
    assert_eq!(c.records_lost.get(), 3);
    assert_eq!(c.dropped(DropReason::LengthMismatch), 1);
    assert_eq!(c.templates_installed.get(), 1, "the built-in layout, once");
}
