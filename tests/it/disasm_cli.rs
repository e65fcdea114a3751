//! `flowvm disasm` on a real IPFIX file (RFC 5655) and on captures of NetFlow v9 and v5, through
//! the built binary.

use std::process::Command;

use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;

#[test]
fn disasm_prints_the_program_of_every_template_in_a_file() {
    let def = TemplateDef {
        template_id: TemplateId(300),
        scope_field_count: 0,
        fields: vec![
            FieldSpecifier::iana(8, 4),
            FieldSpecifier::iana(12, 4),
            FieldSpecifier::enterprise(4_242, 7, 8),
        ],
    };
    let mut w = MessageWriter::new(512);
    w.begin_set(SetId::TEMPLATE);
    w.put_template(&def);
    assert!(w.commit());
    let file = w.finish(1_700_000_000, 0, ObservationDomainId(5)).to_vec();
    let dir = std::env::temp_dir().join(format!("flowvm-disasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.ipfix");
    std::fs::write(&path, &file).unwrap();
    let elements = dir.join("acme.csv");
    std::fs::write(
        &elements,
        "pen,id,name,data_type,data_semantics,units,status\n4242,7,acmeBytes,unsigned64,,,\n",
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("disasm")
        .arg(&path)
        .arg("--elements")
        .arg(&elements)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("; observation domain 5"), "{text}");
    assert!(
        text.contains("; template 300: 3 columns, record 16 octets"),
        "{text}"
    );
    assert!(
        text.contains("  3: RIP4 c0        ; sourceIPv4Address (4)"),
        "{text}"
    );
    assert!(text.contains("RUI64 c2       ; acmeBytes (8)"), "{text}");
    assert!(
        text.contains("; 1 messages, 1 templates, 0 rejected, 0 malformed"),
        "{text}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("disasm")
        .arg(dir.join("nope"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disasm_prints_netflow9_templates_and_the_netflow5_layout_from_captures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/captures");
    let output = Command::new(env!("CARGO_BIN_EXE_flowvm"))
        .arg("disasm")
        .arg(dir.join("netflow-parser-softflowd-netflow9.pcap"))
        .arg(dir.join("dpkt-unknown-netflow5.pcap"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    // softflowd's v9 IPv4 template and its options template, whose scope is an interface.
    assert!(
        text.contains("; template 1024: 16 columns, record 42 octets"),
        "{text}"
    );
    assert!(text.contains("; scopeInterface (4)"), "{text}");
    // v5's fixed record, a built-in template of IANA elements.
    assert!(
        text.contains("; template 5: 18 columns, record 48 octets"),
        "{text}"
    );
    assert!(
        text.contains("RUI32 c7       ; flowStartSysUpTime (4)"),
        "{text}"
    );
    assert!(
        text.contains("; 1 messages, 5 templates, 0 rejected, 0 malformed"),
        "{text}"
    );
}
