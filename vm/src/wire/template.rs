//! Template Records and Options Template Records (RFC 7011 §3.4), and Template Withdrawals
//! (§8.1), decoded into owned [`TemplateDef`]s that outlive the Message.

use nom::{IResult, Parser, number::complete::be_u16, number::complete::be_u32};

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::ids::{ElementId, EnterpriseNumber, SetId, TemplateId};
use crate::wire::set::Set;
use crate::wire::{ENTERPRISE_BIT, VARIABLE_LENGTH};

/// One Field Specifier (RFC 7011 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpecifier {
    /// The Information Element identifier, Enterprise bit cleared.
    pub element_id: ElementId,
    /// Field Length in octets; [`VARIABLE_LENGTH`] (65535) for a variable-length field.
    pub field_length: u16,
    /// The Enterprise Number; [`EnterpriseNumber::IANA`] when the Enterprise bit is clear.
    pub enterprise_number: EnterpriseNumber,
}

impl FieldSpecifier {
    /// An IANA field.
    pub fn iana(element_id: u16, field_length: u16) -> Self {
        Self::enterprise(0, element_id, field_length)
    }

    /// A field of enterprise `pen` (0 is IANA).
    pub fn enterprise(pen: u32, element_id: u16, field_length: u16) -> Self {
        Self {
            element_id: ElementId(element_id & !ENTERPRISE_BIT),
            field_length,
            enterprise_number: EnterpriseNumber(pen),
        }
    }

    /// Whether the field is variable-length (RFC 7011 §7).
    pub fn is_variable_length(&self) -> bool {
        self.field_length == VARIABLE_LENGTH
    }
}

/// An owned (Options) Template Record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateDef {
    /// The Template ID, 256 or above.
    pub template_id: TemplateId,
    /// Scope Field Count; 0 for a plain Template Record, 1 or more for an Options Template.
    pub scope_field_count: u16,
    /// The Field Specifiers, scope fields first.
    pub fields: Vec<FieldSpecifier>,
}

impl TemplateDef {
    /// A plain Template Record of IANA elements, `(element id, field length)` in order.
    pub fn of_iana(template_id: TemplateId, fields: &[(u16, u16)]) -> Self {
        Self {
            template_id,
            scope_field_count: 0,
            fields: fields
                .iter()
                .map(|&(id, len)| FieldSpecifier::iana(id, len))
                .collect(),
        }
    }

    /// Whether this came from an Options Template Set.
    pub fn is_options(&self) -> bool {
        self.scope_field_count > 0
    }
}

/// One record of a (Options) Template Set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateRecord {
    /// A template definition (or redefinition).
    Definition(TemplateDef),
    /// A Template Withdrawal of one Template ID (§8.1, Field Count 0).
    Withdrawal(TemplateId),
    /// An All (Options) Template Withdrawal: Template ID equal to the Set ID (§8.1).
    WithdrawAll(SetId),
}

type NomError<'a> = nom::error::Error<&'a [u8]>;

fn field_specifier(i: &[u8]) -> IResult<&[u8], FieldSpecifier, NomError<'_>> {
    let (i, (id, field_length)) = (be_u16, be_u16).parse(i)?;
    //= https://www.rfc-editor.org/rfc/rfc7011#section-3.2
    //# If this bit is zero, the Information Element identifier identifies an
    //# Information Element in [IANA-IPFIX], and the four-octet Enterprise
    //# Number field MUST NOT be present.
    let (i, pen) = if id & ENTERPRISE_BIT != 0 {
        be_u32(i)?
    } else {
        (i, 0)
    };
    Ok((i, FieldSpecifier::enterprise(pen, id, field_length)))
}

