//! `flowvm decode` on an IPFIX File (RFC 5655) and on a pcap of IPFIX over UDP, through the
//! built binary, into the same archive the collector writes.

#![expect(clippy::unwrap_used, reason = "the capture builder fails loudly")]

use crate::common;

use std::process::Command;

use common::{column, data_message, read_archive, scratch, template, template_message};

/// A classic pcap (Ethernet) of UDP datagrams from 192.0.2.9:`sport` to 192.0.2.1:4739,
/// one second apart, the middle one VLAN-tagged.
fn pcap(payloads: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4_u32.to_le_bytes());
    out.extend(2_u16.to_le_bytes());
    out.extend(4_u16.to_le_bytes());
    out.extend([0; 8]);
    out.extend(65_535_u32.to_le_bytes());
    out.extend(1_u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (n, (sport, payload)) in payloads.iter().enumerate() {
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if n == 1 {
            frame.extend([0x81, 0x00, 0x00, 0x07]);
        }
        frame.extend([0x08, 0x00]);
        let udp_len = u16::try_from(8 + payload.len()).unwrap();
        let ip_len = 20 + udp_len;
        frame.extend([0x45, 0]);
        frame.extend(ip_len.to_be_bytes());
        frame.extend([0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 9, 192, 0, 2, 1]);
        frame.extend(sport.to_be_bytes());
        frame.extend(4739_u16.to_be_bytes());
        frame.extend(udp_len.to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(payload);
        let len = u32::try_from(frame.len()).unwrap();
        out.extend((1_700_000_000_u32 + u32::try_from(n).unwrap()).to_le_bytes());
        out.extend(0_u32.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend(frame);
    }
    out
}

fn record(interface: u32) -> Vec<u8> {
    let mut r = interface.to_be_bytes().to_vec();
    r.extend(u64::from(interface * 10).to_be_bytes());
    r
}

#[test]
fn decodes_ipfix_files_and_pcaps_into_the_archive() {
    let dir = scratch("decode");
    let fields = [(10, 4), (2, 8)];
    // The IPFIX File: data before its template, in one file.
    let mut file = data_message(256, &[record(1), record(2)], 0, 1);
    file.extend(template_message(&[template(256, &fields)], 1));
    file.extend(data_message(256, &[record(3)], 2, 1));
    std::fs::write(dir.join("export.ipfix"), &file).unwrap();
    // The capture: two exporters (source ports) reusing template 256 with other layouts.
    let capture = pcap(&[
        (5000, template_message(&[template(256, &fields)], 9)),
        (5000, data_message(256, &[record(40), record(41)], 0, 9)),
        (6000, template_message(&[template(256, &[(10, 4)])], 9)),
        (6000, data_message(256, &[[0, 0, 0, 99].to_vec()], 0, 9)),
    ]);
    std::fs::write(dir.join("capture.pcap"), &capture).unwrap();

    let out = dir.join("flows");
    let output = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("decode")
        .arg(dir.join("export.ipfix"))
        .arg(dir.join("capture.pcap"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("6 records (2 decoded late)"), "{stdout}");
    let batches = read_archive(&out);
    let mut interfaces = column(&batches, "ingressInterface");
    interfaces.sort();
    assert_eq!(interfaces, ["1", "2", "3", "40", "41", "99"]);
    let exporters = column(&batches, "exporter");
    assert_eq!(exporters.iter().filter(|e| *e == "192.0.2.9").count(), 3);
    assert_eq!(exporters.iter().filter(|e| *e == "file:0").count(), 3);
    // Partitions come from the input's own time (2023-11-14 22:13 UTC), not the clock.
    let files = common::archive_files(&out);
    assert!(
        files
            .iter()
            .all(|f| f.to_string_lossy().contains("date=2023-11-14/hour=22")),
        "{files:?}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .args(["decode", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}
