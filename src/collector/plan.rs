//! Pass one of handling a packet, for every protocol alike (RFC 7011 §9.1, "check, then
//! decode"): frame it, decode and compile its template records, and check every Data Set whose
//! template is known against its length. Nothing here changes state, counts or logs: the plan
//! is applied, or the packet dropped whole, by `decode.rs`.

use std::sync::Arc;

use smallvec::SmallVec;

use flowvm_vm::wire::ids::{SetId, TemplateId};
use flowvm_vm::wire::netflow5;
use flowvm_vm::wire::packet::{ExportPacket, Item};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::{TemplateDef, TemplateRecord};
use flowvm_vm::{CompileError, DecodeError, Program};

use crate::collector::FastMap;
use crate::collector::programs::ProgramCache;
use crate::collector::templates::{SessionSlot, TemplateState, TemplateStore};
use crate::telemetry::DropReason;

/// One step of a checked packet, applied in pass two.
#[derive(Debug)]
pub enum Step<'a> {
    /// Install (or refresh, or redefine) a template.
    Define {
        /// The definition.
        def: TemplateDef,
        /// Its program, or why it has none.
        compiled: Result<Arc<Program>, CompileError>,
        /// Whether it came as an Options Template.
        options: bool,
    },
    /// Withdraw one template (TCP only, RFC 7011 §8.1).
    Withdraw(TemplateId),
    /// Withdraw every template of a Set type (TCP only).
    WithdrawAll(SetId),
    /// Decode a Data Set (or hold it for its template).
    Data(Set<'a>, TemplateId),
    /// A Set skipped for a reserved Set ID: counted in pass two, so that a packet dropped
    /// later in pass one counts one reason only.
    Skip(DropReason),
}

/// A packet's steps: held inline for the packets routers send (a few Sets each), so planning
/// allocates nothing.
pub type Steps<'a> = SmallVec<[Step<'a>; 8]>;

/// Plans `packet` from the session whose templates are at `slot` (`None`: it has none yet):
/// every step it asks for, each Data Set checked against the template it will meet (defined
/// earlier in the packet, or held).
///
/// # Errors
/// The first framing or length error: the packet is then dropped whole.
pub fn plan<'a>(
    packet: &ExportPacket<'a>,
    slot: Option<SessionSlot>,
    templates: &TemplateStore,
    programs: &mut ProgramCache,
) -> Result<Steps<'a>, DecodeError> {
    let domain = packet.header().observation_domain_id;
    let held = |template_id| match slot.and_then(|s| templates.get_in(s, domain, template_id)) {
        Some(TemplateState::Ready(p)) => Some(&**p),
        _ => None,
    };
    let mut steps = Steps::new();
    // The programs of the templates this packet defines, by ID, the latest definition winning:
    // each Data Set finds its program in one lookup, however many Sets came before it. Empty
    // (and unallocated) for packets of data alone.
    let mut defined: FastMap<TemplateId, Option<Arc<Program>>> = FastMap::default();
    // NetFlow v5's layout is a built-in template, installed for the exporter on its first
    // packet like any template, so its rows share everything after this point.
    if let ExportPacket::Netflow5(_) = packet
        && held(netflow5::TEMPLATE_ID).is_none()
    {
        let def = netflow5::template();
        let compiled = programs.compile(&def);
        defined.insert(def.template_id, compiled.as_ref().ok().cloned());
        steps.push(Step::Define {
            def,
            compiled,
            options: false,
        });
    }
    packet.for_each_item(|item| {
        steps.push(match item {
            //= https://www.rfc-editor.org/rfc/rfc7011#section-3.3.2
            //# Values from 4 to 255 are reserved for future use.
            // Judgement: skip the Set, keep the rest of the Message (COMPLIANCE.md).
            Item::Reserved(e) => Step::Skip(DropReason::from(e.kind)),
            Item::Template(TemplateRecord::Definition(def)) => {
                let compiled = programs.compile(&def);
                defined.insert(def.template_id, compiled.as_ref().ok().cloned());
                Step::Define {
                    options: def.is_options(),
                    def,
                    compiled,
                }
            }
            Item::Template(TemplateRecord::Withdrawal(id)) => Step::Withdraw(id),
            Item::Template(TemplateRecord::WithdrawAll(set_id)) => Step::WithdrawAll(set_id),
            Item::Data(template_id, set) => {
                let program = match defined.get(&template_id) {
                    Some(program) => program.as_deref(),
                    None => held(template_id),
                };
                if let Some(program) = program {
                    program.check(&set)?;
                }
                Step::Data(set, template_id)
            }
        });
        Ok(())
    })?;
    Ok(steps)
}
