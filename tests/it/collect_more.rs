//! More of the collector over real sockets: options templates archived like any other, the
//! pending buffer's bound, IPv6 listeners, and files completed at the size bound.

use crate::common;

use common::{
    Running, archive_files, column, data_message, read_archive, scratch, template, template_message,
};
use flowvm::collector::Collector;
use flowvm::config::Config;
use flowvm::telemetry::DropReason;
use flowvm_vm::Compiler;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_templates_and_their_data_are_archived() {
    let out = scratch("options");
    let c = Running::start(&out, Config::default()).await;
    // Scope: observationDomainId; then samplingPacketInterval and systemInitTimeMilliseconds.
    let def = TemplateDef {
        template_id: TemplateId(300),
        scope_field_count: 1,
        fields: vec![
            FieldSpecifier::iana(149, 4),
            FieldSpecifier::iana(305, 4),
            FieldSpecifier::iana(160, 8),
        ],
    };
    let mut w = MessageWriter::new(1500);
    w.begin_set(SetId::OPTIONS_TEMPLATE);
    w.put_template(&def);
    assert!(w.commit());
    let options = w.finish(0, 0, ObservationDomainId(4)).to_vec();
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exporter.send_to(&options, c.udp).await.unwrap();
    let mut record = 4_u32.to_be_bytes().to_vec();
    record.extend(1000_u32.to_be_bytes());
    record.extend(1_700_000_000_123_u64.to_be_bytes());
    exporter
        .send_to(&data_message(300, &[record], 0, 4), c.udp)
        .await
        .unwrap();
    c.until("the options record", |k| k.records_decoded.get() == 1)
        .await;
    c.stop().await;
    let batches = read_archive(&out);
    assert_eq!(column(&batches, "samplingPacketInterval"), ["1000"]);
    assert_eq!(
        column(&batches, "systemInitTimeMilliseconds"),
        ["1700000000123"]
    );
    let schema = batches[0].schema();
    let scope = schema.field_with_name("observationDomainId").unwrap();
    assert_eq!(
        scope.metadata().get("ipfix.scope").map(String::as_str),
        Some("true")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_for_an_unknown_template_past_the_bound_is_counted() {
    let out = scratch("pending-bound");
    let config = Config {
        // Four Sets of 8 octets, 64 of bookkeeping each.
        pending_max_session_bytes: 4 * (8 + 64),
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let good = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..20 {
        flood
            .send_to(&data_message(999, &[vec![0; 8]], i, 1), c.udp)
            .await
            .unwrap();
    }
    good.send_to(&template_message(&[template(256, &[(10, 4)])], 1), c.udp)
        .await
        .unwrap();
    good.send_to(&data_message(256, &[vec![0, 0, 0, 5]], 0, 1), c.udp)
        .await
        .unwrap();
    c.until("all datagrams", |k| k.messages_received.get() == 22)
        .await;
    let k = c.stop().await;
    assert_eq!(
        k.dropped(DropReason::PendingOverflow),
        16,
        "four held, sixteen pushed out"
    );
    assert_eq!(
        k.dropped(DropReason::PendingUnresolved),
        4,
        "never resolved by shutdown"
    );
    assert_eq!(
        k.records_decoded.get(),
        1,
        "the other exporter lost nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_on_ipv6_too() {
    let out = scratch("ipv6");
    let config = Config {
        listen: vec!["[::1]:0".parse().unwrap()],
        udp_listen: Vec::new(),
        out: out.clone(),
        metrics: None,
        ..Config::default()
    };
    let collector = Collector::bind(config, Compiler::default()).await.unwrap();
    let (udp, tcp) = (collector.udp_addrs()[0], collector.tcp_addrs()[0]);
    assert!(udp.is_ipv6() && tcp.is_ipv6());
    let counters = collector.counters();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(collector.run(shutdown));
    let exporter = UdpSocket::bind("[::1]:0").await.unwrap();
    exporter
        .send_to(&template_message(&[template(256, &[(10, 4)])], 1), udp)
        .await
        .unwrap();
    exporter
        .send_to(&data_message(256, &[vec![0, 0, 0, 6]], 0, 1), udp)
        .await
        .unwrap();
    let mut over_tcp = tokio::net::TcpStream::connect(tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut over_tcp,
        &template_message(&[template(256, &[(10, 4)])], 1),
    )
    .await
    .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut over_tcp,
        &data_message(256, &[vec![0, 0, 0, 7]], 0, 1),
    )
    .await
    .unwrap();
    for _ in 0..500 {
        if counters.records_decoded.get() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(over_tcp);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let mut interfaces = column(&read_archive(&out), "ingressInterface");
    interfaces.sort();
    assert_eq!(interfaces, ["6", "7"]);
    assert!(
        column(&read_archive(&out), "exporter")
            .iter()
            .all(|e| e == "::1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_completed_at_the_size_bound() {
    let out = scratch("size-bound");
    let config = Config {
        max_file_bytes: 1,
        batch_rows: 10,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exporter
        .send_to(&template_message(&[template(256, &[(10, 4)])], 1), c.udp)
        .await
        .unwrap();
    for i in 0..3_u32 {
        let records: Vec<Vec<u8>> = (0..10)
            .map(|j: u32| (i * 10 + j).to_be_bytes().to_vec())
            .collect();
        exporter
            .send_to(&data_message(256, &records, i * 10, 1), c.udp)
            .await
            .unwrap();
    }
    c.until("three files", |k| k.files_written.get() == 3).await;
    c.stop().await;
    assert_eq!(archive_files(&out).len(), 3);
    assert_eq!(column(&read_archive(&out), "ingressInterface").len(), 30);
}
