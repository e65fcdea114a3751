//! Reading pcap and pcapng captures in file order, with each packet's own timestamp (the clock
//! of an offline replay): from a file mapped into memory, packets read in place
//! ([`MappedCapture`], [`for_each_packet_in`]), or from a stream through `pcap-parser`
//! ([`for_each_packet`]).

use std::io::Read;
use std::path::Path;

use pcap_parser::pcapng::Block;
use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock};
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

use crate::capture::{CapturedPacket, LinkType, sys};

/// Whether `head` starts like a pcap or pcapng file.
pub fn is_capture(head: &[u8]) -> bool {
    head.starts_with(&SECTION_HEADER) || head.first_chunk::<4>().and_then(legacy_format).is_some()
}

/// A legacy pcap's format by its magic: byte order swapped (big-endian), nanosecond stamps,
/// and the octets after the 16 of a record header (8 in Kuznetzov's "modified" pcap: ifindex,
/// protocol, packet type; little-endian only, as pcap-parser reads it).
fn legacy_format(magic: &[u8; 4]) -> Option<(bool, bool, usize)> {
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false, 0)),
        [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true, 0)),
        [0x34, 0xcd, 0xb2, 0xa1] => Some((false, false, 8)),
        [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false, 0)),
        [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true, 0)),
        _ => None,
    }
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

/// How far ahead of the record being read [`for_each_packet_in`] asks for a capture's lines.
const READ_AHEAD: usize = 4096;

/// A capture file mapped into memory: packets are read where they lie, with no copy.
#[derive(Debug)]
pub struct MappedCapture(sys::Mapping);

impl MappedCapture {
    /// Maps the capture at `path`.
    ///
    /// # Errors
    /// The file cannot be opened or mapped (a pipe or a device cannot be).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        sys::Mapping::of_file(&std::fs::File::open(path)?).map(Self)
    }

    /// The file's octets.
    pub fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// Unmaps the whole pages within `range` of [`Self::bytes`] for a reader done with them
    /// (a later read maps them in again): see [`crate::run::replay_pipelined`].
    pub fn unmap_pages(&self, range: std::ops::Range<usize>) {
        self.0.unmap_pages(range);
    }
}

/// What a capture's blocks say about the packets after them: the link type and timestamp
/// units of a legacy pcap, and those of each pcapng interface.
struct Interfaces {
    /// Legacy pcap: link type and nanoseconds per timestamp unit.
    legacy: (LinkType, u64),
    /// pcapng: per interface, link type, timestamp units per second, timestamp offset.
    ng: Vec<(LinkType, u64, u64)>,
    /// pcapng: the current section's byte order.
    big_endian: bool,
}

impl Interfaces {
    fn new() -> Self {
        Self {
            legacy: (LinkType::Ethernet, 1_000),
            ng: Vec::new(),
            big_endian: false,
        }
    }

    /// Hands the packet of `block` to `packet`, or notes what the block says; `false` when
    /// `packet` asked to stop.
    fn block(
        &mut self,
        block: PcapBlockOwned<'_>,
        packet: &mut impl FnMut(&CapturedPacket<'_>) -> bool,
    ) -> bool {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                let unit = if h.is_nanosecond_precision() {
                    1
                } else {
                    1_000
                };
                self.legacy = (LinkType::from_pcap(h.network.0), unit);
                true
            }
            PcapBlockOwned::Legacy(b) => {
                let len = usize::try_from(b.caplen).unwrap_or(0).min(b.data.len());
                packet(&CapturedPacket {
                    timestamp_ns: u64::from(b.ts_sec) * 1_000_000_000
                        + u64::from(b.ts_usec) * self.legacy.1,
                    link: self.legacy.0,
                    data: b.data.get(..len).unwrap_or_default(),
                    orig_len: b.origlen,
                    interface: 0,
                })
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                self.ng.push((
                    LinkType::from_pcap(idb.linktype.0),
                    idb.ts_resolution().unwrap_or(1_000_000),
                    u64::try_from(idb.if_tsoffset).unwrap_or(0),
                ));
                true
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let (link, resolution, ts_offset) = self
                    .ng
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
                let link = self.ng.first().map_or(LinkType::Ethernet, |i| i.0);
                packet(&CapturedPacket {
                    timestamp_ns: 0,
                    link,
                    data: spb.data,
                    orig_len: spb.origlen,
                    interface: 0,
                })
            }
            PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                self.big_endian = shb.big_endian();
                self.ng.clear();
                true
            }
            PcapBlockOwned::NG(_) => true,
        }
    }

    /// `Err` when the pcapng block at the start of `rest` announces a length below the 12
    /// octets every block has (pcap-parser subtracts 12 from it unchecked).
    fn check_block(&self, rest: &[u8], at: usize) -> Result<(), CaptureError> {
        let Some(head) = rest.first_chunk::<8>() else {
            return Ok(());
        };
        let big_endian = if head[..4] == SECTION_HEADER {
            // A section header's own byte order, from its magic (when it is there).
            rest.get(8..12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d])
        } else {
            self.big_endian
        };
        let len = [head[4], head[5], head[6], head[7]];
        let len = if big_endian {
            u32::from_be_bytes(len)
        } else {
            u32::from_le_bytes(len)
        };
        if len < 12 {
            return Err(CaptureError(format!(
                "capture damaged at octet {at}: a block of {len} octets, shorter than its own header"
            )));
        }
        Ok(())
    }
}

