//! Hostile variations of every message in `testdata/ipfix/` and of generated messages: every
//! strict prefix is rejected, mutated lengths and IDs give the exact error kind, and nothing
//! panics.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::path::Path;

use flowvm_vm::DecodeErrorKind;
use flowvm_vm::wire::header::Message;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId, TemplateId};
use flowvm_vm::wire::template::{FieldSpecifier, TemplateDef};
use flowvm_vm::wire::writer::MessageWriter;

/// A message with a Template Set and a Data Set of three records (one variable-length field).
fn generated() -> Vec<u8> {
    let def = TemplateDef {
        template_id: TemplateId(256),
        scope_field_count: 0,
        fields: vec![
            FieldSpecifier::iana(8, 4),
            FieldSpecifier::iana(1, 4),
            FieldSpecifier::iana(82, 65_535),
        ],
    };
    let mut w = MessageWriter::new(1500);
    w.begin_set(SetId::TEMPLATE);
    w.put_template(&def);
    assert!(w.commit());
    w.begin_set(SetId(256));
    for name in ["eth0", "", "a-much-longer-interface-name"] {
        w.put_u32(0x0a00_0001);
        w.put_u32(1500);
        w.put_var_len(name.as_bytes());
        assert!(w.commit());
    }
    w.finish(1, 2, ObservationDomainId(3)).to_vec()
}

/// Every vector in `testdata/ipfix`, plus the generated message.
fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/ipfix");
    let mut out = vec![("generated".to_owned(), generated())];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".hex") {
                out.push((name.clone(), common::hex(&name)));
            }
        }
    }
    out.sort();
    out
}

/// Offsets at which a Set ends, so that a prefix there is a well-formed shorter message.
fn set_ends(message: &[u8]) -> Vec<usize> {
    Message::decode(message)
        .unwrap()
        .sets()
        .map(|s| s.unwrap())
        .map(|s| s.offset + s.body.len())
        .collect()
}

/// Template messages first (data vectors need them), so prefixes of data sets reach the VM.
fn templates() -> Vec<Vec<u8>> {
    vectors()
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| v.get(16..18) == Some(&[0, 2]) || v.get(16..18) == Some(&[0, 3]))
        .collect()
}

#[test]
fn every_strict_prefix_of_every_vector_is_rejected() {
    for (name, v) in vectors() {
        for len in 0..v.len() {
            assert!(Message::decode(&v[..len]).is_err(), "{name}: prefix {len}");
        }
    }
}

#[test]
fn prefixes_with_a_patched_message_length_fail_unless_they_end_on_a_set() {
    let templates = templates();
    for (name, v) in vectors() {
        let ends = set_ends(&v);
        for len in 16..v.len() {
            let mut cut = v[..len].to_vec();
            cut[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            let mut messages: Vec<&[u8]> = templates.iter().map(Vec::as_slice).collect();
            messages.push(&cut);
            let result = common::decode(&messages);
            assert_eq!(
                result.is_ok(),
                len == 16 || ends.contains(&len),
                "{name}: prefix {len}: {result:?}"
            );
        }
    }
}

fn with_u16(v: &[u8], at: usize, value: u16) -> Vec<u8> {
    let mut out = v.to_vec();
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
    out
}

#[test]
fn mutated_lengths_and_ids_give_the_exact_error() {
    for (name, v) in vectors() {
        let kind = |m: &[u8]| common::decode(&[m]).map(|_| ()).map_err(|e| e.kind);
        assert_eq!(
            kind(&with_u16(&v, 0, 9)),
            Err(DecodeErrorKind::UnsupportedVersion(9)),
            "{name}"
        );
        for length in [0, 15, u16::try_from(v.len() + 1).unwrap(), u16::MAX] {
            assert!(
                matches!(
                    kind(&with_u16(&v, 2, length)),
                    Err(DecodeErrorKind::LengthMismatch { .. })
                ),
                "{name}"
            );
        }
        // The last Set's length: every bad value gives its own exact error.
        let last = Message::decode(&v).unwrap().sets().last().unwrap().unwrap();
        let at = last.offset - 2;
        let len = u16::try_from(last.body.len() + 4).unwrap();
        for (bad, expect) in [
            (0, DecodeErrorKind::BadSetLength(0)),
            (3, DecodeErrorKind::BadSetLength(3)),
            (len + 1, DecodeErrorKind::BadSetLength(len + 1)),
            (u16::MAX, DecodeErrorKind::BadSetLength(u16::MAX)),
            (len - 1, DecodeErrorKind::Truncated),
        ] {
            assert_eq!(
                kind(&with_u16(&v, at, bad)),
                Err(expect),
                "{name}: set length {bad}"
            );
        }
        for reserved in [0, 1, 4, 255] {
            assert_eq!(
                kind(&with_u16(&v, at - 2, reserved)),
                Err(DecodeErrorKind::ReservedSetId(reserved)),
                "{name}"
            );
        }
    }
}

#[test]
fn mutated_template_records_give_the_exact_error() {
    let v = generated();
    let kind = |m: &[u8]| common::decode(&[m]).map(|_| ()).map_err(|e| e.kind);
    // Template ID (offset 20) below 256, and a Field Count (offset 22) past the Set.
    assert_eq!(
        kind(&with_u16(&v, 20, 255)),
        Err(DecodeErrorKind::BadTemplateId(255))
    );
    assert_eq!(kind(&with_u16(&v, 22, 4)), Err(DecodeErrorKind::Truncated));
    assert_eq!(
        kind(&with_u16(&v, 22, u16::MAX)),
        Err(DecodeErrorKind::Truncated)
    );
}
