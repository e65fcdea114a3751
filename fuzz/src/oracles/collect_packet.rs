//! `collect_packet`: the collector's decode path on arbitrary export packets of every protocol
//! it collects: IPFIX, NetFlow v9 and v5 (told apart by their version field).
//!
//! Input: one control octet (as `collect_message`'s), then packets, each behind a two-octet
//! length (what a UDP datagram's length gives the collector); a length past the input makes
//! the rest one packet. NetFlow packets have no length of their own, so this framing, not
//! IPFIX's Message Length, lets the fuzzer build several in one input.
//!
//! Oracle: `collect_message`'s, packet by packet ([`super::collect_message::run`]).

/// Splits `input` into packets by their two-octet length prefixes.
pub fn packets(mut input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, rest)) = input.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let (packet, rest) = rest.split_at_checked(len).unwrap_or((rest, &[]));
        out.push(packet);
        input = rest;
    }
    out
}

/// Runs the oracle on one input.
pub fn check(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    super::collect_message::run(control, &packets(rest));
}
