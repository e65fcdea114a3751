//! `--workers N`: exporters spread over the workers' sockets by the kernel, each record archived
//! once, the counters one view, each worker's CPU time by name; a port another socket holds
//! still refuses the start.

use std::collections::{BTreeMap, BTreeSet};

use crate::common;

use common::{
    Running, archive_files, column, data_message, http_get, read_archive, scratch, template,
    template_message,
};
use flowvm::collector::{CollectError, Collector};
use flowvm::config::Config;
use flowvm_vm::Compiler;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// sourceIPv4Address and packetDeltaCount.
const FIELDS: [(u16, u16); 2] = [(8, 4), (2, 8)];

fn record(source: [u8; 4], n: u64) -> Vec<u8> {
    let mut r = source.to_vec();
    r.extend(n.to_be_bytes());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_spread_over_four_workers_each_record_archived_once() {
    let out = scratch("workers-four");
    let c = Running::start(
        &out,
        Config {
            workers: 4,
            ..Config::default()
        },
    )
    .await;
    // Sixteen UDP exporters (one source port each, so the kernel's hash spreads them), each
    // with its own source address in the records, 3 Messages of 50 records.
    let mut expected = BTreeMap::new();
    for e in 0..16_u8 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&template_message(&[template(256, &FIELDS)], 1), c.udp)
            .await
            .unwrap();
        for m in 0..3_u32 {
            let records: Vec<Vec<u8>> = (0..50)
                .map(|i| record([10, 0, e, 1], u64::from(m * 50 + i)))
                .collect();
            socket
                .send_to(&data_message(256, &records, m * 50, 1), c.udp)
                .await
                .unwrap();
        }
        expected.insert(format!("10.0.{e}.1"), 150);
    }
    // And one TCP exporter.
    let mut tcp = TcpStream::connect(c.tcp).await.unwrap();
    tcp.write_all(&template_message(&[template(256, &FIELDS)], 1))
        .await
        .unwrap();
    let records: Vec<Vec<u8>> = (0..40).map(|i| record([10, 9, 9, 9], i)).collect();
    tcp.write_all(&data_message(256, &records, 0, 1))
        .await
        .unwrap();
    expected.insert("10.9.9.9".to_owned(), 40);
    c.until("every record", |k| k.records_decoded.get() == 16 * 150 + 40)
        .await;
    let page = http_get(c.metrics).await;
    drop(tcp);
    let counters = c.stop().await;
    assert_eq!(counters.records_lost.get(), 0);
    assert_eq!(counters.messages_dropped.get(), 0, "{}", counters.render());
    // The counters are one view over every worker.
    assert!(
        page.contains(&format!("flowvm_records_decoded_total {}", 16 * 150 + 40)),
        "{page}"
    );
    // The process's CPU, and each worker's and archive thread's by name.
    assert!(page.contains("\nprocess_cpu_seconds_total "), "{page}");
    for worker in 0..4 {
        for thread in ["worker", "sink"] {
            let name =
                format!("flowvm_thread_cpu_seconds_total{{thread=\"flowvm-{thread}-{worker}\"}} ");
            assert!(page.contains(&name), "{name} missing from {page}");
        }
    }

    let mut archived = BTreeMap::new();
    for source in column(&read_archive(&out), "sourceIPv4Address") {
        *archived.entry(source).or_insert(0) += 1;
    }
    assert_eq!(archived, expected);
    // Each worker writes files of its own (its own run id in their names, the part before the
    // sequence number): the exporters landed on more than one.
    let runs: BTreeSet<String> = archive_files(&out)
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .rsplit('-')
                .nth(1)
                .map(str::to_owned)
        })
        .collect();
    assert!(runs.len() >= 2, "one worker took every exporter: {runs:?}");
}

#[tokio::test]
async fn workers_still_refuse_a_udp_port_another_socket_holds() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let config = Config {
        listen: vec![taken],
        udp_listen: Vec::new(),
        tcp: false,
        metrics: None,
        workers: 2,
        ..Config::default()
    };
    match Collector::bind(config, Compiler::default()).await {
        Err(CollectError::Bind { purpose, addr, .. }) => {
            assert_eq!((purpose, addr), ("udp", taken));
        }
        other => panic!("expected a bind error, got {:?}", other.map(|_| ())),
    }
}
