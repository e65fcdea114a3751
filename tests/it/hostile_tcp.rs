//! Hostile input over real TCP connections on loopback: template floods, lying lengths,
//! withdrawals and redefinitions at awkward moments, peers that trickle, stop or fall silent,
//! the largest Message, and a flood beside a steady exporter that TCP's push-back protects.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use crate::common;

use std::time::Duration;

use common::{
    INTERFACE_PACKETS, Running, column, data_message, interface_packets, read_archive, scratch,
    template, template_message,
};
use flowvm::config::Config;
use flowvm::telemetry::DropReason;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits (bounded) until the collector closes `peer`: a read sees the end of the stream.
async fn closed_by_collector(peer: &mut TcpStream) {
    let mut buf = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// One Message of `domain` holding the given Sets (Set ID, content) in order.
fn sets(domain: u32, sequence: u32, content: &[(SetId, Vec<u8>)]) -> Vec<u8> {
    let mut w = MessageWriter::new(65_535);
    for (id, body) in content {
        w.begin_set(*id);
        w.put_bytes(body);
        assert!(w.commit());
    }
    w.finish(0, sequence, ObservationDomainId(domain)).to_vec()
}

/// The content of a Template Set withdrawing `id` (Field Count 0, RFC 7011 §8.1).
fn withdraw(id: u16) -> Vec<u8> {
    [id.to_be_bytes(), [0, 0]].concat()
}

/// The content of a Template Set defining `def`.
fn define(def: &TemplateDef) -> Vec<u8> {
    let mut w = MessageWriter::new(65_535);
    w.begin_set(SetId::TEMPLATE);
    w.put_template(def);
    assert!(w.commit());
    w.finish(0, 0, ObservationDomainId(0))[20..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_flood_over_tcp_is_bounded_per_connection_and_others_still_decode() {
    let out = scratch("hostile-tcp-templates");
    let c = Running::start(&out, Config::default()).await;
    let mut flood = TcpStream::connect(c.tcp).await.unwrap();
    for domain in 1..=5 {
        let defs: Vec<_> = (256..1256).map(|id| template(id, &[(10, 4)])).collect();
        flood
            .write_all(&template_message(&defs, domain))
            .await
            .unwrap();
    }
    // The live-template gauge is set once a Message is handled, after its drops are counted:
    // wait for both.
    c.until("the flood", |k| {
        k.dropped(DropReason::TemplateLimit) == 904 && k.templates_live.get() == 4096
    })
    .await;
    assert_eq!(c.counters.templates_live.get(), 4096);
    let mut good = TcpStream::connect(c.tcp).await.unwrap();
    good.write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 1))
        .await
        .unwrap();
    good.write_all(&data_message(256, &[interface_packets(5, 50)], 0, 1))
        .await
        .unwrap();
    c.until("the good record", |k| k.records_decoded.get() == 1)
        .await;
    drop(flood);
    c.until("the flood's templates to go", |k| {
        k.templates_removed.get() == 4096
    })
    .await;
    assert_eq!(c.counters.templates_live.get(), 1);
    drop(good);
    let k = c.stop().await;
    assert_eq!(k.templates_installed.get(), 4097);
    assert_eq!(column(&read_archive(&out), "packetDeltaCount"), ["50"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_lengths_over_tcp_drop_the_message_or_close_only_that_connection() {
    let out = scratch("hostile-tcp-lengths");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = TcpStream::connect(c.tcp).await.unwrap();
    peer.write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 1))
        .await
        .unwrap();
    // The framing holds (the Message Length is right) but a Set Length lies: the Message is
    // dropped, the connection goes on.
    let good = sets(1, 0, &[(SetId(256), interface_packets(99, 99))]);
    let mut lying = good.clone();
    lying.extend([1, 0, 0, 3]);
    lying[2..4].copy_from_slice(&36_u16.to_be_bytes());
    peer.write_all(&lying).await.unwrap();
    peer.write_all(&data_message(256, &[interface_packets(1, 1)], 0, 1))
        .await
        .unwrap();
    c.until("the good record", |k| k.records_decoded.get() == 1)
        .await;
    // A Message Length below the header's 16 octets loses the framing: that connection ends.
    let mut short = TcpStream::connect(c.tcp).await.unwrap();
    let mut m = data_message(256, &[interface_packets(2, 2)], 0, 1);
    m[2..4].copy_from_slice(&12_u16.to_be_bytes());
    short.write_all(&m).await.unwrap();
    closed_by_collector(&mut short).await;
    peer.write_all(&data_message(256, &[interface_packets(3, 3)], 1, 1))
        .await
        .unwrap();
    c.until("the next record", |k| k.records_decoded.get() == 2)
        .await;
    drop(peer);
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 2);
    assert_eq!(k.dropped(DropReason::BadSetLength), 1);
    assert_eq!(k.dropped(DropReason::LengthMismatch), 1);
    assert_eq!(k.records_lost.get(), 0);
    assert_eq!(column(&read_archive(&out), "ingressInterface"), ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_and_redefinitions_at_awkward_moments() {
    let out = scratch("hostile-tcp-withdraw");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = TcpStream::connect(c.tcp).await.unwrap();
    let t256 = template(256, &INTERFACE_PACKETS);
    let t258 = template(258, &[(14, 4)]);
    let t258_wide = template(258, &[(14, 4), (2, 8)]);
    let t260 = template(260, &[(10, 4)]);
    // 260 again, as an Options Template: scope observationDomainId, samplingPacketInterval.
    let o260 = TemplateDef {
        template_id: TemplateId(260),
        scope_field_count: 1,
        fields: vec![FieldSpecifier::iana(149, 4), FieldSpecifier::iana(305, 4)],
    };
    let mut options = MessageWriter::new(1500);
    options.begin_set(SetId::OPTIONS_TEMPLATE);
    options.put_template(&o260);
    assert!(options.commit());
    let options = options.finish(0, 0, ObservationDomainId(0))[16..].to_vec();
    let sampling = |rate: u32| [1_u32.to_be_bytes(), rate.to_be_bytes()].concat();
    let tpl = SetId::TEMPLATE;
    let messages = [
        template_message(&[t256.clone(), t260], 1),
        // Data for 258 before its template: held.
        sets(1, 0, &[(SetId(258), 5_u32.to_be_bytes().to_vec())]),
        // Withdrawals of 258 (held data, no template) and 999: both unknown.
        sets(1, 1, &[(tpl, [withdraw(258), withdraw(999)].concat())]),
        // 258 comes: the held record decodes.
        sets(1, 1, &[(tpl, define(&t258))]),
        // Data, the withdrawal of its template, data again: the second Set is held.
        sets(
            1,
            1,
            &[
                (SetId(256), interface_packets(1, 10)),
                (tpl, withdraw(256)),
                (SetId(256), interface_packets(2, 20)),
            ],
        ),
        // Data in the old layout, a redefinition, data in the new layout.
        sets(
            1,
            3,
            &[
                (SetId(258), 6_u32.to_be_bytes().to_vec()),
                (tpl, define(&t258_wide)),
                (SetId(258), interface_packets(7, 70)),
            ],
        ),
        // 260 re-used as an Options Template, and its data.
        sets(
            1,
            5,
            &[
                (SetId::OPTIONS_TEMPLATE, options[4..].to_vec()),
                (SetId(260), sampling(1000)),
            ],
        ),
        // Withdraw every Template (ID 2): 258 goes, the options template 260 stays.
        sets(1, 6, &[(tpl, withdraw(2))]),
        sets(
            1,
            6,
            &[
                (SetId(258), interface_packets(8, 80)),
                (SetId(260), sampling(2000)),
            ],
        ),
        // Withdraw every Options Template (ID 3 in an Options Template Set): 260 goes.
        sets(1, 8, &[(SetId::OPTIONS_TEMPLATE, withdraw(3))]),
        sets(1, 8, &[(SetId(260), sampling(3000))]),
    ];
    for m in &messages {
        peer.write_all(m).await.unwrap();
    }
    c.until("every message", |k| k.messages_received.get() == 11)
        .await;
    c.until("the last withdrawal", |k| k.templates_removed.get() == 3)
        .await;
    drop(peer);
    c.until("the connection to close", |k| {
        k.dropped(DropReason::PendingUnresolved) == 3
    })
    .await;
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 0);
    assert_eq!(k.templates_installed.get(), 5);
    assert_eq!(k.templates_removed.get(), 3);
    assert_eq!(k.dropped(DropReason::UnknownWithdrawal), 2);
    assert_eq!(
        (k.records_decoded.get(), k.records_decoded_late.get()),
        (6, 1)
    );
    assert_eq!(k.records_lost.get(), 0);
    let batches = read_archive(&out);
    let mut egress = column(&batches, "egressInterface");
    egress.sort();
    assert_eq!(egress, ["5", "6", "7"]);
    let mut packets = column(&batches, "packetDeltaCount");
    packets.sort();
    assert_eq!(packets, ["10", "70"]);
    let mut rates = column(&batches, "samplingPacketInterval");
    rates.sort();
    assert_eq!(rates, ["1000", "2000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_stopping_and_silent_peers() {
    let out = scratch("hostile-tcp-peers");
    let c = Running::start(
        &out,
        Config {
            tcp_idle_timeout: 1,
            ..Config::default()
        },
    )
    .await;
    // One octet at a time: every Message decodes.
    let mut slow = TcpStream::connect(c.tcp).await.unwrap();
    slow.set_nodelay(true).unwrap();
    let mut stream = template_message(&[template(256, &INTERFACE_PACKETS)], 1);
    for i in 0..3_u32 {
        let rows: Vec<Vec<u8>> = (0..20).map(|j| interface_packets(i * 20 + j, 1)).collect();
        stream.extend(data_message(256, &rows, i * 20, 1));
    }
    for b in &stream {
        slow.write_all(&[*b]).await.unwrap();
    }
    c.until("the trickled records", |k| k.records_decoded.get() == 60)
        .await;
    // A steady peer beside the bad ones.
    let mut steady = TcpStream::connect(c.tcp).await.unwrap();
    steady
        .write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 2))
        .await
        .unwrap();
    let partial = data_message(256, &[interface_packets(1000, 1)], 0, 1);
    // Closed mid-header, and mid-message.
    for cut in [7, 20] {
        let mut peer = TcpStream::connect(c.tcp).await.unwrap();
        peer.write_all(&partial[..cut]).await.unwrap();
        drop(peer);
    }
    c.until("two truncated", |k| k.dropped(DropReason::Truncated) == 2)
        .await;
    // Silent mid-message: closed after the idle timeout and counted, while the steady peer
    // goes on sending every 100 ms (bounded: 50 rounds).
    let mut silent = TcpStream::connect(c.tcp).await.unwrap();
    silent.write_all(&partial[..20]).await.unwrap();
    let mut sent = 0_u32;
    while c.counters.dropped(DropReason::Truncated) < 3 && sent < 50 {
        steady
            .write_all(&data_message(
                256,
                &[interface_packets(2000 + sent, 1)],
                sent,
                2,
            ))
            .await
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    closed_by_collector(&mut silent).await;
    assert_eq!(c.counters.dropped(DropReason::Truncated), 3);
    steady
        .write_all(&data_message(
            256,
            &[interface_packets(2000 + sent, 1)],
            sent,
            2,
        ))
        .await
        .unwrap();
    sent += 1;
    c.until("the steady records", |k| {
        k.records_decoded.get() == 60 + u64::from(sent)
    })
    .await;
    drop((slow, steady));
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 3);
    assert_eq!(k.records_lost.get(), 0);
    assert_eq!(k.connections_accepted.get(), 5);
    let mut interfaces: Vec<u32> = column(&read_archive(&out), "ingressInterface")
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    interfaces.sort_unstable();
    let mut expected: Vec<u32> = (0..60).collect();
    expected.extend(2000..2000 + sent);
    assert_eq!(interfaces, expected);
}

/// Resets `peer` (RST, not FIN): zero linger, then close.
fn reset(peer: TcpStream) {
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_are_counted_and_a_message_cut_by_one_is_truncated() {
    let out = scratch("hostile-tcp-reset");
    let c = Running::start(&out, Config::default()).await;
    // Reset between Messages: the Messages before it are whole and decode.
    let mut between = TcpStream::connect(c.tcp).await.unwrap();
    between
        .write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 1))
        .await
        .unwrap();
    between
        .write_all(&data_message(256, &[interface_packets(1, 1)], 0, 1))
        .await
        .unwrap();
    c.until("the record before the reset", |k| {
        k.records_decoded.get() == 1
    })
    .await;
    reset(between);
    c.until("one reset", |k| k.connections_reset.get() == 1)
        .await;
    // Reset mid-message: the partial Message is truncated.
    let mut mid = TcpStream::connect(c.tcp).await.unwrap();
    mid.write_all(&data_message(256, &[interface_packets(2, 1)], 1, 1)[..20])
        .await
        .unwrap();
    // Bounded wait until the collector has read the 20 octets (it reads as they come).
    tokio::time::sleep(Duration::from_millis(100)).await;
    reset(mid);
    c.until("two resets", |k| k.connections_reset.get() == 2)
        .await;
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::Truncated), 1);
    assert_eq!(k.messages_dropped.get(), 1);
    assert_eq!(k.records_decoded.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_65535_octet_message_decodes() {
    let out = scratch("hostile-tcp-65535");
    let c = Running::start(&out, Config::default()).await;
    let mut peer = TcpStream::connect(c.tcp).await.unwrap();
    // 65535 - 20 = 5459 records of 12 octets and 7 of padding.
    let rows: Vec<Vec<u8>> = (0..5459)
        .map(|i| interface_packets(i, u64::from(i)))
        .collect();
    let mut big = data_message(256, &rows, 0, 1);
    big.extend([0; 7]);
    big[2..4].copy_from_slice(&65_535_u16.to_be_bytes());
    big[18..20].copy_from_slice(&65_519_u16.to_be_bytes());
    assert_eq!(big.len(), 65_535);
    peer.write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 1))
        .await
        .unwrap();
    peer.write_all(&big).await.unwrap();
    c.until("the big message", |k| k.records_decoded.get() == 5459)
        .await;
    drop(peer);
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 0);
    let interfaces = column(&read_archive(&out), "ingressInterface");
    assert_eq!(interfaces.len(), 5459);
    assert_eq!(interfaces.last().map(String::as_str), Some("5458"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beside_a_steady_exporter_is_pushed_back_and_nothing_is_lost() {
    let out = scratch("hostile-tcp-flood");
    // A small queue, so the flood fills it and TCP pushes back.
    let config = Config {
        queue: 8,
        queue_max_bytes: 256 << 10,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let flood = async {
        let mut peer = TcpStream::connect(c.tcp).await.unwrap();
        let defs: Vec<_> = (300..4300).map(|id| template(id, &[(10, 4)])).collect();
        peer.write_all(&template_message(&defs, 9)).await.unwrap();
        peer.write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 1))
            .await
            .unwrap();
        for m in 0..100_u32 {
            let rows: Vec<Vec<u8>> = (0..5000)
                .map(|j| interface_packets(m * 5000 + j, 1))
                .collect();
            peer.write_all(&data_message(256, &rows, m * 5000, 1))
                .await
                .unwrap();
        }
        // Garbage at the end: this connection is closed for it.
        peer.write_all(&[0xab; 1000]).await.unwrap();
        closed_by_collector(&mut peer).await;
    };
    let steady = async {
        let mut peer = TcpStream::connect(c.tcp).await.unwrap();
        peer.write_all(&template_message(&[template(256, &INTERFACE_PACKETS)], 7))
            .await
            .unwrap();
        for i in 0..200_u32 {
            let rows: Vec<Vec<u8>> = (0..10)
                .map(|j| interface_packets(1_000_000 + i * 10 + j, 1))
                .collect();
            peer.write_all(&data_message(256, &rows, i * 10, 7))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        peer
    };
    let (_, steady) = tokio::join!(flood, steady);
    c.until("every record", |k| {
        k.records_decoded.get() == 500_000 + 2000
    })
    .await;
    drop(steady);
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::QueueFull), 0);
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 1);
    assert_eq!(k.records_lost.get(), 0);
    let batches = read_archive(&out);
    let mut steady_rows: Vec<u32> = column(&batches, "ingressInterface")
        .iter()
        .map(|i| i.parse().unwrap())
        .filter(|&i| i >= 1_000_000)
        .collect();
    steady_rows.sort_unstable();
    assert_eq!(steady_rows, (1_000_000..1_002_000).collect::<Vec<u32>>());
    assert_eq!(k.rows_written.get(), 502_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peers_from_one_address_cost_a_steady_exporter_nothing() {
    // 300 connections from 127.0.0.2 that each send 3 octets of a Message Header and stall,
    // while a steady exporter on 127.0.0.1 sends over TCP and UDP: on the default bounds the
    // stalled address gets 16 of the 256 slots, the rest are refused and counted, and the
    // header deadline (2 s here, 10 s by default) closes those 16.
    let out = scratch("hostile-tcp-stalled");
    let config = Config {
        tcp_header_timeout: 2,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut peer = socket.connect(c.tcp).await.unwrap();
        // A refused connection may already be closed: its write can fail.
        let _ = peer.write_all(&[0, 10, 0]).await;
        stalled.push(peer);
    }
    c.until("the stalled address to reach its bound", |k| {
        k.dropped(DropReason::ExporterConnectionLimit) == 284
    })
    .await;
    assert_eq!(c.counters.connections_open.get(), 16);
    assert_eq!(c.counters.dropped(DropReason::ConnectionLimit), 0);

    let records: u32 = 200;
    let mut tcp = TcpStream::connect(c.tcp).await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let def = template(256, &[(1, 4), (2, 4)]);
    tcp.write_all(&template_message(std::slice::from_ref(&def), 1))
        .await
        .unwrap();
    udp.send_to(&template_message(&[def], 2), c.udp)
        .await
        .unwrap();
    for i in 0..records {
        let record = [i.to_be_bytes(), 1_u32.to_be_bytes()].concat();
        tcp.write_all(&data_message(256, std::slice::from_ref(&record), i, 1))
            .await
            .unwrap();
        udp.send_to(&data_message(256, &[record], i, 2), c.udp)
            .await
            .unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    c.until("every record of the steady exporter", |k| {
        k.records_decoded.get() == 2 * u64::from(records)
    })
    .await;
    c.until("the header deadline to close the stalled", |k| {
        k.dropped(DropReason::TcpHeaderTimeout) == 16
    })
    .await;
    drop(tcp);
    let k = c.stop().await;
    assert_eq!(k.records_lost.get(), 0, "{}", k.render());
    assert_eq!(k.dropped(DropReason::ConnectionLimit), 0);
    let batches = read_archive(&out);
    let mut octets: Vec<u64> = column(&batches, "octetDeltaCount")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    octets.sort_unstable();
    let expected: Vec<u64> = (0..u64::from(records)).flat_map(|i| [i, i]).collect();
    assert_eq!(
        octets, expected,
        "every record, once over TCP and once over UDP"
    );
}
