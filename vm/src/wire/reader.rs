//! The one cursor over untrusted bytes in this crate.

use crate::error::{DecodeError, DecodeErrorKind};

/// A forward-only cursor over untrusted bytes.
///
/// Every read is bounds-checked and fails with [`DecodeErrorKind::Truncated`]; nothing here can
/// panic, whatever the input.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    /// Offset of `rest[0]` from the start of the IPFIX Message.
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts a cursor at offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            offset: 0,
        }
    }

    /// Starts a cursor whose first byte sits `offset` bytes into the Message.
    pub fn at(bytes: &'a [u8], offset: usize) -> Self {
        Self {
            rest: bytes,
            offset,
        }
    }

    /// Bytes not yet read.
    pub fn len(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Offset of the next byte from the start of the Message.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// An error of `kind` at the current offset.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(kind, self.offset)
    }

    /// Borrows the next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(len) else {
            return Err(self.error(DecodeErrorKind::Truncated));
        };
        self.rest = tail;
        self.offset += len; // bounded by the input length
        Ok(head)
    }

    /// Reads a packet's two-octet version field, which must be `version`.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`], or [`DecodeErrorKind::UnsupportedVersion`] with the
    /// version found.
    pub fn version(&mut self, version: u16) -> Result<(), DecodeError> {
        let at = self.offset;
        match self.u16()? {
            found if found == version => Ok(()),
            found => Err(DecodeError::new(
                DecodeErrorKind::UnsupportedVersion(found),
                at,
            )),
        }
    }

    /// Reads a fixed-size array; the building block for the integer readers.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let Some((head, tail)) = self.rest.split_first_chunk::<N>() else {
            return Err(self.error(DecodeErrorKind::Truncated));
        };
        self.rest = tail;
        self.offset += N;
        Ok(*head)
    }

    /// Reads one octet.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array().map(u8::from_be_bytes)
    }

    /// Reads a network-order `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a network-order `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads the length prefix of a variable-length field (RFC 7011 §7): one length octet, or
    /// 255 followed by a two-octet length.
    pub fn var_len_prefix(&mut self) -> Result<usize, DecodeError> {
        Ok(match self.u8()? {
            255 => usize::from(self.u16()?),
            short => usize::from(short),
        })
    }

    /// Reads a variable-length field (RFC 7011 §7) and borrows its content.
    pub fn var_len(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.var_len_prefix()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_var_len_field_is_rejected() {
        let field = [255, 0x01, 0x00]
            .iter()
            .copied()
            .chain([7; 256])
            .collect::<Vec<u8>>();
        assert_eq!(Reader::new(&field).var_len().map(<[u8]>::len), Ok(256));
        for len in 0..field.len() {
            let mut r = Reader::new(&field[..len]);
            assert_eq!(
                r.var_len().map_err(|e| e.kind),
                Err(DecodeErrorKind::Truncated),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn short_var_len_form_reads_one_length_octet() {
        let mut r = Reader::new(&[3, b'a', b'b', b'c', 9]);
        assert_eq!(r.var_len(), Ok(&b"abc"[..]));
        assert_eq!(r.offset(), 4);
        assert_eq!(r.u8(), Ok(9));
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_reports_the_offset_of_the_failed_read() {
        let mut r = Reader::at(&[0, 1, 2], 16);
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(
            r.u32(),
            Err(DecodeError::new(DecodeErrorKind::Truncated, 18))
        );
    }
}