/// A pcapng Section Header Block's type, the same in either byte order.
const SECTION_HEADER: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Calls `packet` for every packet of a capture read from a stream, in file order; stops
/// early when it returns `false`.
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
    let mut interfaces = Interfaces::new();
    let pcapng = reader.data().starts_with(&SECTION_HEADER);
    loop {
        if pcapng {
            interfaces.check_block(reader.data(), reader.consumed())?;
        }
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
        let go_on = interfaces.block(block, &mut packet);
        reader.consume(offset);
        if !go_on {
            return Ok(());
        }
    }
}

/// Calls `packet` for every packet of a capture held in memory (a [`MappedCapture`]), in file
/// order, each packet's octets where they lie; stops early when `packet` returns `false`.
/// Legacy pcap records are read here (a 24-octet file header, then 16-octet record headers in
/// the file's byte order; 24-octet ones in a modified pcap); pcapng blocks are walked by their
/// lengths and each parsed by `pcap-parser`.
///
/// # Errors
/// Input that is not a capture, or a capture damaged or cut part-way (packets before the damage
/// have been delivered).
pub fn for_each_packet_in(
    capture: &[u8],
    packet: impl FnMut(&CapturedPacket<'_>) -> bool,
) -> Result<(), CaptureError> {
    let Some(header) = capture.first_chunk::<24>() else {
        return Err(CaptureError(
            "not a pcap or pcapng capture: shorter than a file header".to_owned(),
        ));
    };
    let magic = header.first_chunk::<4>().and_then(legacy_format);
    let Some((swap, nanosecond, extra)) = magic else {
        return for_each_block(capture, packet);
    };
    let mut network = [0; 4];
    network.copy_from_slice(&header[20..24]);
    let network = if swap {
        u32::from_be_bytes(network)
    } else {
        u32::from_le_bytes(network)
    };
    let records = Records {
        // The whole field, as pcap-parser reads it (FCS bits set make it a link type not read).
        link: LinkType::from_pcap(network.cast_signed()),
        unit: if nanosecond { 1 } else { 1_000 },
        extra,
    };
    // The byte order is a constant of each copy of the loop, not a branch per field.
    if swap {
        records.walk::<true>(capture, packet)
    } else {
        records.walk::<false>(capture, packet)
    }
}

/// How a legacy pcap file's records read: its link type, its timestamps' unit (nanoseconds
/// per fraction) and the octets a modified pcap's record header adds.
struct Records {
    link: LinkType,
    unit: u64,
    extra: usize,
}

impl Records {
    /// Calls `packet` for each record after the file header, its fields in big-endian order if
    /// `SWAPPED`, else little-endian.
    fn walk<const SWAPPED: bool>(
        &self,
        capture: &[u8],
        mut packet: impl FnMut(&CapturedPacket<'_>) -> bool,
    ) -> Result<(), CaptureError> {
        let field = |chunk: &[u8; 16], i: usize| {
            let mut octets = [0; 4];
            octets.copy_from_slice(&chunk[i * 4..i * 4 + 4]);
            if SWAPPED {
                u32::from_be_bytes(octets)
            } else {
                u32::from_le_bytes(octets)
            }
        };
        let mut records = capture.get(24..).unwrap_or_default();
        let mut prefetched = 24;
        while !records.is_empty() {
            let offset = capture.len() - records.len();
            let cut = || CaptureError(format!("capture cut short at octet {offset}"));
            let (record, rest) = records.split_first_chunk::<16>().ok_or_else(cut)?;
            let rest = rest.get(self.extra..).ok_or_else(cut)?;
            let caplen = usize::try_from(field(record, 2)).unwrap_or(usize::MAX);
            let (data, rest) = rest.split_at_checked(caplen).ok_or_else(cut)?;
            records = rest;
            // Every line up to READ_AHEAD past this record is asked for before it is needed:
            // the next record's place depends on this one's length, so the header reads would
            // otherwise wait for memory one after the other.
            let end = capture.len() - records.len() + READ_AHEAD;
            while prefetched < end {
                sys::prefetch(capture, prefetched);
                prefetched += 64;
            }
            let go_on = packet(&CapturedPacket {
                timestamp_ns: u64::from(field(record, 0)) * 1_000_000_000
                    + u64::from(field(record, 1)) * self.unit,
                link: self.link,
                data,
                orig_len: field(record, 3),
                interface: 0,
            });
            if !go_on {
                break;
            }
        }
        Ok(())
    }
}

/// [`for_each_packet_in`] for a pcapng capture: blocks walked by their lengths, each parsed
/// by pcap-parser once its length is checked.
fn for_each_block(
    capture: &[u8],
    mut packet: impl FnMut(&CapturedPacket<'_>) -> bool,
) -> Result<(), CaptureError> {
    if !capture.starts_with(&SECTION_HEADER) {
        return Err(CaptureError(
            "not a pcap or pcapng capture: no file or section header".to_owned(),
        ));
    }
    let mut interfaces = Interfaces::new();
    let mut rest = capture;
    while !rest.is_empty() {
        let at = capture.len() - rest.len();
        interfaces.check_block(rest, at)?;
        let parsed = if rest.starts_with(&SECTION_HEADER) {
            parse_sectionheaderblock(rest).map(|(r, shb)| (r, Block::SectionHeader(shb)))
        } else if interfaces.big_endian {
            parse_block_be(rest)
        } else {
            parse_block_le(rest)
        };
        let (after, block) = match parsed {
            Ok(parsed) => parsed,
            Err(pcap_parser::nom::Err::Incomplete(_)) => {
                return Err(CaptureError(format!("capture cut short at octet {at}")));
            }
            Err(e) => {
                return Err(CaptureError(format!(
                    "capture damaged at octet {at}: {e:?}"
                )));
            }
        };
        rest = after;
        if !interfaces.block(PcapBlockOwned::from(block), &mut packet) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Each packet, every field and octet of it, as its `Debug` text.
    type Seen = Vec<String>;

    fn seen_in(capture: &[u8]) -> (Seen, Result<(), CaptureError>) {
        let mut seen = Vec::new();
        let done = for_each_packet_in(capture, |p| {
            seen.push(format!("{p:?}"));
            true
        });
        (seen, done)
    }

    fn seen_streamed(capture: &[u8]) -> Seen {
        let mut seen = Vec::new();
        for_each_packet(capture, |p| {
            seen.push(format!("{p:?}"));
            true
        })
        .unwrap_or_else(|e| unreachable!("a test capture reads: {e}"));
        seen
    }

    fn test_captures() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut captures = Vec::new();
        for dir in ["pcap", "captures"] {
            let dir = format!("{}/../testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path
                    .extension()
                    .is_some_and(|e| e == "pcap" || e == "pcapng")
                {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    captures.push((path, bytes));
                }
            }
        }
        captures.sort();
        captures
    }

    /// A legacy capture's file header turned to big-endian, and each record's header too.
    fn big_endian(little: &[u8]) -> Vec<u8> {
        let swap = |out: &mut Vec<u8>, words: &[u8]| {
            for w in words.chunks(4) {
                out.extend(w.iter().rev());
            }
        };
        let mut out = Vec::new();
        swap(&mut out, &little[..4]);
        out.extend([little[5], little[4], little[7], little[6]]);
        swap(&mut out, &little[8..24]);
        let mut rest = &little[24..];
        while let Some((record, after)) = rest.split_first_chunk::<16>() {
            let caplen = u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
            swap(&mut out, record);
            let (data, after) = after.split_at(caplen as usize);
            out.extend_from_slice(data);
            rest = after;
        }
        out
    }

    #[test]
    fn read_in_place_equals_the_stream_reader_on_every_test_capture() {
        let captures = test_captures();
        assert!(captures.len() >= 10, "{} captures", captures.len());
        for (path, bytes) in &captures {
            let (seen, done) = seen_in(bytes);
            assert_eq!(done, Ok(()), "{}", path.display());
            assert!(!seen.is_empty(), "{}", path.display());
            assert_eq!(seen, seen_streamed(bytes), "{}", path.display());
            if bytes.starts_with(&[0xd4, 0xc3, 0xb2, 0xa1]) {
                let swapped = big_endian(bytes);
                assert_eq!(
                    seen_in(&swapped),
                    (seen, Ok(())),
                    "{} as BE",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn a_mapped_file_reads_as_its_bytes() {
        let (path, bytes) = test_captures().swap_remove(0);
        let mapped = MappedCapture::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(mapped.bytes(), bytes.as_slice());
        let empty = std::env::temp_dir().join(format!("flowvm-empty-{}.pcap", std::process::id()));
        std::fs::write(&empty, b"").unwrap_or_else(|e| unreachable!("{e}"));
        let mapped = MappedCapture::open(&empty).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(mapped.bytes().is_empty());
        assert!(seen_in(mapped.bytes()).1.is_err());
        std::fs::remove_file(&empty).unwrap_or_else(|e| unreachable!("{e}"));
    }

    /// Pages unmapped behind a reader read the same when read again: the file's pages are
    /// mapped in anew, whatever the range (past the end, not on page boundaries, empty).
    #[test]
    fn unmapped_pages_read_the_same_again() {
        let path = std::env::temp_dir().join(format!("flowvm-pages-{}.bin", std::process::id()));
        let bytes: Vec<u8> = (0..5 * 4096 + 100_u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
        let mapped = MappedCapture::open(&path).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(mapped.bytes(), bytes.as_slice());
        let ranges = [
            (100, 4 * 4096 + 7),
            (4096, 8192),
            (9, 9),
            (0, usize::MAX),
            (7_000, 3_000),
        ];
        for (start, end) in ranges {
            mapped.unmap_pages(start..end);
            assert_eq!(mapped.bytes(), bytes.as_slice(), "{start}..{end}");
        }
        std::fs::remove_file(&path).unwrap_or_else(|e| unreachable!("{e}"));
    }

    #[test]
    fn a_cut_capture_delivers_what_comes_before_the_cut_then_says_where() {
        let (_, bytes) = test_captures()
            .into_iter()
            .find(|(p, _)| p.ends_with("pcap/many.pcap"))
            .unwrap_or_else(|| unreachable!("many.pcap"));
        let (whole, _) = seen_in(&bytes);
        let cut = &bytes[..bytes.len() - 5];
        let (seen, done) = seen_in(cut);
        assert_eq!(seen.as_slice(), &whole[..whole.len() - 1]);
        let error = done.err().map(|e| e.0).unwrap_or_default();
        assert!(error.starts_with("capture cut short at octet "), "{error}");
    }

    proptest! {
        /// Any octets after a valid file header: packets or an error, never a panic or a read
        /// past the input.
        #[test]
        fn damaged_records_are_errors_not_panics(
            magic in prop::sample::select(vec![
                [0xd4_u8, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4], [0x0a, 0x0d, 0x0d, 0x0a],
            ]),
            rest in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut capture = magic.to_vec();
            capture.extend_from_slice(&rest);
            let mut total = 0;
            let _ = for_each_packet_in(&capture, |p| {
                total += p.data.len();
                true
            });
            prop_assert!(total <= capture.len());
        }
    }
}
