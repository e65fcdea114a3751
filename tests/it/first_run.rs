//! What a new user does first, through the real binaries on their defaults: the README's round
//! trip (`flowvm collect` in one terminal, `flowvm export --pcap … --collector
//! 127.0.0.1:4739` in another, and a NetFlow v5 packet to the default UDP 2055), and a second
//! collector started by mistake on the same ports.
//!
//! The defaults listen on fixed ports (4739, 9739) of every address, so each test runs in a
//! network namespace of its own (`ip netns`, as root, which CI is): its loopback is the only
//! network, and no other test or program can hold its ports.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions: failing loudly is the point"
)]

use crate::common;
use crate::export_to_collect::archived_rows;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::flows::{Packet, S, pcap, pcap_frames, read_pcap, reference};
use common::netns::NetNs;
use common::{KillOnDrop, read_archive, scratch};

/// Starts `flowvm collect ARGS` and waits (bounded) until its listeners are up; its standard
/// error keeps draining into a thread.
fn start_collector(ns: &NetNs, dir: &Path, args: &[&str]) -> KillOnDrop {
    let mut child = ns
        .flowvm(dir, &[&["collect"], args].concat())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            // Every socket is bound before the first of these lines.
            Ok(line) if line.contains("Listening on UDP") => return KillOnDrop(child),
            Ok(line) => seen.push(line),
            Err(_) => panic!("flowvm collect {args:?} did not start: {seen:#?}"),
        }
    }
}

/// Sends SIGTERM and waits (bounded) for a clean exit: every file completed.
fn terminate(mut collector: KillOnDrop) {
    let pid = collector.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..200 {
        if let Some(status) = collector.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("flowvm collect did not stop on SIGTERM");
}

fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn the_readme_round_trip_works_on_the_defaults() {
    let ns = NetNs::new("readme");
    let dir = scratch("first-run-readme");
    let collector = start_collector(&ns, &dir, &[]);
    let capture = pcap("mixed.pcap");
    let export = run(ns.flowvm(
        &dir,
        &[
            "export",
            "--pcap",
            capture.to_str().unwrap(),
            "--collector",
            "127.0.0.1:4739",
        ],
    ));
    assert!(
        export.status.success(),
        "flowvm export failed on its defaults: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    // A NetFlow v5 packet (29 flows, from the real captures) to UDP 2055, also a default.
    let v5 = pcap_frames(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/captures/dpkt-unknown-netflow5.pcap"),
    )
    .remove(0)
    .1
    .split_off(14 + 20 + 8);
    let payload = dir.join("v5.bin");
    std::fs::write(&payload, v5).unwrap();
    let send = "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(open(sys.argv[1], 'rb').read(), ('127.0.0.1', 2055))";
    let mut python = ns.exec("python3");
    python.args(["-c", send]).arg(&payload);
    assert!(run(python).status.success());
    // On SIGTERM the collector reads what its sockets still hold before it completes files.
    terminate(collector);
    // The defaults: active 15 s, passive 120 s, record l3,l4; the archive in ./flows.
    let mut expected = reference(&read_pcap(&capture), 15 * S, 120 * S, Packet::l3_l4);
    expected.sort();
    let batches = read_archive(&dir.join("flows"));
    let (ipfix, netflow): (Vec<_>, Vec<_>) = batches
        .into_iter()
        .partition(|b| b.column_by_name("engineType").is_none());
    let got = archived_rows(&ipfix);
    assert_eq!(got, expected);
    assert_eq!(netflow.iter().map(|b| b.num_rows()).sum::<usize>(), 29);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_collector_on_the_same_udp_port_refuses_to_start() {
    let ns = NetNs::new("second");
    let dir = scratch("first-run-second");
    let first = start_collector(&ns, &dir, &["--no-tcp", "--out", "one"]);
    let second = run(ns.flowvm(&dir, &["collect", "--no-tcp", "--out", "two"]));
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("udp 0.0.0.0:4739") && last.contains("in use"),
        "{stderr}"
    );
    terminate(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn collectors_share_a_udp_port_only_when_asked() {
    let ns = NetNs::new("reuse");
    let dir = scratch("first-run-reuse");
    let shared = [
        "--no-tcp",
        "--reuse-port",
        "--listen",
        "127.0.0.1:4739",
        "--metrics",
        "off",
    ];
    let first = start_collector(&ns, &dir, &[&shared[..], &["--out", "one"]].concat());
    // Without --reuse-port a third cannot join them.
    let alone = run(ns.flowvm(
        &dir,
        &[
            "collect",
            "--no-tcp",
            "--listen",
            "127.0.0.1:4739",
            "--metrics",
            "off",
        ],
    ));
    assert_eq!(alone.status.code(), Some(1), "{alone:?}");
    let mut second = ns
        .flowvm(
            &dir,
            &[&["collect"], &shared[..], &["--out", "two"]].concat(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        second.0.try_wait().unwrap().is_none(),
        "a second collector that asked to share the port runs"
    );
    terminate(second);
    terminate(first);
    let _ = std::fs::remove_dir_all(&dir);
}
