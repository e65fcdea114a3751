//! Information Elements (RFC 7012): the IANA registry, enterprise additions, and the abstract
//! data types that decide how a field is decoded and which Arrow type holds it.

pub mod registry;
pub mod types;

use std::borrow::Cow;

use crate::ie::types::AbstractDataType;
use crate::wire::ids::{ElementId, EnterpriseNumber};

/// One Information Element: its identity, name, type and meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InformationElement {
    /// 0 for IANA elements.
    pub enterprise_number: EnterpriseNumber,
    /// The element identifier.
    pub element_id: ElementId,
    /// The registry name (`octetDeltaCount`), or a made-up one for unknown elements.
    pub name: Cow<'static, str>,
    /// The abstract data type; octetArray for unknown elements.
    pub data_type: AbstractDataType,
    /// Data type semantics (`deltaCounter`, `identifier`, ...), possibly empty.
    pub semantics: Cow<'static, str>,
    /// Units (`octets`, `packets`, ...), possibly empty.
    pub units: Cow<'static, str>,
    /// Whether the registry marks it deprecated.
    pub deprecated: bool,
}
