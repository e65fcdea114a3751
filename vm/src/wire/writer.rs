//! Builds IPFIX Messages: header, Sets with back-patched lengths, Template Records and Data
//! Records, under a size budget (the exporter's path MTU).

use crate::wire::header::MessageHeader;
use crate::wire::ids::{ObservationDomainId, SetId};
use crate::wire::template::TemplateDef;
use crate::wire::{ENTERPRISE_BIT, HEADER_LEN, MAX_MESSAGE_LEN, SET_HEADER_LEN, VERSION};

/// Builds one Message at a time into a reused buffer.
///
/// Records are appended with the `put_*` methods and then committed: [`commit`](Self::commit)
/// keeps them when the Message still fits its budget and rolls them back otherwise, so the
/// caller can finish this Message and write the record again into the next.
#[derive(Clone, Debug)]
pub struct MessageWriter {
    buf: Vec<u8>,
    max_len: usize,
    /// Start of the open Set's header, if a Set is open.
    set_start: Option<usize>,
    /// Length at the last commit: what a rollback returns to.
    committed: usize,
}

impl MessageWriter {
    /// A writer whose Messages never exceed `max_len` octets (clamped to 16..=65535).
    pub fn new(max_len: usize) -> Self {
        let max_len = max_len.clamp(HEADER_LEN + SET_HEADER_LEN, MAX_MESSAGE_LEN);
        let mut w = Self {
            buf: Vec::with_capacity(max_len),
            max_len,
            set_start: None,
            committed: 0,
        };
        w.clear();
        w
    }

