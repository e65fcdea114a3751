//! Set Headers and the walk over the Sets of a Message (RFC 7011 §3.3).

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::ids::{SetId, TemplateId};
use crate::wire::reader::Reader;
use crate::wire::{HEADER_LEN, SET_HEADER_LEN};

/// One Set: its ID and the bytes after its Set Header (records and padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Set<'a> {
    /// The Set ID.
    pub id: SetId,
    /// The Set's content, without its header.
    pub body: &'a [u8],
    /// Offset of `body` from the start of the Message, for error reports.
    pub offset: usize,
}

/// What a Set holds, by its Set ID (RFC 7011 §3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// A Template Set (ID 2).
    Template,
    /// An Options Template Set (ID 3).
    OptionsTemplate,
    /// A Data Set for the template with this ID (256 and up).
    Data(TemplateId),
}

impl<'a> Set<'a> {
    /// Classifies the Set by its ID.
    ///
    /// # Errors
    /// [`DecodeErrorKind::ReservedSetId`] for IDs 0, 1 and 4..=255.
    pub fn kind(&self) -> Result<SetKind, DecodeError> {
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.3.2
        //# Set ID value identifies the Set.  A value of 2 is reserved for
        //# Template Sets.  A value of 3 is reserved for Options Template Sets.
        //# Values from 4 to 255 are reserved for future use.  Values 256 and
        //# above are used for Data Sets.
        match self.id {
            SetId::TEMPLATE => Ok(SetKind::Template),
            SetId::OPTIONS_TEMPLATE => Ok(SetKind::OptionsTemplate),
            id if id.is_data() => Ok(SetKind::Data(TemplateId(id.0))),
            id => Err(DecodeError::new(
                DecodeErrorKind::ReservedSetId(id.0),
                self.offset - SET_HEADER_LEN,
            )),
        }
    }

    /// A cursor over the Set's content.
    pub fn reader(&self) -> Reader<'a> {
        Reader::at(self.body, self.offset)
    }
}

/// Iterates over the Sets of a Message body, checking every Set Length.
///
/// Yields an error once and then stops: a bad Set Length loses the framing of all that follows.
#[derive(Clone, Debug)]
pub struct Sets<'a> {
    reader: Reader<'a>,
    failed: bool,
    /// Whether fewer octets than a Set Header at the end are padding rather than an error.
    padded: bool,
}

impl<'a> Sets<'a> {
    /// Walks `body`, the Message after its 16-byte header.
    pub fn new(body: &'a [u8]) -> Self {
        Self {
            reader: Reader::at(body, HEADER_LEN),
            failed: false,
            padded: false,
        }
    }

    /// Walks `body`, which starts `offset` octets into its packet, taking fewer than four
    /// octets at the end as padding: NetFlow v9's FlowSets are framed as Sets, after a
    /// 20-octet header, and exporters pad the packet.
    pub fn padded(body: &'a [u8], offset: usize) -> Self {
        Self {
            reader: Reader::at(body, offset),
            failed: false,
            padded: true,
        }
    }

    fn next_set(&mut self) -> Result<Set<'a>, DecodeError> {
        let at = self.reader.offset();
        let id = SetId(self.reader.u16()?);
        let length = self.reader.u16()?;
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.3.2
        //# Set Length
        //#
        //#    Total length of the Set, in octets, including the Set Header, all
        //#    records, and the optional padding.
        let Some(body_len) = usize::from(length).checked_sub(SET_HEADER_LEN) else {
            return Err(DecodeError::new(
                DecodeErrorKind::BadSetLength(length),
                at + 2,
            ));
        };
        //= https://www.rfc-editor.org/rfc/rfc7011#section-11.7
        //# Collecting Processes MUST ensure that the length of
        //# each record and each Set does not exceed the length of the
        //# enclosing Set or Message.
        if body_len > self.reader.len() {
            return Err(DecodeError::new(
                DecodeErrorKind::BadSetLength(length),
                at + 2,
            ));
        }
        let offset = self.reader.offset();
        let body = self.reader.take(body_len)?;
        Ok(Set { id, body, offset })
    }
}

impl<'a> Iterator for Sets<'a> {
    type Item = Result<Set<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed
            || self.reader.is_empty()
            || self.padded && self.reader.len() < SET_HEADER_LEN
        {
            return None;
        }
        let set = self.next_set();
        self.failed = set.is_err();
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sets(body: &[u8]) -> Result<usize, DecodeError> {
        Sets::new(body).try_fold(0, |n, set| set.map(|_| n + 1))
    }

    fn body(sets: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, content) in sets {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&u16::try_from(content.len() + 4).unwrap().to_be_bytes());
            out.extend_from_slice(content);
        }
        out
    }

    #[test]
    fn walks_sets_in_order() {
        let b = body(&[(2, &[1, 2, 3, 4]), (256, &[])]);
        let sets: Vec<_> = Sets::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].id, SetId::TEMPLATE);
        assert_eq!(sets[0].offset, 20);
        assert_eq!(sets[1].body, &[] as &[u8]);
        assert_eq!(check_sets(&b), Ok(2));
    }

    #[test]
    fn rejects_set_length_below_header_or_past_the_message() {
        let good = body(&[(256, &[0; 8])]);
        for bad_len in [0_u16, 3, 13, u16::MAX] {
            let mut b = good.clone();
            b[2..4].copy_from_slice(&bad_len.to_be_bytes());
            assert_eq!(
                check_sets(&b).map_err(|e| e.kind),
                Err(DecodeErrorKind::BadSetLength(bad_len)),
                "set length {bad_len}"
            );
        }
    }

    #[test]
    fn every_prefix_with_a_partial_set_is_rejected() {
        let b = body(&[(2, &[0; 8]), (256, &[1; 5])]);
        for len in 1..b.len() {
            if len == 12 {
                continue; // a whole first Set: a valid (shorter) body
            }
            assert!(check_sets(&b[..len]).is_err(), "prefix {len}");
        }
    }
}
