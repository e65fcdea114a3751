//! The IPFIX Message Header (RFC 7011 §3.1) and the framing of whole Messages.

use nom::{
    IResult, Parser,
    number::complete::{be_u16, be_u32},
};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::ids::ObservationDomainId;
use crate::wire::set::Sets;
use crate::wire::{HEADER_LEN, VERSION};

/// The 16-byte Message Header (RFC 7011 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    /// Version Number; 0x000a for IPFIX.
    pub version: u16,
    /// Total length of the Message in octets, header and Sets included.
    pub length: u16,
    /// Seconds since the UNIX epoch at which the Message left the Exporter.
    pub export_time: u32,
    /// Data Records sent before this Message in this Observation Domain, modulo 2^32.
    pub sequence_number: u32,
    /// The Observation Domain the Message's records come from.
    pub observation_domain_id: ObservationDomainId,
}

type NomError<'a> = nom::error::Error<&'a [u8]>;

fn message_header(i: &[u8]) -> IResult<&[u8], MessageHeader, NomError<'_>> {
    let (i, (version, length, export_time, sequence_number, domain)) =
        (be_u16, be_u16, be_u32, be_u32, be_u32).parse(i)?;
    let observation_domain_id = ObservationDomainId(domain);
    Ok((
        i,
        MessageHeader {
            version,
            length,
            export_time,
            sequence_number,
            observation_domain_id,
        },
    ))
}

impl MessageHeader {
    /// Decodes a header and checks its Version Number and that its Length covers the header.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`] on fewer than 16 bytes,
    /// [`DecodeErrorKind::UnsupportedVersion`], or [`DecodeErrorKind::LengthMismatch`] for a
    /// Message Length below 16.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Ok((_, header)) = message_header(bytes) else {
            return Err(DecodeError::new(DecodeErrorKind::Truncated, bytes.len()));
        };
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.1
        //# Version of IPFIX to which this Message conforms.  The value of
        //# this field is 0x000a for the current version
        if header.version != VERSION {
            return Err(DecodeError::new(
                DecodeErrorKind::UnsupportedVersion(header.version),
                0,
            ));
        }
        if usize::from(header.length) < HEADER_LEN {
            let actual = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            let kind = DecodeErrorKind::LengthMismatch {
                header: header.length,
                actual,
            };
            return Err(DecodeError::new(kind, 2));
        }
        Ok(header)
    }

    /// Rewrites the Sequence Number of an encoded Message: an Exporting Process that sends
    /// Messages in another order than it finished them numbers them as they leave. A slice
    /// shorter than a header is left alone.
    pub fn set_sequence_number(message: &mut [u8], sequence_number: u32) {
        if let Some(dst) = message.get_mut(8..12) {
            dst.copy_from_slice(&sequence_number.to_be_bytes());
        }
    }

    /// Encodes the header into its 16 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let parts = [
            &self.version.to_be_bytes()[..],
            &self.length.to_be_bytes(),
            &self.export_time.to_be_bytes(),
            &self.sequence_number.to_be_bytes(),
            &self.observation_domain_id.0.to_be_bytes(),
        ];
        for (dst, src) in out.iter_mut().zip(parts.into_iter().flatten()) {
            *dst = *src;
        }
        out
    }
}

/// One whole IPFIX Message: its header and the bytes of its Sets.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The decoded header.
    pub header: MessageHeader,
    body: &'a [u8],
}

impl<'a> Message<'a> {
    /// Decodes a Message that must fill `bytes` exactly: one UDP datagram, or one TCP frame.
    ///
    /// # Errors
    /// Those of [`MessageHeader::decode`], and [`DecodeErrorKind::LengthMismatch`] when the
    /// Message Length differs from `bytes.len()`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header = MessageHeader::decode(bytes)?;
        //= https://www.rfc-editor.org/rfc/rfc7011#section-10.3.2
        //# Each IPFIX Message SHALL be contained in a single UDP datagram.
        if usize::from(header.length) != bytes.len() {
            let actual = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
            let kind = DecodeErrorKind::LengthMismatch {
                header: header.length,
                actual,
            };
            return Err(DecodeError::new(kind, 2));
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        Ok(Self { header, body })
    }

    /// The Sets of this Message, in order.
    pub fn sets(&self) -> Sets<'a> {
        Sets::new(self.body)
    }
}

/// Splits a stream of concatenated Messages (an IPFIX File, RFC 5655) into whole Messages.
///
/// Stops at the first header that cannot be framed, yielding its error once.
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Messages<'a> {
    /// Iterates over the Messages in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let framed = MessageHeader::decode(self.rest).and_then(|header| {
            self.rest
                .split_at_checked(usize::from(header.length))
                .ok_or_else(|| DecodeError::new(DecodeErrorKind::Truncated, self.rest.len()))
        });
        match framed {
            Ok((message, tail)) => {
                self.rest = tail;
                Some(Ok(message))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u16) -> MessageHeader {
        MessageHeader {
            version: VERSION,
            length,
            export_time: 0x5a5a_0001,
            sequence_number: 7,
            observation_domain_id: ObservationDomainId(12_345_678),
        }
    }

    #[test]
    fn header_round_trips() {
        let h = header(16);
        assert_eq!(MessageHeader::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn the_sequence_number_is_rewritten_in_place() {
        let mut bytes = header(16).encode();
        MessageHeader::set_sequence_number(&mut bytes, 0xdead_beef);
        let mut h = header(16);
        h.sequence_number = 0xdead_beef;
        assert_eq!(MessageHeader::decode(&bytes), Ok(h));
        let mut short = [0; 11];
        MessageHeader::set_sequence_number(&mut short, 1);
        assert_eq!(short, [0; 11]);
    }

    #[test]
    fn rejects_version_nine() {
        let mut bytes = header(16).encode();
        bytes[1] = 9;
        assert_eq!(
            Message::decode(&bytes)
                .map(|m| m.header)
                .map_err(|e| e.kind),
            Err(DecodeErrorKind::UnsupportedVersion(9))
        );
    }

    #[test]
    fn rejects_length_that_disagrees_with_the_datagram() {
        for length in [0, 15, 17, u16::MAX] {
            let kind = Message::decode(&header(length).encode())
                .map(|m| m.header)
                .map_err(|e| e.kind);
            assert!(
                matches!(kind, Err(DecodeErrorKind::LengthMismatch { header, actual: 16 }) if header == length)
            );
        }
    }

    #[test]
    fn splits_concatenated_messages_and_stops_at_a_truncated_one() {
        let mut file = Vec::new();
        file.extend_from_slice(&header(16).encode());
        file.extend_from_slice(&header(20).encode());
        file.extend_from_slice(&[0; 4]);
        file.extend_from_slice(&header(20).encode());
        let framed: Vec<_> = Messages::new(&file)
            .map(|m| m.map(<[u8]>::len).map_err(|e| e.kind))
            .collect();
        assert_eq!(framed, [Ok(16), Ok(20), Err(DecodeErrorKind::Truncated)]);
    }
}
