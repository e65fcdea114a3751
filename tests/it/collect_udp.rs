//! The collector over real UDP sockets on loopback: records archived field by field, templates
//! scoped per exporter port, data before its template, bad input counted by reason.

use crate::common;

use common::{
    Running, column, data_message, http_get, read_archive, scratch, template, template_message,
};
use flowvm::config::Config;
use flowvm::telemetry::DropReason;
use tokio::net::UdpSocket;

/// sourceIPv4Address, destinationIPv4Address, ports, protocol, octetDeltaCount (4, reduced).
fn flow(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8, octets: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend(src);
    r.extend(dst);
    r.extend(sport.to_be_bytes());
    r.extend(dport.to_be_bytes());
    r.push(proto);
    r.extend(octets.to_be_bytes());
    r
}

const FIVE_TUPLE: [(u16, u16); 6] = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_udp_records_field_by_field() {
    let out = scratch("udp-fields");
    let c = Running::start(&out, Config::default()).await;
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exporter
        .send_to(&template_message(&[template(256, &FIVE_TUPLE)], 7), c.udp)
        .await
        .unwrap();
    let records: Vec<Vec<u8>> = (0..100_u8)
        .map(|i| {
            flow(
                [10, 0, 0, i],
                [192, 0, 2, 1],
                1000 + u16::from(i),
                443,
                6,
                1500 * u32::from(i),
            )
        })
        .collect();
    exporter
        .send_to(&data_message(256, &records[..60], 0, 7), c.udp)
        .await
        .unwrap();
    exporter
        .send_to(&data_message(256, &records[60..], 60, 7), c.udp)
        .await
        .unwrap();
    c.until("100 records", |k| k.records_decoded.get() == 100)
        .await;
    let counters = c.stop().await;
    assert_eq!(counters.records_lost.get(), 0);
    assert!(counters.files_written.get() >= 1);

    let batches = read_archive(&out);
    let src = column(&batches, "sourceIPv4Address");
    assert_eq!(src.len(), 100);
    let expected: Vec<String> = (0..100).map(|i| format!("10.0.0.{i}")).collect();
    assert_eq!(src, expected, "addresses archived as text");
    assert!(
        column(&batches, "destinationIPv4Address")
            .iter()
            .all(|a| a == "192.0.2.1")
    );
    assert_eq!(
        column(&batches, "sourceTransportPort"),
        (0..100).map(|i| (1000 + i).to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        column(&batches, "octetDeltaCount"),
        (0..100).map(|i| (1500 * i).to_string()).collect::<Vec<_>>()
    );
    assert!(
        column(&batches, "protocolIdentifier")
            .iter()
            .all(|p| p == "6")
    );
    assert!(
        column(&batches, "exporter")
            .iter()
            .all(|e| e == "127.0.0.1")
    );
    assert!(
        column(&batches, "observation_domain_id")
            .iter()
            .all(|d| d == "7")
    );
    assert!(
        column(&batches, "export_time")
            .iter()
            .all(|t| t == "1700000100")
    );
    // The archive types by abstract type: the 4-octet octetDeltaCount is still UInt64.
    let schema = batches[0].schema();
    assert_eq!(
        schema
            .field_with_name("octetDeltaCount")
            .unwrap()
            .data_type(),
        &arrow_schema::DataType::UInt64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_reusing_a_template_id_with_different_layouts_both_decode() {
    let out = scratch("udp-two-exporters");
    let c = Running::start(&out, Config::default()).await;
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Same address, same domain, same template id 256; different layouts.
    a.send_to(
        &template_message(&[template(256, &[(10, 4), (2, 8)])], 1),
        c.udp,
    )
    .await
    .unwrap();
    b.send_to(
        &template_message(&[template(256, &[(2, 4), (10, 2)])], 1),
        c.udp,
    )
    .await
    .unwrap();
    a.send_to(
        &data_message(256, &[[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 42].to_vec()], 0, 1),
        c.udp,
    )
    .await
    .unwrap();
    b.send_to(
        &data_message(256, &[[0, 0, 0, 9, 0, 5].to_vec()], 0, 1),
        c.udp,
    )
    .await
    .unwrap();
    c.until("2 records", |k| k.records_decoded.get() == 2).await;
    c.stop().await;
    let batches = read_archive(&out);
    let mut pairs: Vec<(String, String)> = column(&batches, "ingressInterface")
        .into_iter()
        .zip(column(&batches, "packetDeltaCount"))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("3".to_owned(), "42".to_owned()),
            ("5".to_owned(), "9".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_arrives_before_its_template_is_kept() {
    let out = scratch("udp-pending");
    let c = Running::start(&out, Config::default()).await;
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let records: Vec<Vec<u8>> = (0..5_u8)
        .map(|i| flow([10, 0, 0, i], [10, 0, 0, 254], 1, 2, 17, 10))
        .collect();
    exporter
        .send_to(&data_message(256, &records, 0, 1), c.udp)
        .await
        .unwrap();
    c.until("the data to be held", |k| k.pending_sets.get() == 1)
        .await;
    exporter
        .send_to(&template_message(&[template(256, &FIVE_TUPLE)], 1), c.udp)
        .await
        .unwrap();
    c.until("5 late records", |k| k.records_decoded_late.get() == 5)
        .await;
    c.stop().await;
    assert_eq!(column(&read_archive(&out), "sourceIPv4Address").len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_by_reason_and_cost_others_nothing() {
    let out = scratch("udp-malformed");
    let c = Running::start(&out, Config::default()).await;
    let bad = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tpl = template_message(&[template(256, &FIVE_TUPLE)], 1);
    good.send_to(&tpl, c.udp).await.unwrap();
    bad.send_to(&tpl, c.udp).await.unwrap();

    let data = data_message(256, &[flow([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, 6, 3)], 0, 1);
    let mut version = data.clone();
    version[1] = 8;
    let mut length = data.clone();
    length[3] += 1;
    let mut set_past_end = data.clone();
    set_past_end[19] += 1;
    let bad_template = template_message(&[template(300, &[(8, 0)])], 1);
    let for_bad_template = data_message(300, &[vec![0; 5]], 0, 1);
    for m in [
        &version,
        &length,
        &set_past_end,
        &bad_template,
        &for_bad_template,
        &vec![0xff; 3],
    ] {
        bad.send_to(m, c.udp).await.unwrap();
    }
    for i in 0..10 {
        good.send_to(
            &data_message(256, &[flow([9, 9, 9, 9], [2, 2, 2, 2], 1, 2, 6, i)], i, 1),
            c.udp,
        )
        .await
        .unwrap();
    }
    c.until("every datagram", |k| k.messages_received.get() == 18)
        .await;
    let k = c.stop().await;
    // Version 8, and 3 octets of garbage (version 0xffff).
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 2);
    assert_eq!(k.dropped(DropReason::LengthMismatch), 1);
    assert_eq!(k.dropped(DropReason::BadSetLength), 1);
    assert_eq!(k.templates_rejected.get(), 1);
    assert_eq!(k.dropped(DropReason::TemplateRejected), 1);
    assert_eq!(k.messages_dropped.get(), 4);
    assert_eq!(
        k.records_decoded.get(),
        10,
        "the well-behaved exporter lost nothing"
    );
    assert_eq!(k.records_lost.get(), 0);
    assert!(
        column(&read_archive(&out), "sourceIPv4Address")
            .iter()
            .all(|a| a == "9.9.9.9")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_gaps_are_reported_as_lost_records_in_metrics() {
    let out = scratch("udp-loss");
    let c = Running::start(&out, Config::default()).await;
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exporter
        .send_to(&template_message(&[template(256, &FIVE_TUPLE)], 3), c.udp)
        .await
        .unwrap();
    let r = flow([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, 6, 3);
    exporter
        .send_to(&data_message(256, &[r.clone(), r.clone()], 0, 3), c.udp)
        .await
        .unwrap();
    exporter
        .send_to(&data_message(256, std::slice::from_ref(&r), 7, 3), c.udp)
        .await
        .unwrap();
    c.until("the gap", |k| k.records_lost.get() == 5).await;
    // The per-exporter figure is published on the next tick.
    let mut text = String::new();
    for _ in 0..300 {
        text = http_get(c.metrics).await;
        if text.contains("flowvm_exporter_records_lost_total{exporter=\"127.0.0.1\",observation_domain_id=\"3\"} 5") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(text.contains("flowvm_exporter_records_lost_total{exporter=\"127.0.0.1\",observation_domain_id=\"3\"} 5"), "{text}");
    assert!(text.contains("flowvm_records_decoded_total 3"), "{text}");
    c.stop().await;
}
