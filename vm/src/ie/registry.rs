//! The Information Element registry: the IANA table generated at build time from
//! `vm/data/ipfix-information-elements.csv`, RFC 5103 reverse elements, and elements users add
//! from a file with the same columns.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::ie::InformationElement;
use crate::ie::types::AbstractDataType;
use crate::wire::ids::{ElementId, EnterpriseNumber};

include!(concat!(env!("OUT_DIR"), "/registry.rs"));

/// Looks up Information Elements by (Enterprise Number, element id).
///
/// Every lookup succeeds: an unknown element is an octetArray named `ie<id>` (IANA) or
/// `e<PEN>_<id>` (enterprise), so data for it is kept rather than lost.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    added: HashMap<(EnterpriseNumber, ElementId), InformationElement>,
}

/// Why a user's element file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryError {
    /// 1-based line of the file.
    pub line: usize,
    /// What was wrong on it.
    pub reason: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for RegistryError {}

impl Registry {
    /// The built-in registry: IANA plus the enterprise elements shipped with flowvm.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or overrides) elements from CSV text with the columns of the shipped registry:
    /// `pen,id,name,data_type,data_semantics,units,status`, with a header line. Returns how many
    /// elements were added.
    ///
    /// # Errors
    /// The first line that does not parse; nothing is added then.
    pub fn add_csv(&mut self, text: &str) -> Result<usize, RegistryError> {
        let mut parsed = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("pen,")) {
                continue;
            }
            let fail = |reason: String| RegistryError {
                line: n + 1,
                reason,
            };
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [pen, id, name, data_type, rest @ ..] = cols.as_slice() else {
                return Err(fail(
                    "expected pen,id,name,data_type[,semantics,units,status]".into(),
                ));
            };
            let pen = pen
                .parse()
                .map_err(|e| fail(format!("enterprise number {pen:?}: {e}")))?;
            let id: u16 = id
                .parse()
                .map_err(|e| fail(format!("element id {id:?}: {e}")))?;
            if id >= 0x8000 {
                return Err(fail(format!("element id {id} has the enterprise bit set")));
            }
            let data_type = AbstractDataType::parse(data_type)
                .ok_or_else(|| fail(format!("unknown data type {data_type:?}")))?;
            if name.is_empty() {
                return Err(fail("empty name".into()));
            }
            let text = |i: usize| Cow::Owned(rest.get(i).copied().unwrap_or_default().to_owned());
            parsed.push(InformationElement {
                enterprise_number: EnterpriseNumber(pen),
                element_id: ElementId(id),
                name: Cow::Owned((*name).to_owned()),
                data_type,
                semantics: text(0),
                units: text(1),
                deprecated: rest.get(2) == Some(&"deprecated"),
            });
        }
        let count = parsed.len();
        for ie in parsed {
            self.added.insert((ie.enterprise_number, ie.element_id), ie);
        }
        Ok(count)
    }

    /// The element if the registry knows it (built-in, added, or the reverse of a known one).
    pub fn known(&self, pen: EnterpriseNumber, id: ElementId) -> Option<InformationElement> {
        if let Some(ie) = self.added.get(&(pen, id)) {
            return Some(ie.clone());
        }
        if let Ok(i) =
            ELEMENTS.binary_search_by_key(&(pen, id), |ie| (ie.enterprise_number, ie.element_id))
        {
            return ELEMENTS.get(i).cloned();
        }
        //= https://www.rfc-editor.org/rfc/rfc5103#section-6.1
        //# the reverse Information Element identifier for each forward
        //# Information Element MUST be the same as the forward Information
        //# Element identifier
        if pen == EnterpriseNumber::NETFLOW9_SCOPE {
            return netflow9_scope(id);
        }
        if pen == EnterpriseNumber::REVERSE {
            let forward = self.known(EnterpriseNumber::IANA, id)?;
            let mut chars = forward.name.chars();
            let first = chars.next()?.to_ascii_uppercase();
            return Some(InformationElement {
                enterprise_number: pen,
                name: Cow::Owned(format!("reverse{first}{}", chars.as_str())),
                ..forward
            });
        }
        None
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-9
    //# The Collecting Process MUST note the Information Element identifier
    //# of any Information Element that it does not understand and MAY
    //# discard that Information Element from received Data Records.
    // flowvm keeps it: the octets go to a column named after the identifier.
    /// The element, or an octetArray with a made-up name if the registry does not know it.
    pub fn lookup(&self, pen: EnterpriseNumber, id: ElementId) -> InformationElement {
        self.known(pen, id).unwrap_or_else(|| InformationElement {
            enterprise_number: pen,
            element_id: id,
            name: Cow::Owned(if pen == EnterpriseNumber::IANA {
                format!("ie{}", id.0)
            } else {
                format!("e{}_{}", pen.0, id.0)
            }),
            data_type: AbstractDataType::OctetArray,
            semantics: Cow::Borrowed(""),
            units: Cow::Borrowed(""),
            deprecated: false,
        })
    }

    /// Every element the registry knows by number: the added ones, the built-in ones they do
    /// not override, and the RFC 5103 reverse of each IANA one, in no particular order.
    pub fn elements(&self) -> impl Iterator<Item = InformationElement> + '_ {
        let forward = self.added.values().cloned().chain(
            ELEMENTS
                .iter()
                .filter(|ie| {
                    !self
                        .added
                        .contains_key(&(ie.enterprise_number, ie.element_id))
                })
                .cloned(),
        );
        let reverse = forward
            .clone()
            .filter(|ie| ie.enterprise_number == EnterpriseNumber::IANA)
            .filter_map(|ie| self.known(EnterpriseNumber::REVERSE, ie.element_id));
        forward.chain(reverse)
    }

    /// Finds an element by name (case-sensitive), built-in or added.
    pub fn by_name(&self, name: &str) -> Option<InformationElement> {
        self.added
            .values()
            .chain(ELEMENTS.iter())
            .find(|ie| ie.name == name)
            .cloned()
    }
}

