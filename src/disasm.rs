//! `flowvm disasm`: the program of every distinct template found in IPFIX files or in captures
//! of IPFIX, NetFlow v9 and v5 (whose fixed layout is a built-in template).

use std::collections::HashSet;
use std::io::Write;

use flowvm_exporter::capture::file;
use flowvm_exporter::dissect::udp_datagram;
use flowvm_vm::Compiler;
use flowvm_vm::wire::header::Messages;
use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::wire::netflow5;
use flowvm_vm::wire::packet::{ExportPacket, Item};
use flowvm_vm::wire::template::{TemplateDef, TemplateRecord};

/// What one disassembly saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Export packets (IPFIX Messages, NetFlow packets) read.
    pub messages: u64,
    /// Distinct templates printed.
    pub templates: u64,
    /// Templates the compiler refused.
    pub rejected: u64,
    /// Packets or Sets that could not be decoded.
    pub malformed: u64,
}

/// Writes the listing of every distinct (domain, template) in `bytes`, an IPFIX File (RFC
/// 5655) or a pcap/pcapng capture, to `out`, each once; a malformed packet is reported in the
/// listing and skipped, a framing error ends an IPFIX File.
///
/// # Errors
/// Only errors writing to `out`.
pub fn disassemble(
    bytes: &[u8],
    compiler: &Compiler,
    out: &mut impl Write,
) -> std::io::Result<Summary> {
    let mut d = Disassembler {
        compiler,
        seen: HashSet::new(),
        summary: Summary::default(),
        out,
    };
    if file::is_capture(bytes) {
        let mut failed = Ok(());
        let read = file::for_each_packet(bytes, |p| {
            let Some(datagram) = udp_datagram(p.link, p.data) else {
                return true;
            };
            // Only the versions flowvm collects; other UDP traffic is passed over.
            if !ExportPacket::is_collected_version(datagram.payload) {
                return true;
            }
            failed = d.packet(datagram.payload);
            failed.is_ok()
        });
        failed?;
        if let Err(e) = read {
            d.summary.malformed += 1;
            writeln!(d.out, "; {e}")?;
        }
    } else {
        for framed in Messages::new(bytes) {
            match framed {
                Ok(message) => d.packet(message)?,
                Err(e) => {
                    d.summary.malformed += 1;
                    writeln!(d.out, "; message {}: {e}", d.summary.messages + 1)?;
                }
            }
        }
    }
    Ok(d.summary)
}

/// The state of one disassembly.
struct Disassembler<'c, W> {
    compiler: &'c Compiler,
    seen: HashSet<(ObservationDomainId, TemplateDef)>,
    summary: Summary,
    out: W,
}

impl<W: Write> Disassembler<'_, W> {
    /// Lists the templates of one export packet.
    fn packet(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let packet = match ExportPacket::decode(bytes) {
            Ok(packet) => packet,
            Err(e) => {
                self.summary.malformed += 1;
                return writeln!(self.out, "; message {}: {e}", self.summary.messages + 1);
            }
        };
        self.summary.messages += 1;
        let domain = packet.header().observation_domain_id;
        let mut records = Vec::new();
        if let ExportPacket::Netflow5(_) = packet {
            records.push(TemplateRecord::Definition(netflow5::template()));
        }
        let walked = packet.for_each_item(|item| {
            if let Item::Template(record) = item {
                records.push(record);
            }
            Ok(())
        });
        for record in records {
            self.record(domain, record)?;
        }
        if let Err(e) = walked {
            self.summary.malformed += 1;
            writeln!(self.out, "; message {}: {e}", self.summary.messages)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        domain: ObservationDomainId,
        record: TemplateRecord,
    ) -> std::io::Result<()> {
        let d = domain.0;
        match record {
            TemplateRecord::Definition(def) => {
                if !self.seen.insert((domain, def.clone())) {
                    return Ok(());
                }
                match self.compiler.compile(&def) {
                    Ok(program) => {
                        self.summary.templates += 1;
                        writeln!(self.out, "; observation domain {d}")?;
                        writeln!(self.out, "{program}")
                    }
                    Err(e) => {
                        self.summary.rejected += 1;
                        writeln!(self.out, "; observation domain {d}: rejected: {e}\n")
                    }
                }
            }
            TemplateRecord::Withdrawal(id) => {
                writeln!(
                    self.out,
                    "; observation domain {d}: template {} withdrawn\n",
                    id.0
                )
            }
            TemplateRecord::WithdrawAll(set_id) => {
                writeln!(
                    self.out,
                    "; observation domain {d}: all of {set_id:?} withdrawn\n"
                )
            }
        }
    }
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
