//! The fuzz targets' oracles (`fuzz/src/oracles/`, the same files through `#[path]`) over every
//! input kept in `testdata/regressions/<target>/`: each crash the fuzzer found, minimized, after
//! its fix. Every kept input also has a named test below that says what the bug was.
//!
//! Run the fuzzers themselves with `fuzz/run-all SECONDS` (README, "Fuzzing").

#![expect(
    clippy::panic,
    reason = "test helpers: a missing kept input fails the test loudly"
)]

#[path = "../../fuzz/src/oracles/mod.rs"]
#[expect(
    unreachable_pub,
    reason = "the oracles are the fuzz crate's public API; here they are one module of the tests"
)]
mod oracles;

use std::path::{Path, PathBuf};

fn regressions(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/regressions")
        .join(target)
}

/// Runs the oracle of `target` on the kept input `name`.
fn replay(target: &str, name: &str) {
    let path = regressions(target).join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some((_, oracle)) = oracles::TARGETS.iter().find(|(t, _)| *t == target) else {
        panic!("no fuzz target {target}");
    };
    oracle(&data);
}

#[test]
fn every_kept_input_passes_its_oracle() {
    let mut replayed = 0;
    for (target, oracle) in oracles::TARGETS {
        let Ok(entries) = std::fs::read_dir(regressions(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap_or_default();
            oracle(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no kept input under testdata/regressions/");
}

/// The RFC 7011 Appendix A Messages, alone and as one stream, through the `collect_message`
/// oracle (the fuzzer's seeds), over UDP, TCP and an IPFIX File.
#[test]
fn the_appendix_a_messages_pass_the_collect_message_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ipfix");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    paths.sort();
    let mut stream = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let digits: Vec<u8> = text
            .lines()
            .flat_map(|l| l.split('#').next().unwrap_or("").bytes())
            .filter(u8::is_ascii_hexdigit)
            .collect();
        let message: Vec<u8> = digits
            .chunks_exact(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
        for control in [0x00, 0x01, 0x02] {
            let input: Vec<u8> = std::iter::once(control)
                .chain(message.iter().copied())
                .collect();
            oracles::collect_message::check(&input);
        }
        stream.extend(message);
    }
    assert_eq!(paths.len(), 10, "the Appendix A vectors");
    for control in [0x00, 0x01, 0x02, 0x04, 0x1c, 0x2d] {
        let input: Vec<u8> = std::iter::once(control)
            .chain(stream.iter().copied())
            .collect();
        oracles::collect_message::check(&input);
    }
}

/// A Message whose first Set has a reserved Set ID (4, RFC 7011 §3.3.2) and whose next Set has
/// a Set Length of 0. The decoder skips the reserved Set and goes on, as it should, but it
/// counted the skip (`reserved_set_id`) while checking, in the pass that must change nothing;
/// the bad Set Length then dropped the whole Message (§9.1), which was therefore counted under
/// two reasons, `reserved_set_id` and `bad_set_length`, for one Message, and a `reserved_set_id`
/// counted for a Set of a Message that was discarded. Fixed: the skip is a step of the plan,
/// counted when the plan is applied, so a dropped Message counts its one reason.
#[test]
fn collect_message_a_dropped_message_counts_one_reason_after_a_reserved_set() {
    replay("collect_message", "reserved-set-then-bad-set-length");
}

/// A `dateTimeMicroseconds` field alone whose NTP seconds lie before 1970 (1945-05-15, a
/// negative UNIX time), with a fraction that is not a whole microsecond. Found by running
/// `vm_differential` on a working tree where the VM's NTP conversion had begun rounding the
/// fraction to the nearest microsecond (commit e5a3f43) while the reference decoder still
/// truncated: the VM read 02:09:25.417969, the reference .417968. That commit changed the
/// reference too. Kept so that the VM and its reference (`vm/tests/reference/decoder.rs`)
/// cannot drift apart on sub-unit fractions and negative times.
#[test]
fn vm_differential_ntp_microseconds_before_1970_agree_with_the_reference() {
    replay("vm_differential", "ntp-microseconds-before-1970");
}

/// Every frame of the exporter's test captures (`testdata/pcap/`, pcap and pcapng) through the
/// `dissect_packet` oracle (the fuzzer's seeds): the dissector agrees with etherparse's lax and
/// strict slicing on real traffic, and every frame of them is metered.
#[test]
fn the_capture_frames_pass_the_dissect_packet_oracle() {
    use flowvm_exporter::capture::{LinkType, file};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pcap");
    let mut frames = 0;
    for name in ["mixed.pcap", "mixed.pcapng", "long.pcap", "many.pcap"] {
        let path = dir.join(name);
        let input =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let read = file::for_each_packet(std::io::BufReader::new(input), |p| {
            let link = match p.link {
                LinkType::Ethernet => 0,
                LinkType::LinuxSll => 1,
                LinkType::RawIp => 2,
                LinkType::Null => 3,
                LinkType::Other(_) => 255,
            };
            let snapped = u32::try_from(p.data.len()).map_or(0, |l| p.orig_len.saturating_sub(l));
            let input: Vec<u8> = [link, u8::try_from(snapped).unwrap_or(u8::MAX)]
                .into_iter()
                .chain(p.data.iter().copied())
                .collect();
            oracles::dissect_packet::check(&input);
            frames += 1;
            true
        });
        assert!(read.is_ok(), "{name}: {read:?}");
    }
    assert!(frames > 1000, "{frames} frames");
}

/// The export packets of every real capture (`testdata/captures/`: IPFIX, NetFlow v9 and v5)
/// through the `collect_packet` oracle (the fuzzer's seeds), over UDP with the clock still and
/// moving, and the NetFlow packets cut at every length, their counts and FlowSet lengths made
/// to lie, and their versions changed to ones flowvm does not collect: each packet is dropped
/// whole for one reason or decoded, and nothing is left held.
#[test]
fn the_capture_packets_pass_the_collect_packet_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/captures");
    let mut netflow = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        let packets: Vec<Vec<u8>> = crate::common::flows::pcap_frames(&path)
            .into_iter()
            .take(200)
            .filter_map(|(_, frame, _)| {
                let ihl = usize::from(frame.get(14)? & 15) * 4;
                frame.get(14 + ihl + 8..).map(<[u8]>::to_vec)
            })
            .collect();
        let framed = |packets: &[Vec<u8>]| -> Vec<u8> {
            packets
                .iter()
                .flat_map(|p| {
                    let len = u16::try_from(p.len()).unwrap_or(u16::MAX).to_be_bytes();
                    len.into_iter().chain(p.iter().copied())
                })
                .collect()
        };
        for control in [0x00, 0x24] {
            let input: Vec<u8> = [control].into_iter().chain(framed(&packets)).collect();
            oracles::collect_packet::check(&input);
        }
        netflow.extend(
            packets
                .into_iter()
                .filter(|p| matches!(p.get(..2), Some([0, 5 | 9]))),
        );
    }
    assert!(netflow.len() >= 5, "the NetFlow captures are missing");
    for packet in &netflow {
        let mut hostile = Vec::new();
        for len in 0..packet.len() {
            hostile.push(packet[..len].to_vec());
        }
        for (at, value) in [
            (1, 1_u8),
            (1, 7),
            (1, 8),
            (3, 31),
            (3, 0),
            (22, 0xff),
            (23, 3),
        ] {
            let mut p = packet.clone();
            if let Some(octet) = p.get_mut(at) {
                *octet = value;
                hostile.push(p);
            }
        }
        for p in hostile {
            let len = u16::try_from(p.len()).unwrap_or(u16::MAX).to_be_bytes();
            let input: Vec<u8> = [0x00].into_iter().chain(len).chain(p).collect();
            oracles::collect_packet::check(&input);
        }
    }
}

/// Every test capture (`testdata/pcap/`, `testdata/captures/`), whole and cut at every length
/// of its first 64 octets (file header, first record header) and every 331 octets to 4,000,
/// through the `capture_file` oracle: the in-place reader agrees with the stream reader, cut
/// records included.
#[test]
fn the_test_captures_and_their_cuts_pass_the_capture_file_oracle() {
    let mut checked = 0;
    for dir in ["testdata/pcap", "testdata/captures"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
        {
            let path = entry.path();
            if !path
                .extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng")
            {
                continue;
            }
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            oracles::capture_file::check(&data);
            // Each check costs the stream reader's 1 MiB buffer: cuts are chosen, not all.
            let steps = (64..data.len().min(4_000)).step_by(331);
            for cut in (0..data.len().min(64)).chain(steps) {
                oracles::capture_file::check(&data[..cut]);
                checked += 1;
            }
        }
    }
    assert!(checked > 800, "{checked} inputs");
}

/// `capture_file` found the in-place reader masking the top bits of a legacy pcap's link type
/// where the stream reader takes the whole field: the two then disagreed on the link of every
/// packet of a file whose link type field was 0xffffffff.
#[test]
fn a_link_type_with_its_high_bits_set_is_read_whole() {
    replay("capture_file", "link-type-with-high-bits");
}

/// `capture_file` found pcap-parser subtracting 12 from a pcapng block's length unchecked (a
/// Process Information Block of 4 to 11 octets): an overflow panic in a debug build, a wrapped
/// length in a release one. Both readers now refuse such a block as damage, before pcap-parser
/// sees it.
#[test]
fn a_pcapng_block_shorter_than_its_header_is_damage_not_a_panic() {
    replay("capture_file", "pcapng-block-shorter-than-its-header");
    // The same in the last 8 to 11 octets of a big-endian section (the check first needed 12).
    replay("capture_file", "pcapng-short-block-at-the-end");
}

/// `capture_file` found a "modified" pcap (Kuznetzov's, magic 0xa1b2cd34, 24-octet record
/// headers), which the stream reader reads, refused by the in-place reader as no capture.
#[test]
fn a_modified_pcap_is_read_in_place_as_the_stream_reader_reads_it() {
    replay("capture_file", "modified-pcap");
}

/// `dissect_packet` found etherparse's IPv6 extension iterator reading past the end of the
/// headers of a frame whose Hop-by-Hop header names another Hop-by-Hop header (its lax slice
/// stops at the second; the iterator then parses it from no octets: undefined behaviour,
/// caught by a debug build's precondition check). The dissector now walks the extension
/// headers itself, each length checked against the octets.
#[test]
fn an_ipv6_hop_by_hop_header_naming_another_is_read_without_overrunning() {
    replay("dissect_packet", "ipv6-hop-by-hop-naming-another");
}

/// A field of 0 octets whose type has no reading in 0 (an unsigned32) compiles to a column of
/// its octets, empty each record, as the compiler keeps any length that fits no reading; the
/// template is not rejected.
#[test]
fn compile_template_an_unsigned32_of_zero_octets_is_kept_as_empty_octets() {
    replay(
        "compile_template",
        "an-unsigned32-of-zero-octets-kept-as-empty-octets",
    );
}