    /// Discards everything and starts a new Message.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.set_start = None;
        self.committed = HEADER_LEN;
    }

    /// Octets the Message holds so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the Message holds no Set yet.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER_LEN
    }

    /// The open Set's ID, if any.
    pub fn open_set(&self) -> Option<SetId> {
        let start = self.set_start?;
        let id = self.buf.get(start..start + 2)?;
        Some(SetId(u16::from_be_bytes([*id.first()?, *id.get(1)?])))
    }

    /// Opens a Set (closing any open one); `false`, with nothing written, if even an empty Set
    /// would not fit.
    pub fn begin_set(&mut self, id: SetId) -> bool {
        self.end_set();
        if self.buf.len() + SET_HEADER_LEN > self.max_len {
            return false;
        }
        self.set_start = Some(self.buf.len());
        self.buf.extend_from_slice(&id.0.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.committed = self.buf.len();
        true
    }

    /// Closes the open Set, back-patching its length; an empty Set is removed.
    pub fn end_set(&mut self) {
        self.end_set_padded(1);
    }

    /// Closes the open Set after padding it with zeros to a multiple of `align` octets (§3.3.1).
    pub fn end_set_padded(&mut self, align: usize) {
        self.rollback();
        let Some(start) = self.set_start.take() else {
            return;
        };
        if self.buf.len() == start + SET_HEADER_LEN {
            self.buf.truncate(start);
        } else {
            let pad = (align - (self.buf.len() - start) % align.max(1)) % align.max(1);
            if self.buf.len() + pad <= self.max_len {
                self.buf.resize(self.buf.len() + pad, 0);
            }
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            if let Some(dst) = self.buf.get_mut(start + 2..start + 4) {
                dst.copy_from_slice(&len.to_be_bytes());
            }
        }
        self.committed = self.buf.len();
    }

    /// Appends one octet to the current record.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a network-order `u16`.
    pub fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a network-order `u32`.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a network-order `u64`.
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends raw octets (a fixed-length field).
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Appends a variable-length field (RFC 7011 §7): a one-octet length below 255, otherwise 255
    /// and a two-octet length. Content beyond 65535 octets is cut there.
    pub fn put_var_len(&mut self, v: &[u8]) {
        let v = v.get(..usize::from(u16::MAX)).unwrap_or(v);
        match u8::try_from(v.len()) {
            Ok(short) if short < 255 => self.buf.push(short),
            _ => {
                self.buf.push(255);
                self.put_u16(u16::try_from(v.len()).unwrap_or(u16::MAX));
            }
        }
        self.buf.extend_from_slice(v);
    }

    /// Appends a (Options) Template Record for `def`.
    pub fn put_template(&mut self, def: &TemplateDef) {
        self.put_u16(def.template_id.0);
        self.put_u16(u16::try_from(def.fields.len()).unwrap_or(u16::MAX));
        if def.is_options() {
            self.put_u16(def.scope_field_count);
        }
        for f in &def.fields {
            if f.enterprise_number.0 == 0 {
                self.put_u16(f.element_id.0);
                self.put_u16(f.field_length);
            } else {
                self.put_u16(f.element_id.0 | ENTERPRISE_BIT);
                self.put_u16(f.field_length);
                self.put_u32(f.enterprise_number.0);
            }
        }
    }

    /// Keeps what was put since the last commit if the Message is within its budget; otherwise
    /// removes it and returns `false`.
    pub fn commit(&mut self) -> bool {
        if self.buf.len() > self.max_len {
            self.rollback();
            return false;
        }
        self.committed = self.buf.len();
        true
    }

    /// Removes what was put since the last commit.
    pub fn rollback(&mut self) {
        self.buf.truncate(self.committed);
    }

    /// Closes the open Set, writes the header and returns the whole Message. Anything put
    /// since the last commit is left out.
    pub fn finish(
        &mut self,
        export_time: u32,
        sequence_number: u32,
        observation_domain_id: ObservationDomainId,
    ) -> &[u8] {
        self.end_set();
        let header = MessageHeader {
            version: VERSION,
            length: u16::try_from(self.buf.len()).unwrap_or(u16::MAX),
            export_time,
            sequence_number,
            observation_domain_id,
        };
        if let Some(dst) = self.buf.get_mut(..HEADER_LEN) {
            dst.copy_from_slice(&header.encode());
        }
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::Message;
    use crate::wire::ids::TemplateId;
    use crate::wire::template::{FieldSpecifier, TemplateRecord, TemplateRecords};

    #[test]
    fn writes_a_template_that_decodes_back() {
        let def = TemplateDef {
            template_id: TemplateId(300),
            scope_field_count: 1,
            fields: vec![
                FieldSpecifier::iana(149, 4),
                FieldSpecifier::enterprise(9, 12_235, 65_535),
            ],
        };
        let mut w = MessageWriter::new(512);
        assert!(w.begin_set(SetId::OPTIONS_TEMPLATE));
        w.put_template(&def);
        assert!(w.commit());
        let msg = Message::decode(w.finish(1, 2, ObservationDomainId(3))).unwrap();
        assert_eq!(msg.header.sequence_number, 2);
        let set = msg.sets().next().unwrap().unwrap();
        let back: Vec<_> = TemplateRecords::new(&set).collect();
        assert_eq!(back, [Ok(TemplateRecord::Definition(def))]);
    }

    #[test]
    fn commit_rolls_back_a_record_past_the_budget() {
        let mut w = MessageWriter::new(32);
        assert!(w.begin_set(SetId(256)));
        w.put_u64(1);
        assert!(w.commit());
        w.put_u32(2);
        w.put_u64(3);
        assert!(!w.commit());
        assert_eq!(w.finish(0, 0, ObservationDomainId(0)).len(), 28);
    }

    #[test]
    fn pads_sets_and_drops_empty_ones() {
        let mut w = MessageWriter::new(512);
        assert!(w.begin_set(SetId(256)));
        w.put_u8(1);
        assert!(w.commit());
        w.end_set_padded(4);
        assert!(w.begin_set(SetId(257)));
        let msg = w.finish(0, 0, ObservationDomainId(0)).to_vec();
        assert_eq!(msg.len(), 24);
        assert_eq!(&msg[16..], &[1, 0, 0, 8, 1, 0, 0, 0]);
    }

    #[test]
    fn var_len_uses_the_three_octet_form_from_255() {
        let mut w = MessageWriter::new(1024);
        w.put_var_len(&[7; 254]);
        assert_eq!(w.len(), 16 + 1 + 254);
        w.clear();
        w.put_var_len(&[7; 255]);
        assert!(w.commit());
        assert_eq!(
            &w.finish(0, 0, ObservationDomainId(0))[16..19],
            &[255, 0, 255]
        );
    }
}
