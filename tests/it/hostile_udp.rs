//! Hostile input over real UDP sockets on loopback: template and Observation Domain floods,
//! Sets whose lengths lie, withdrawals over UDP, the largest datagrams, hostile NetFlow v9 and
//! v5 packets, and a flood beside a well-behaved exporter. Every drop is checked against its counted reason, and the
//! well-behaved exporter's records are checked row by row in the archive.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use crate::common;

use std::net::SocketAddr;

use common::{
    INTERFACE_PACKETS, Running, column, data_message, http_get, interface_packets, netflow9_packet,
    read_archive, scratch, template, template_message,
};
use flowvm::collector::udp::kernel_drops;
use flowvm::config::Config;
use flowvm::telemetry::DropReason;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId};
use flowvm_vm::wire::writer::MessageWriter;
use tokio::net::UdpSocket;

/// `message` with `raw` octets appended and its Message Length set to match.
fn with_raw(mut message: Vec<u8>, raw: &[u8]) -> Vec<u8> {
    message.extend_from_slice(raw);
    let len = u16::try_from(message.len()).unwrap();
    message[2..4].copy_from_slice(&len.to_be_bytes());
    message
}

/// A Message Header alone (a Message with no Set): version 10, length 16.
fn header_only(sequence: u32, domain: u32) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 16, 0, 0, 0, 0];
    m.extend(sequence.to_be_bytes());
    m.extend(domain.to_be_bytes());
    m
}

/// `message` with its Message Length field set to `len`, whatever its size.
fn claiming(mut message: Vec<u8>, len: u16) -> Vec<u8> {
    message[2..4].copy_from_slice(&len.to_be_bytes());
    message
}

/// A socket on `ip` (any 127/8 address is loopback), port chosen by the OS.
async fn exporter(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.unwrap()
}

/// Sends every message, waiting (bounded) every 64 for the collector to have handled all
/// `base + sent` Messages, so the kernel's socket buffer never overflows: the test checks
/// the collector, not the kernel.
async fn send_paced(c: &Running, socket: &UdpSocket, messages: &[Vec<u8>], base: u64) -> u64 {
    let mut sent = base;
    for chunk in messages.chunks(64) {
        for m in chunk {
            socket.send_to(m, c.udp).await.unwrap();
        }
        sent += u64::try_from(chunk.len()).unwrap();
        c.until("the collector to catch up", |k| {
            k.messages_received.get() >= sent
        })
        .await;
    }
    sent
}

/// `n` single-field templates from `first` on, in one Message of `domain`.
fn templates(first: u16, n: u16, domain: u32) -> Vec<u8> {
    let defs: Vec<_> = (first..first + n)
        .map(|id| template(id, &[(10, 4)]))
        .collect();
    template_message(&defs, domain)
}

