//! `flowvm collect` as users run it: the real binary, SIGTERM, and every record received
//! before the signal found in completed Parquet files.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{column, data_message, read_archive, scratch, template, template_message};

#[test]
fn sigterm_completes_every_file_and_loses_nothing_received() {
    let out = scratch("signal");
    let mut child = common::process::command(&out, "3600", &[]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut udp = None;
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if let Some(addr) = line.strip_prefix("listening udp ") {
            udp = Some(addr.parse::<std::net::SocketAddr>().unwrap());
        }
        if line.starts_with("metrics http") {
            break;
        }
    }
    assert!(
        banner.contains("rotate = 3600"),
        "every setting is printed:\n{banner}"
    );
    assert!(banner.contains("template_lifetime = 1800"), "{banner}");
    let udp = udp.unwrap();

    let exporter = UdpSocket::bind("127.0.0.1:0").unwrap();
    exporter
        .send_to(
            &template_message(&[template(256, &[(10, 4), (2, 8)])], 1),
            udp,
        )
        .unwrap();
    for i in 0..200_u32 {
        let mut r = i.to_be_bytes().to_vec();
        r.extend(u64::from(i).to_be_bytes());
        exporter
            .send_to(&data_message(256, &[r], i, 1), udp)
            .unwrap();
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Bounded: at most 30 s of 20 ms polls.
    let mut exit = None;
    for _ in 0..1500 {
        exit = child.try_wait().unwrap();
        if exit.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exit = exit.expect("collector did not stop within 30 s");
    assert!(exit.success(), "{exit:?}");
    let interfaces = column(&read_archive(&out), "ingressInterface");
    assert_eq!(
        interfaces,
        (0..200).map(|i: u32| i.to_string()).collect::<Vec<_>>()
    );
}
