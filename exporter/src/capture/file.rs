//! Reading pcap and pcapng captures through `pcap-parser`, in file order, with each packet's
//! own timestamp (the clock of an offline replay).

use std::io::Read;

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

use crate::capture::{CapturedPacket, LinkType};

/// Whether `head` starts like a pcap or pcapng file.
pub fn is_capture(head: &[u8]) -> bool {
    matches!(
        head.get(..4),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    )
}

/// A capture that could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError(pub String);

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaptureError {}

/// Calls `packet` for every packet of a capture, in file order; stops early when it returns
/// `false`.
///
/// # Errors
/// Input that is not a capture, or a capture damaged part-way (packets before the damage have
/// been delivered).
pub fn for_each_packet(
    input: impl Read + Send,
    mut packet: impl FnMut(&CapturedPacket<'_>) -> bool,
) -> Result<(), CaptureError> {
    let mut reader = create_reader(1 << 20, input)
        .map_err(|e| CaptureError(format!("not a pcap or pcapng capture: {e:?}")))?;
    // Legacy pcap: link type and nanoseconds per timestamp unit.
    let mut legacy = (LinkType::Ethernet, 1_000_u64);
    // pcapng: per interface, link type, timestamp units per second, timestamp offset.
    let mut interfaces: Vec<(LinkType, u64, u64)> = Vec::new();
    loop {
        let (offset, block) = match reader.next() {
            Ok(next) => next,
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                reader
                    .refill()
                    .map_err(|e| CaptureError(format!("capture: {e:?}")))?;
                continue;
            }
            Err(e) => return Err(CaptureError(format!("capture damaged: {e:?}"))),
        };
        let go_on = match block {
            PcapBlockOwned::LegacyHeader(h) => {
                let unit = if h.is_nanosecond_precision() {
                    1
                } else {
                    1_000
                };
                legacy = (LinkType::from_pcap(h.network.0), unit);
                true
            }
            PcapBlockOwned::Legacy(b) => {
                let len = usize::try_from(b.caplen).unwrap_or(0).min(b.data.len());
                packet(&CapturedPacket {
                    timestamp_ns: u64::from(b.ts_sec) * 1_000_000_000
                        + u64::from(b.ts_usec) * legacy.1,
                    link: legacy.0,
                    data: b.data.get(..len).unwrap_or_default(),
                    orig_len: b.origlen,
                    interface: 0,
                })
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                interfaces.push((
                    LinkType::from_pcap(idb.linktype.0),
                    idb.ts_resolution().unwrap_or(1_000_000),
                    u64::try_from(idb.if_tsoffset).unwrap_or(0),
                ));
                true
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let (link, resolution, ts_offset) = interfaces
                    .get(usize::try_from(epb.if_id).unwrap_or(usize::MAX))
                    .copied()
                    .unwrap_or((LinkType::Ethernet, 1_000_000, 0));
                let (seconds, fraction) = epb.decode_ts(ts_offset, resolution);
                let nanos = u64::from(fraction) * 1_000_000_000 / resolution.max(1);
                let len = usize::try_from(epb.caplen).unwrap_or(0).min(epb.data.len());
                packet(&CapturedPacket {
                    timestamp_ns: u64::from(seconds) * 1_000_000_000 + nanos,
                    link,
                    data: epb.data.get(..len).unwrap_or_default(),
                    orig_len: epb.origlen,
                    interface: epb.if_id,
                })
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let link = interfaces.first().map_or(LinkType::Ethernet, |i| i.0);
                packet(&CapturedPacket {
                    timestamp_ns: 0,
                    link,
                    data: spb.data,
                    orig_len: spb.origlen,
                    interface: 0,
                })
            }
            PcapBlockOwned::NG(_) => true,
        };
        reader.consume(offset);
        if !go_on {
            return Ok(());
        }
    }
}
