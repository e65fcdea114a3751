//! `flowvm disasm`: the program of every distinct template found in IPFIX files.

use std::collections::HashSet;
use std::io::Write;

use flowvm_vm::Compiler;
use flowvm_vm::wire::header::{Message, Messages};
use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::wire::set::SetKind;
use flowvm_vm::wire::template::{TemplateDef, TemplateRecord, TemplateRecords};

/// What one disassembly saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages read.
    pub messages: u64,
    /// Distinct templates printed.
    pub templates: u64,
    /// Templates the compiler refused.
    pub rejected: u64,
    /// Messages or Sets that could not be decoded.
    pub malformed: u64,
}

/// Writes the listing of every distinct (domain, template) in `bytes` to `out`, each once; a
/// malformed Message is reported in the listing and skipped, a framing error ends the file.
///
/// # Errors
/// Only errors writing to `out`.
pub fn disassemble(
    bytes: &[u8],
    compiler: &Compiler,
    out: &mut impl Write,
) -> std::io::Result<Summary> {
    let mut seen: HashSet<(ObservationDomainId, TemplateDef)> = HashSet::new();
    let mut summary = Summary::default();
    for framed in Messages::new(bytes) {
        let message = match framed.and_then(Message::decode) {
            Ok(message) => message,
            Err(e) => {
                summary.malformed += 1;
                writeln!(out, "; message {}: {e}", summary.messages + 1)?;
                continue;
            }
        };
        summary.messages += 1;
        let domain = message.header.observation_domain_id;
        for set in message.sets() {
            let records = match set.and_then(|s| s.kind().map(|k| (s, k))) {
                Ok((set, SetKind::Template | SetKind::OptionsTemplate)) => {
                    TemplateRecords::new(&set)
                }
                Ok((_, SetKind::Data(_))) => continue,
                Err(e) => {
                    summary.malformed += 1;
                    writeln!(out, "; message {}: {e}", summary.messages)?;
                    break;
                }
            };
            for record in records {
                match record {
                    Ok(TemplateRecord::Definition(def)) => {
                        if !seen.insert((domain, def.clone())) {
                            continue;
                        }
                        match compiler.compile(&def) {
                            Ok(program) => {
                                summary.templates += 1;
                                writeln!(out, "; observation domain {}", domain.0)?;
                                writeln!(out, "{program}")?;
                            }
                            Err(e) => {
                                summary.rejected += 1;
                                writeln!(
                                    out,
                                    "; observation domain {}: rejected: {e}\n",
                                    domain.0
                                )?;
                            }
                        }
                    }
                    Ok(TemplateRecord::Withdrawal(id)) => {
                        writeln!(
                            out,
                            "; observation domain {}: template {} withdrawn\n",
                            domain.0, id.0
                        )?;
                    }
                    Ok(TemplateRecord::WithdrawAll(set_id)) => {
                        writeln!(
                            out,
                            "; observation domain {}: all of {set_id:?} withdrawn\n",
                            domain.0
                        )?;
                    }
                    Err(e) => {
                        summary.malformed += 1;
                        writeln!(out, "; message {}: {e}", summary.messages)?;
                    }
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use flowvm_vm::wire::ids::{SetId, TemplateId};
    use flowvm_vm::wire::template::FieldSpecifier;
    use flowvm_vm::wire::writer::MessageWriter;

    use super::*;

    fn template_message(domain: u32, lengths: [u16; 2]) -> Vec<u8> {
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: vec![
                FieldSpecifier::iana(8, lengths[0]),
                FieldSpecifier::iana(2, lengths[1]),
            ],
        };
        let mut w = MessageWriter::new(512);
        w.begin_set(SetId::TEMPLATE);
        w.put_template(&def);
        assert!(w.commit());
        w.finish(0, 0, ObservationDomainId(domain)).to_vec()
    }

    #[test]
    fn prints_each_distinct_template_once_and_reports_rejections() {
        let mut file = template_message(1, [4, 4]);
        file.extend(template_message(1, [4, 4]));
        file.extend(template_message(2, [4, 4]));
        // An odd length is marked, not rejected; fields of no octets at all are.
        file.extend(template_message(3, [5, 4]));
        file.extend(template_message(4, [0, 0]));
        file.extend([0, 10, 0, 99]);
        let mut out = Vec::new();
        let summary = disassemble(&file, &Compiler::default(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            summary,
            Summary {
                messages: 5,
                templates: 3,
                rejected: 1,
                malformed: 1
            }
        );
        assert_eq!(text.matches("RIP4 c0").count(), 2, "{text}");
        assert!(
            text.contains("ROCT c0/5") && text.contains("raw: not a length of ipv4Address"),
            "{text}"
        );
        assert!(text.contains("no field occupies any bytes"), "{text}");
    }
}
