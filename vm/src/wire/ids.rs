//! Newtypes for the identifiers of RFC 7011: Set ID, Template ID, Observation Domain ID,
//! Information Element identifier and Private Enterprise Number.

use std::fmt;

/// A Set ID (RFC 7011 §3.3.2): 2 and 3 for (Options) Template Sets, 256 and up for Data Sets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub u16);

impl SetId {
    /// Template Set.
    pub const TEMPLATE: Self = Self(2);
    /// Options Template Set.
    pub const OPTIONS_TEMPLATE: Self = Self(3);

    /// Whether this ID names a Data Set (its Template ID is the Set ID, §3.3.2).
    pub fn is_data(self) -> bool {
        self.0 >= TemplateId::MIN_DATA.0
    }
}

impl fmt::Debug for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TEMPLATE => f.write_str("TemplateSet"),
            Self::OPTIONS_TEMPLATE => f.write_str("OptionsTemplateSet"),
            Self(n) if self.is_data() => write!(f, "DataSet({n})"),
            Self(n) => write!(f, "ReservedSet({n})"),
        }
    }
}

/// A Template ID (RFC 7011 §3.4.1); values below 256 are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u16);

impl TemplateId {
    /// The lowest Template ID a Data Set may use.
    pub const MIN_DATA: Self = Self(256);
}

/// An Observation Domain ID (RFC 7011 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservationDomainId(pub u32);

/// An Information Element identifier, without the Enterprise bit (RFC 7011 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementId(pub u16);

impl ElementId {
    /// octetDeltaCount.
    pub const OCTET_DELTA_COUNT: Self = Self(1);
    /// paddingOctets (RFC 7011 §3.3.1): never kept.
    pub const PADDING_OCTETS: Self = Self(210);
    /// flowEndReason.
    pub const FLOW_END_REASON: Self = Self(136);
}

/// A Private Enterprise Number (RFC 7011 §3.2); 0 stands for IANA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnterpriseNumber(pub u32);

impl EnterpriseNumber {
    /// The IANA registry itself (no Enterprise bit on the wire).
    pub const IANA: Self = Self(0);
    /// Reverse Information Elements of RFC 5103 §6.1.
    pub const REVERSE: Self = Self(29_305);
    /// Not a real enterprise: flowvm's name space for NetFlow v9's options scope field types
    /// (RFC 3954 §6.1: 1 System, 2 Interface, 3 Line Card, 4 Cache, 5 Template), which have
    /// no IPFIX element. The highest Private Enterprise Number, far above any assigned.
    pub const NETFLOW9_SCOPE: Self = Self(u32::MAX);
}
