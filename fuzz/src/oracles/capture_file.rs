//! `capture_file`: any octets as a capture file.
//!
//! Oracle: reading them in place (`for_each_packet_in`, what `flowvm export --pcap` does over a
//! mapped file) never panics, and agrees with the stream reader (`for_each_packet`, pcap-parser
//! over a `Read`, what `flowvm decode` uses): the packets both deliver are the same, in the same
//! order, field for field; and where the stream reader reads a capture to its end, the in-place
//! reader delivers every one of its packets (it may still report a record cut short at the end,
//! which the stream reader drops without a word).

use flowvm_exporter::capture::file::{CaptureError, for_each_packet, for_each_packet_in};
use flowvm_exporter::capture::{CapturedPacket, LinkType};

/// A packet as (timestamp, link, octets, wire length, interface).
type Packet = (u64, LinkType, Vec<u8>, u32, u32);

fn owned(p: &CapturedPacket<'_>) -> Packet {
    (
        p.timestamp_ns,
        p.link,
        p.data.to_vec(),
        p.orig_len,
        p.interface,
    )
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let mut in_place = Vec::new();
    let read_in_place = for_each_packet_in(data, |p| {
        in_place.push(owned(p));
        true
    });
    let mut streamed = Vec::new();
    let read_streamed = for_each_packet(data, |p| {
        streamed.push(owned(p));
        true
    });
    let common = in_place.len().min(streamed.len());
    assert_eq!(
        in_place.get(..common),
        streamed.get(..common),
        "the two readers disagree ({read_in_place:?}, {read_streamed:?})"
    );
    if read_streamed.is_ok() {
        assert_eq!(
            in_place.len(),
            streamed.len(),
            "the stream reader read to the end; in place: {read_in_place:?}"
        );
        if let Err(CaptureError(e)) = read_in_place {
            assert!(e.starts_with("capture cut short"), "{e}");
        }
    }
}
