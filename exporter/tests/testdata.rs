//! The committed captures are exactly what the committed generator writes.

#[path = "../examples/make_testdata.rs"]
#[expect(dead_code, reason = "the example's `main` is not called here")]
mod make_testdata;

#[test]
fn committed_pcaps_match_the_generator() {
    let dir = std::env::temp_dir().join(format!("flowvm-testdata-{}", std::process::id()));
    make_testdata::write_all(&dir).unwrap();
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap");
    for name in ["mixed.pcap", "mixed.pcapng", "long.pcap", "many.pcap"] {
        let fresh = std::fs::read(dir.join(name)).unwrap();
        let old = std::fs::read(committed.join(name)).unwrap();
        assert!(
            fresh == old,
            "testdata/pcap/{name} differs from the generator's output: run \
             `cargo run -p flowvm-exporter --example make_testdata -- testdata/pcap`"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