/// NetFlow v9's options scope field types (RFC 3954 §6.1) as elements: an unsigned number of
/// up to 8 octets (an identifier of the system, interface, line card, cache or template the
/// options describe); other lengths keep their octets.
fn netflow9_scope(id: ElementId) -> Option<InformationElement> {
    let name = match id.0 {
        1 => "scopeSystem",
        2 => "scopeInterface",
        3 => "scopeLineCard",
        4 => "scopeCache",
        5 => "scopeTemplate",
        _ => return None,
    };
    Some(InformationElement {
        enterprise_number: EnterpriseNumber::NETFLOW9_SCOPE,
        element_id: id,
        name: Cow::Borrowed(name),
        data_type: AbstractDataType::Unsigned64,
        semantics: Cow::Borrowed("identifier"),
        units: Cow::Borrowed(""),
        deprecated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iana(id: u16) -> InformationElement {
        Registry::new().lookup(EnterpriseNumber::IANA, ElementId(id))
    }

    #[test]
    fn knows_the_iana_elements_with_their_types() {
        assert_eq!(iana(1).name, "octetDeltaCount");
        assert_eq!(iana(1).data_type, AbstractDataType::Unsigned64);
        assert_eq!(iana(1).units, "octets");
        assert_eq!(iana(8).data_type, AbstractDataType::Ipv4Address);
        assert_eq!(iana(155).data_type, AbstractDataType::DateTimeMicroseconds);
        assert!(ELEMENTS.len() > 800);
    }

    #[test]
    fn names_netflow9_scope_types() {
        let r = Registry::new();
        let scope = |id| {
            r.lookup(EnterpriseNumber::NETFLOW9_SCOPE, ElementId(id))
                .name
        };
        assert_eq!(scope(2), "scopeInterface");
        assert_eq!(scope(5), "scopeTemplate");
        assert_eq!(scope(9), format!("e{}_9", u32::MAX));
    }

    #[test]
    fn names_unknown_elements_by_number() {
        assert_eq!(iana(32_000).name, "ie32000");
        assert_eq!(iana(32_000).data_type, AbstractDataType::OctetArray);
        let e = Registry::new().lookup(EnterpriseNumber(4_242), ElementId(7));
        assert_eq!(e.name, "e4242_7");
    }

    #[test]
    fn names_reverse_elements_after_their_forward_element() {
        let r = Registry::new().lookup(EnterpriseNumber::REVERSE, ElementId(1));
        assert_eq!(r.name, "reverseOctetDeltaCount");
        assert_eq!(r.data_type, AbstractDataType::Unsigned64);
    }

    #[test]
    fn users_add_enterprise_elements_from_csv() {
        let mut r = Registry::new();
        let csv = "pen,id,name,data_type,data_semantics,units,status\n\
                   4242,7,acmeTenant,string,,,current\n4242,8,acmeScore,float64,quantity,,\n";
        assert_eq!(r.add_csv(csv), Ok(2));
        assert_eq!(
            r.lookup(EnterpriseNumber(4_242), ElementId(7)).name,
            "acmeTenant"
        );
        assert_eq!(
            r.by_name("acmeScore").map(|e| e.data_type),
            Some(AbstractDataType::Float64)
        );
        let bad = r.add_csv("4242,9,x,notatype\n").unwrap_err();
        assert_eq!(bad.line, 1);
        assert!(r.add_csv("4242,40000,x,string\n").is_err());
    }

    #[test]
    fn lists_every_element_once_with_the_reverse_of_each_iana_one() {
        let mut r = Registry::new();
        let csv = "pen,id,name,data_type,data_semantics,units,status\n\
                   4242,7,acmeGateway,ipv4Address,,,current\n0,8,srcAddr,ipv4Address,,,current\n";
        assert_eq!(r.add_csv(csv), Ok(2));
        let names: Vec<String> = r.elements().map(|e| e.name.into_owned()).collect();
        let count = |name: &str| names.iter().filter(|n| *n == name).count();
        assert_eq!(count("acmeGateway"), 1);
        // Element 8 overridden: its new name, and its reverse after it.
        assert_eq!(count("srcAddr"), 1);
        assert_eq!(count("sourceIPv4Address"), 0);
        assert_eq!(count("reverseSrcAddr"), 1);
        assert_eq!(count("destinationIPv4Address"), 1);
        assert_eq!(count("reverseDestinationIPv4Address"), 1);
        assert_eq!(count("clientIPv4Address"), 1);
        assert_eq!(count("reverseClientIPv4Address"), 0);
        let numbers: std::collections::HashSet<_> = r
            .elements()
            .map(|e| (e.enterprise_number, e.element_id))
            .collect();
        assert_eq!(numbers.len(), names.len());
    }

    #[test]
    fn the_registry_typo_ipv6address_parses() {
        assert_eq!(
            AbstractDataType::parse("ipv6address"),
            Some(AbstractDataType::Ipv6Address)
        );
    }
}
