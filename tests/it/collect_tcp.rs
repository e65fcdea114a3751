//! The collector over real TCP connections on loopback: framing by the Message Length, a
//! malformed header closing only its own connection, slow and stalled peers, withdrawals.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use crate::common;

use common::{Running, column, data_message, read_archive, scratch, template, template_message};
use flowvm::config::Config;
use flowvm::telemetry::DropReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIELDS: [(u16, u16); 2] = [(10, 4), (2, 8)];

fn record(interface: u32, packets: u64) -> Vec<u8> {
    let mut r = interface.to_be_bytes().to_vec();
    r.extend(packets.to_be_bytes());
    r
}

/// A connection that has sent template 256 and one record (interface 1, 1 packet).
async fn connect_with_one_record(collector: std::net::SocketAddr) -> TcpStream {
    let mut peer = TcpStream::connect(collector).await.unwrap();
    peer.write_all(&template_message(&[template(256, &FIELDS)], 1))
        .await
        .unwrap();
    peer.write_all(&data_message(256, &[record(1, 1)], 0, 1))
        .await
        .unwrap();
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_closes_only_its_own_connection() {
    let out = scratch("tcp-malformed");
    let c = Running::start(&out, Config::default()).await;
    let mut good = TcpStream::connect(c.tcp).await.unwrap();
    let mut bad = TcpStream::connect(c.tcp).await.unwrap();
    good.write_all(&template_message(&[template(256, &FIELDS)], 1))
        .await
        .unwrap();
    good.write_all(&data_message(256, &[record(1, 10)], 0, 1))
        .await
        .unwrap();
    let mut garbage = data_message(256, &[record(2, 20)], 0, 1);
    garbage[1] = 5; // version 5
    bad.write_all(&garbage).await.unwrap();
    // The collector closes the bad connection: reading sees the end of the stream.
    let mut buf = [0_u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), bad.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)));
    good.write_all(&data_message(256, &[record(3, 30), record(4, 40)], 1, 1))
        .await
        .unwrap();
    c.until("3 records", |k| k.records_decoded.get() == 3).await;
    drop(good);
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 1);
    assert_eq!(k.records_lost.get(), 0);
    assert_eq!(
        column(&read_archive(&out), "ingressInterface"),
        ["1", "3", "4"]
    );
    assert!(
        column(&read_archive(&out), "exporter")
            .iter()
            .all(|e| e == "127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_one_byte_at_a_time_is_framed_correctly() {
    let out = scratch("tcp-slow");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = TcpStream::connect(c.tcp).await.unwrap();
    peer.set_nodelay(true).unwrap();
    let mut stream = template_message(&[template(256, &FIELDS)], 1);
    stream.extend(data_message(256, &[record(7, 70), record(8, 80)], 0, 1));
    for b in stream {
        peer.write_all(&[b]).await.unwrap();
    }
    c.until("2 records", |k| k.records_decoded.get() == 2).await;
    drop(peer);
    c.stop().await;
    assert_eq!(
        column(&read_archive(&out), "packetDeltaCount"),
        ["70", "80"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_mid_message_loses_only_that_message() {
    let out = scratch("tcp-stall");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = connect_with_one_record(c.tcp).await;
    let partial = data_message(256, &[record(2, 2)], 1, 1);
    peer.write_all(&partial[..20]).await.unwrap();
    c.until("1 record", |k| k.records_decoded.get() == 1).await;
    drop(peer);
    c.until("the connection to close", |k| k.connections_open.get() == 0)
        .await;
    let k = c.stop().await;
    assert_eq!(k.records_decoded.get(), 1);
    assert_eq!(k.connections_accepted.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_over_tcp_remove_the_template() {
    let out = scratch("tcp-withdraw");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = connect_with_one_record(c.tcp).await;
    // A Template Withdrawal: Template ID 256, Field Count 0 (RFC 7011 §8.1).
    let mut w = flowvm_vm::wire::writer::MessageWriter::new(100);
    w.begin_set(flowvm_vm::wire::ids::SetId::TEMPLATE);
    w.put_u16(256);
    w.put_u16(0);
    assert!(w.commit());
    peer.write_all(w.finish(0, 1, flowvm_vm::wire::ids::ObservationDomainId(1)))
        .await
        .unwrap();
    peer.write_all(&data_message(256, &[record(2, 2)], 1, 1))
        .await
        .unwrap();
    c.until("the data to be held", |k| k.pending_sets.get() == 1)
        .await;
    drop(peer);
    c.until("the session to end", |k| k.connections_open.get() == 0)
        .await;
    let k = c.stop().await;
    assert_eq!(k.records_decoded.get(), 1);
    assert_eq!(k.templates_removed.get(), 1);
    assert_eq!(
        k.dropped(DropReason::PendingUnresolved),
        1,
        "held data of a closed connection is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_counted() {
    let out = scratch("tcp-limit");
    let c = Running::start(
        &out,
        Config {
            max_connections: 1,
            ..Config::default()
        },
    )
    .await;
    let _first = TcpStream::connect(c.tcp).await.unwrap();
    c.until("the first connection", |k| k.connections_open.get() == 1)
        .await;
    let mut second = TcpStream::connect(c.tcp).await.unwrap();
    let mut buf = [0_u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)));
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::ConnectionLimit), 1);
}