/// Iterates over the records of a Template Set or Options Template Set.
///
/// Fewer than four bytes left at the end is padding (§3.3.1). Yields an error once and stops.
#[derive(Clone, Debug)]
pub struct TemplateRecords<'a> {
    set_id: SetId,
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> TemplateRecords<'a> {
    /// Walks the records of `set`, which must be a (Options) Template Set.
    pub fn new(set: &Set<'a>) -> Self {
        Self {
            set_id: set.id,
            rest: set.body,
            offset: set.offset,
            failed: false,
        }
    }

    fn error(&self, kind: DecodeErrorKind, at: &[u8]) -> DecodeError {
        DecodeError::new(kind, self.offset + (self.rest.len() - at.len()))
    }

    fn next_record(&mut self) -> Result<(TemplateRecord, &'a [u8]), DecodeError> {
        let truncated = |at: &[u8]| self.error(DecodeErrorKind::Truncated, at);
        let i = self.rest;
        let (i, (template_id, field_count)) = (be_u16, be_u16)
            .parse(i)
            .map_err(|_: nom::Err<NomError<'_>>| truncated(i))?;
        if field_count == 0 {
            //= https://www.rfc-editor.org/rfc/rfc7011#section-8.1
            //# A Template Withdrawal Message to withdraw all Templates for the
            //# Observation Domain ID specified in the IPFIX Message Header MUST
            //# use the Template ID 2 for Template Sets
            if template_id == self.set_id.0 {
                return Ok((TemplateRecord::WithdrawAll(self.set_id), i));
            }
            if template_id < TemplateId::MIN_DATA.0 {
                return Err(self.error(DecodeErrorKind::BadTemplateId(template_id), self.rest));
            }
            return Ok((TemplateRecord::Withdrawal(TemplateId(template_id)), i));
        }
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.4.1
        //# Each Template Record is given a unique Template ID in the range 256
        //# to 65535.
        if template_id < TemplateId::MIN_DATA.0 {
            return Err(self.error(DecodeErrorKind::BadTemplateId(template_id), self.rest));
        }
        let (mut i, scope_field_count) = if self.set_id == SetId::OPTIONS_TEMPLATE {
            let (rest, scope) = be_u16(i).map_err(|_: nom::Err<NomError<'_>>| truncated(i))?;
            //= https://www.rfc-editor.org/rfc/rfc7011#section-3.4.2.2
            //# The Scope Field Count MUST NOT be zero.
            if scope == 0 || scope > field_count {
                return Err(self.error(DecodeErrorKind::BadScopeFieldCount(scope), i));
            }
            (rest, scope)
        } else {
            (i, 0)
        };
        // The set length bounds the allocation: every specifier takes at least four bytes.
        let mut fields = Vec::with_capacity(usize::from(field_count).min(i.len() / 4));
        for _ in 0..field_count {
            let (rest, field) = field_specifier(i).map_err(|_| truncated(i))?;
            fields.push(field);
            i = rest;
        }
        let def = TemplateDef {
            template_id: TemplateId(template_id),
            scope_field_count,
            fields,
        };
        Ok((TemplateRecord::Definition(def), i))
    }
}

impl Iterator for TemplateRecords<'_> {
    type Item = Result<TemplateRecord, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        //= https://www.rfc-editor.org/rfc/rfc7011#section-3.3.1
        //# The Padding length MUST be shorter than any allowable record in
        //# this Set.
        if self.failed || self.rest.len() < 4 {
            return None;
        }
        match self.next_record() {
            Ok((record, rest)) => {
                self.offset += self.rest.len() - rest.len();
                self.rest = rest;
                Some(Ok(record))
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

    fn set(id: SetId, body: &[u8]) -> Set<'_> {
        Set {
            id,
            body,
            offset: 20,
        }
    }

    fn records(id: SetId, body: &[u8]) -> Vec<Result<TemplateRecord, DecodeErrorKind>> {
        TemplateRecords::new(&set(id, body))
            .map(|r| r.map_err(|e| e.kind))
            .collect()
    }

    #[test]
    fn decodes_enterprise_field_specifiers() {
        let body = [
            1, 0, 0, 2, 0, 8, 0, 4, 0x80, 0x0c, 0xff, 0xff, 0, 0, 0x1a, 0xe7, 0, 0,
        ];
        let expect = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: vec![
                FieldSpecifier::iana(8, 4),
                FieldSpecifier::enterprise(6887, 12, VARIABLE_LENGTH),
            ],
        };
        assert_eq!(
            records(SetId::TEMPLATE, &body),
            [Ok(TemplateRecord::Definition(expect))]
        );
    }

    #[test]
    fn decodes_withdrawals() {
        let body = [1, 0, 0, 0, 0, 2, 0, 0];
        assert_eq!(
            records(SetId::TEMPLATE, &body),
            [
                Ok(TemplateRecord::Withdrawal(TemplateId(256))),
                Ok(TemplateRecord::WithdrawAll(SetId::TEMPLATE))
            ]
        );
        assert_eq!(
            records(SetId::OPTIONS_TEMPLATE, &[0, 3, 0, 0]),
            [Ok(TemplateRecord::WithdrawAll(SetId::OPTIONS_TEMPLATE))]
        );
    }

    #[test]
    fn rejects_reserved_template_ids_and_bad_scope_counts() {
        assert_eq!(
            records(SetId::TEMPLATE, &[0, 255, 0, 1, 0, 8, 0, 4]),
            [Err(DecodeErrorKind::BadTemplateId(255))]
        );
        assert_eq!(
            records(SetId::OPTIONS_TEMPLATE, &[1, 0, 0, 1, 0, 0, 0, 8, 0, 4]),
            [Err(DecodeErrorKind::BadScopeFieldCount(0))]
        );
        assert_eq!(
            records(SetId::OPTIONS_TEMPLATE, &[1, 0, 0, 1, 0, 2, 0, 8, 0, 4]),
            [Err(DecodeErrorKind::BadScopeFieldCount(2))]
        );
    }

    #[test]
    fn short_tail_is_padding_and_a_field_count_past_the_set_is_truncation() {
        assert_eq!(
            records(SetId::TEMPLATE, &[1, 0, 0, 1, 0, 8, 0, 4, 0, 0]).len(),
            1
        );
        assert_eq!(
            records(SetId::TEMPLATE, &[1, 0, 0, 2, 0, 8, 0, 4]),
            [Err(DecodeErrorKind::Truncated)]
        );
    }
}