/// A Template Set withdrawing `id` (Field Count 0, RFC 7011 §8.1).
fn withdrawal(set: SetId, id: u16, domain: u32) -> Vec<u8> {
    let mut w = MessageWriter::new(100);
    w.begin_set(set);
    w.put_u16(id);
    w.put_u16(0);
    assert!(w.commit());
    w.finish(0, 0, ObservationDomainId(domain)).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_flood_is_bounded_per_session_and_per_address_and_others_still_decode() {
    let out = scratch("hostile-udp-templates");
    // Bounds are a worker's, and the kernel spreads an address's source ports over the
    // workers (README, Bounds): one worker, so the address's bound is the collector's.
    let config = Config {
        workers: 1,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    // One address, five source ports (five Transport Sessions). Port 1: five domains of
    // 1000 templates each, past the 4096 of one session.
    let ports = [
        exporter("127.0.0.1").await,
        exporter("127.0.0.1").await,
        exporter("127.0.0.1").await,
        exporter("127.0.0.1").await,
        exporter("127.0.0.1").await,
    ];
    let mut sent = 0;
    let flood: Vec<Vec<u8>> = (1..=5).map(|d| templates(256, 1000, d)).collect();
    sent = send_paced(&c, &ports[0], &flood, sent).await;
    // Ports 2 to 4: 4096 each, reaching the address's 16384; port 5 gets none.
    for (i, port) in ports[1..].iter().enumerate() {
        let domain = 10 + u32::try_from(i).unwrap();
        sent = send_paced(&c, port, &[templates(256, 4096, domain)], sent).await;
    }
    assert_eq!(sent, 9);
    // Messages are counted as they start to be handled: wait for the last one's effect.
    c.until("the flood", |k| {
        k.dropped(DropReason::TemplateLimit) == 904 + 4096
    })
    .await;
    let k = &c.counters;
    assert_eq!(k.templates_installed.get(), 16_384);
    assert_eq!(k.templates_live.get(), 16_384);
    assert_eq!(k.dropped(DropReason::TemplateLimit), 904 + 4096);
    // Another address still gets its template in and its data decoded.
    let good = exporter("127.0.0.2").await;
    good.send_to(
        &template_message(&[template(256, &INTERFACE_PACKETS)], 1),
        c.udp,
    )
    .await
    .unwrap();
    good.send_to(&data_message(256, &[interface_packets(7, 70)], 0, 1), c.udp)
        .await
        .unwrap();
    c.until("the good record", |k| k.records_decoded.get() == 1)
        .await;
    let k = c.stop().await;
    assert_eq!(k.templates_installed.get(), 16_385);
    assert_eq!(k.dropped(DropReason::TemplateLimit), 5000);
    assert_eq!(k.messages_dropped.get(), 0);
    let batches = read_archive(&out);
    assert_eq!(column(&batches, "exporter"), ["127.0.0.2"]);
    assert_eq!(column(&batches, "packetDeltaCount"), ["70"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_observation_domains_keeps_sequence_state_and_the_metrics_page_bounded() {
    let out = scratch("hostile-udp-domains");
    // One worker: the bounds are a worker's (README, Bounds).
    let config = Config {
        max_templates: 4000,
        max_templates_per_exporter: 2000,
        workers: 1,
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let flood = exporter("127.0.0.1").await;
    // 3000 domains, each a header-only Message at sequence 0, then one at 5: five records
    // lost per domain. The address may hold 2000 streams.
    let mut messages = Vec::new();
    for domain in 1..=3000 {
        messages.push(header_only(0, domain));
        messages.push(header_only(5, domain));
    }
    let sent = send_paced(&c, &flood, &messages, 0).await;
    assert_eq!(sent, 6000);
    c.until("the flood", |k| k.records_lost.get() == 2000 * 5)
        .await;
    let k = &c.counters;
    assert_eq!(k.messages_dropped.get(), 0);
    assert_eq!(
        k.sequence_untracked.get(),
        2000,
        "1000 domains, 2 messages each"
    );
    assert_eq!(k.records_lost.get(), 2000 * 5);
    // The page lists at most 1024 label sets of the per-exporter loss, the rest summed.
    let mut text = String::new();
    for _ in 0..300 {
        text = http_get(c.metrics).await;
        if text.contains("exporter=\"other\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("flowvm_exporter_records_lost_total{"))
        .collect();
    assert_eq!(lines.len(), 1025, "{text}");
    assert!(
        text.contains(&format!(
            "flowvm_exporter_records_lost_total{{exporter=\"other\",observation_domain_id=\"other\"}} {}",
            (2000 - 1024) * 5
        )),
        "{text}"
    );
    // Another address has streams of its own.
    let good = exporter("127.0.0.2").await;
    good.send_to(
        &template_message(&[template(256, &INTERFACE_PACKETS)], 1),
        c.udp,
    )
    .await
    .unwrap();
    good.send_to(&data_message(256, &[interface_packets(1, 1)], 0, 1), c.udp)
        .await
        .unwrap();
    good.send_to(&data_message(256, &[interface_packets(2, 2)], 3, 1), c.udp)
        .await
        .unwrap();
    c.until("the good exporter's gap", |k| {
        k.records_lost.get() == 2000 * 5 + 2
    })
    .await;
    let k = c.stop().await;
    assert_eq!(k.sequence_untracked.get(), 2000);
    assert_eq!(column(&read_archive(&out), "ingressInterface"), ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_whose_lengths_lie_drop_the_whole_message_and_later_messages_decode() {
    let out = scratch("hostile-udp-lengths");
    let c = Running::start(&out, Config::default()).await;
    let e = exporter("127.0.0.1").await;
    // 257: ingressInterface, then interfaceName of variable length.
    let defs = [
        template(256, &INTERFACE_PACKETS),
        template(257, &[(10, 4), (82, 65_535)]),
    ];
    let good = |seq| data_message(256, &[interface_packets(99, 99)], seq, 1);
    let messages = [
        template_message(&defs, 1),
        data_message(256, &[interface_packets(1, 1)], 0, 1),
        // A good Data Set, then a Set Length of 3.
        with_raw(good(1), &[1, 0, 0, 3]),
        // A good Data Set, then a Set Length past the Message's end.
        with_raw(good(1), &[1, 0, 1, 144, 0, 0, 0, 1]),
        // A good Data Set, then a variable-length record running past its Set.
        with_raw(good(1), &[1, 1, 0, 12, 0, 0, 0, 7, 10, b'a', b'b', b'c']),
        // A good Data Set, then a Template Record whose Field Count runs past its Set.
        with_raw(good(1), &[0, 2, 0, 12, 1, 44, 0, 3, 0, 10, 0, 4]),
        // Message Lengths that disagree with the datagram: longer, shorter, below the header,
        // the largest possible.
        claiming(good(1), 36),
        claiming(good(1), 28),
        claiming(good(1), 12),
        claiming(good(1), 65_535),
        // Version 8 (NetFlow's aggregation version: not collected).
        {
            let mut m = good(1);
            m[1] = 8;
            m
        },
        // Two whole records and 5 octets: the rest is padding (RFC 7011 §3.3.1), accepted.
        with_raw(
            data_message(
                256,
                &[interface_packets(2, 2), interface_packets(3, 3)],
                1,
                1,
            ),
            &[0, 0, 0, 0, 0],
        ),
        data_message(256, &[interface_packets(4, 4)], 3, 1),
    ];
    // Fix the Set Length of the padded Set: 4 + 24 + 5.
    let mut messages = messages.to_vec();
    let padded = messages.len() - 2;
    messages[padded][18..20].copy_from_slice(&33_u16.to_be_bytes());
    let sent = send_paced(&c, &e, &messages, 0).await;
    assert_eq!(sent, 13);
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 9);
    assert_eq!(k.dropped(DropReason::BadSetLength), 2);
    assert_eq!(k.dropped(DropReason::Truncated), 2);
    assert_eq!(k.dropped(DropReason::LengthMismatch), 4);
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 1);
    assert_eq!(k.records_decoded.get(), 4);
    assert_eq!(k.records_lost.get(), 0);
    assert_eq!(
        k.templates_installed.get(),
        2,
        "nothing of a dropped message"
    );
    let mut interfaces = column(&read_archive(&out), "ingressInterface");
    interfaces.sort();
    assert_eq!(interfaces, ["1", "2", "3", "4"], "nothing partial archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_over_udp_are_ignored_and_counted() {
    let out = scratch("hostile-udp-withdraw");
    let c = Running::start(&out, Config::default()).await;
    let e = exporter("127.0.0.1").await;
    let messages = [
        template_message(&[template(256, &INTERFACE_PACKETS)], 1),
        withdrawal(SetId::TEMPLATE, 256, 1),
        withdrawal(SetId::TEMPLATE, 2, 1),
        withdrawal(SetId::OPTIONS_TEMPLATE, 3, 1),
        withdrawal(SetId::TEMPLATE, 999, 1),
        data_message(256, &[interface_packets(1, 1)], 0, 1),
    ];
    send_paced(&c, &e, &messages, 0).await;
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::UdpWithdrawalIgnored), 4);
    assert_eq!(k.dropped(DropReason::UnknownWithdrawal), 0);
    assert_eq!((k.templates_removed.get(), k.records_decoded.get()), (0, 1));
    assert_eq!(column(&read_archive(&out), "ingressInterface"), ["1"]);
}

/// A Message of exactly `len` octets: 12-octet records of template 256, the rest padding.
fn message_of(len: usize, first: u32, sequence: u32) -> (Vec<u8>, u32) {
    let records = u32::try_from((len - 20) / 12).unwrap();
    let rows: Vec<Vec<u8>> = (first..first + records)
        .map(|i| interface_packets(i, u64::from(i)))
        .collect();
    let padding = vec![0; (len - 20) % 12];
    let mut m = with_raw(data_message(256, &rows, sequence, 1), &padding);
    let set_len = u16::try_from(len - 16).unwrap();
    m[18..20].copy_from_slice(&set_len.to_be_bytes());
    assert_eq!(m.len(), len);
    (m, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_ipv4_datagram_decodes() {
    let out = scratch("hostile-udp-65507");
    let c = Running::start(&out, Config::default()).await;
    let e = exporter("127.0.0.1").await;
    // 65535 less the IPv4 and UDP headers.
    let (big, records) = message_of(65_507, 0, 0);
    assert_eq!(records, 5457);
    let too_big = e.send_to(&[0; 65_508], c.udp).await;
    assert!(
        too_big.is_err(),
        "IPv4 carries at most 65507 octets of UDP payload"
    );
    send_paced(
        &c,
        &e,
        &[
            template_message(&[template(256, &INTERFACE_PACKETS)], 1),
            big,
        ],
        0,
    )
    .await;
    let k = c.stop().await;
    assert_eq!(k.messages_dropped.get(), 0);
    assert_eq!(k.records_decoded.get(), 5457);
    let interfaces = column(&read_archive(&out), "ingressInterface");
    assert_eq!(interfaces.len(), 5457);
    assert_eq!(interfaces.last().map(String::as_str), Some("5456"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beside_a_steady_exporter_costs_it_nothing() {
    let out = scratch("hostile-udp-flood");
    let c = Running::start(&out, Config::default()).await;
    let udp_port = c.udp.port();
    let good = exporter("127.0.0.2").await;
    let flood = exporter("127.0.0.1").await;
    let collector: SocketAddr = c.udp;
    good.send_to(
        &template_message(&[template(256, &INTERFACE_PACKETS)], 7),
        collector,
    )
    .await
    .unwrap();
    // The flood's template for its valid data, once: its data then counts no loss.
    flood
        .send_to(
            &template_message(&[template(256, &INTERFACE_PACKETS)], 1),
            collector,
        )
        .await
        .unwrap();
    // The flood: garbage, template floods, lying lengths and valid data at full size.
    let mut junk = Vec::new();
    for round in 0..40_u32 {
        junk.push(vec![0xab; 1400]);
        junk.push(templates(300, 500, 100 + round));
        junk.push(with_raw(header_only(0, 1), &[1, 0, 0, 2]));
        junk.push(claiming(header_only(0, 1), 9000));
        let (m, _) = message_of(60_000, round * 10_000, round * 4998);
        junk.push(m);
    }
    // The steady exporter: 200 Messages of 10 records, interleaved with the flood.
    let steady = async {
        for i in 0..200_u32 {
            let rows: Vec<Vec<u8>> = (0..10).map(|j| interface_packets(i * 10 + j, 1)).collect();
            good.send_to(&data_message(256, &rows, i * 10, 7), collector)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    let flooding = send_paced(&c, &flood, &junk, 0);
    let (_, flooded) = tokio::join!(steady, flooding);
    let total = flooded + 202;
    c.until("everything", |k| k.messages_received.get() == total)
        .await;
    assert_eq!(kernel_drops(&[udp_port]), 0, "the kernel dropped datagrams");
    let k = c.stop().await;
    assert_eq!(k.dropped(DropReason::QueueFull), 0);
    assert_eq!(k.records_lost.get(), 0);
    // Garbage (version 0xabab) 40, a Set Length of 2: 40, a claimed 9000 octets: 40.
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 40);
    assert_eq!(k.dropped(DropReason::BadSetLength), 40);
    assert_eq!(k.dropped(DropReason::LengthMismatch), 40);
    assert_eq!(k.records_decoded.get(), 2000 + 40 * 4998);
    let batches = read_archive(&out);
    let exporters = column(&batches, "exporter");
    let interfaces = column(&batches, "ingressInterface");
    let mut good_rows: Vec<u32> = exporters
        .iter()
        .zip(&interfaces)
        .filter(|(e, _)| *e == "127.0.0.2")
        .map(|(_, i)| i.parse().unwrap())
        .collect();
    good_rows.sort_unstable();
    assert_eq!(good_rows, (0..2000).collect::<Vec<u32>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_netflow_packets_are_counted_by_reason_and_cost_a_steady_exporter_nothing() {
    let out = scratch("hostile-udp-netflow");
    let c = Running::start(&out, Config::default()).await;
    // Template 256: ingressInterface (4), packetDeltaCount (4).
    let template: &[u8] = &[1, 0, 0, 2, 0, 10, 0, 4, 0, 2, 0, 4];
    let record = |i: u32| [i.to_be_bytes(), 1_u32.to_be_bytes()].concat();
    let mut steady = vec![netflow9_packet(1, 0, 7, &[(0, template)])];
    for i in 1..=50 {
        steady.push(netflow9_packet(1, i, 7, &[(256, &record(i))]));
    }
    let mut v5_lying = vec![0, 5, 0, 31];
    v5_lying.resize(200, 0);
    let hostile = [
        // A FlowSet Length past the packet, and one below its header.
        netflow9_packet(1, 0, 7, &[(0, template)])
            .into_iter()
            .chain([1, 0, 0, 200, 0, 0, 0, 1])
            .collect(),
        [netflow9_packet(0, 1, 7, &[]), vec![1, 0, 0, 3]].concat(),
        // Template IDs below 256; an options scope length not a multiple of 4.
        netflow9_packet(1, 2, 7, &[(0, &[0, 255, 0, 1, 0, 10, 0, 4])]),
        netflow9_packet(
            1,
            3,
            7,
            &[(1, &[1, 1, 0, 3, 0, 4, 0, 2, 0, 4, 0, 34, 0, 4])],
        ),
        // Fields of no octets at all: a template no record could ever be read with.
        netflow9_packet(1, 4, 7, &[(0, &[1, 1, 0, 2, 0, 10, 0, 0, 0, 2, 0, 0])]),
        // A Count that disagrees: counted, the record still decodes.
        netflow9_packet(99, 5, 7, &[(0, template), (256, &record(1000))]),
        // A header cut short; a v5 count of 31 in 200 octets; versions not collected.
        netflow9_packet(0, 6, 7, &[])[..10].to_vec(),
        v5_lying,
        [0, 1, 0, 0].repeat(6),
        [0, 7, 0, 0].repeat(6),
        [0, 8, 0, 0].repeat(6),
    ];
    let e = exporter("127.0.0.2").await;
    let good = exporter("127.0.0.1").await;
    let sent = send_paced(&c, &e, &hostile, 0).await;
    send_paced(&c, &good, &steady, sent).await;
    let k = c.stop().await;
    let text = k.render();
    assert_eq!(k.dropped(DropReason::BadSetLength), 2, "{text}");
    assert_eq!(k.dropped(DropReason::BadTemplateId), 1, "{text}");
    assert_eq!(k.dropped(DropReason::BadScopeFieldCount), 1, "{text}");
    assert_eq!(k.dropped(DropReason::Truncated), 1, "{text}");
    assert_eq!(k.dropped(DropReason::LengthMismatch), 1, "{text}");
    assert_eq!(k.dropped(DropReason::UnsupportedVersion), 3, "{text}");
    assert_eq!(k.messages_dropped.get(), 9, "{text}");
    assert_eq!(k.templates_rejected.get(), 1, "{text}");
    assert_eq!(k.netflow_count_mismatches.get(), 1, "{text}");
    // The steady exporter's 50 records, and the one beside the lying Count.
    assert_eq!(k.records_decoded.get(), 51, "{text}");
    assert_eq!(k.packets_lost.get(), 0, "{text}");
    let interfaces = column(&read_archive(&out), "ingressInterface");
    for i in 1..=50 {
        assert!(
            interfaces.contains(&i.to_string()),
            "record {i} of the steady exporter"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_drops_other_sources_over_udp_and_tcp_before_parsing() {
    let out = scratch("allow-list");
    let config = Config {
        allow: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::default()
    };
    let c = Running::start(&out, config).await;
    let def = template(256, &INTERFACE_PACKETS);
    let records = |first: u32| -> Vec<Vec<u8>> {
        (first..first + 10)
            .map(|i| interface_packets(i, u64::from(i)))
            .collect()
    };
    // From 127.0.0.2: a UDP exporter and a TCP one, both refused.
    let outsider = exporter("127.0.0.2").await;
    outsider
        .send_to(&template_message(std::slice::from_ref(&def), 1), c.udp)
        .await
        .unwrap();
    outsider
        .send_to(&data_message(256, &records(100), 0, 1), c.udp)
        .await
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut tcp_outsider = socket.connect(c.tcp).await.unwrap();
    let _ = tokio::io::AsyncWriteExt::write_all(
        &mut tcp_outsider,
        &template_message(std::slice::from_ref(&def), 1),
    )
    .await;
    // From 127.0.0.1: archived in full, over UDP and TCP.
    let insider = exporter("127.0.0.1").await;
    insider
        .send_to(&template_message(std::slice::from_ref(&def), 1), c.udp)
        .await
        .unwrap();
    insider
        .send_to(&data_message(256, &records(0), 0, 1), c.udp)
        .await
        .unwrap();
    let mut tcp_insider = tokio::net::TcpStream::connect(c.tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp_insider,
        &[
            template_message(std::slice::from_ref(&def), 2),
            data_message(256, &records(10), 0, 2),
        ]
        .concat(),
    )
    .await
    .unwrap();
    c.until("the insider's records and the refusals", |k| {
        k.records_decoded.get() == 20 && k.dropped(DropReason::NotAllowed) == 3
    })
    .await;
    drop(tcp_insider);
    let k = c.stop().await;
    // Refused before any parsing: not even counted as received.
    assert_eq!(k.messages_received.get(), 4, "{}", k.render());
    let mut got: Vec<u32> = column(&read_archive(&out), "ingressInterface")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}
