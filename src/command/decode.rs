//! `flowvm decode`: files and captures into the archive, through the collector's decoder; with
//! an object store as the destination, through the spool, shipped before it exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flowvm_vm::{Compiler, Limits};

use crate::collector::decode::Decoder;
use crate::command::{Failure, check_store, ready, registry};
use crate::config::Config;
use crate::sink::parquet::Archive;
use crate::sink::spool::Left;
use crate::telemetry::Counters;
use crate::{clock, offline};

/// How long decode waits for its uploads once every file is complete.
const SHIP_AT_END: Duration = Duration::from_secs(600);

/// Decodes `files` into `config.out`.
///
/// # Errors
/// An input that cannot be read, an archive or spool that cannot be written, a store that
/// refuses the files.
pub(super) fn decode(
    config: &Config,
    files: &[PathBuf],
    elements: Option<&Path>,
) -> Result<(), Failure> {
    let compiler = Compiler::new(registry(elements)?, Limits::default());
    let store = check_store(config)?;
    let counters = Arc::new(Counters::default());
    let mut ready = ready(config, store, &counters)?;
    let mut decoder = Decoder::new(compiler, config.decoder(), Arc::clone(&counters));
    let mut archive = Archive::new(config.archive(), Arc::clone(&counters));
    let shipper = match ready.shipping.take() {
        Some((spool, shipper)) => {
            archive = archive.with_spool(spool);
            Some(shipper)
        }
        None => None,
    };
    offline::decode_files(
        files,
        &mut decoder,
        &mut archive,
        clock::now(),
        Duration::from_millis(config.sync_interval_ms),
    )?;
    let left = match shipper {
        Some(shipper) => shipper.finish(SHIP_AT_END).ok_or_else(|| {
            format!(
                "uploads still running after {} s; what is not shipped stays in {}",
                SHIP_AT_END.as_secs(),
                config.local_dir().display()
            )
        })?,
        None => Left::default(),
    };
    println!(
        "flowvm decode: {} messages, {} records ({} decoded late), {} messages dropped, {} records lost, {} files written to {}{}",
        counters.messages_received.get(),
        counters.records_decoded.get(),
        counters.records_decoded_late.get(),
        counters.messages_dropped.get(),
        counters.records_lost.get(),
        counters.files_written.get(),
        config.out.display(),
        if counters.uploads.get() > 0 {
            format!(" ({} uploaded)", counters.uploads.get())
        } else {
            String::new()
        },
    );
    if ready.recovered.files > 0 {
        println!(
            "flowvm decode: {} files recovered from journals a crash left",
            ready.recovered.files
        );
    }
    if left.files > 0 {
        return Err(format!(
            "{} files ({} octets) could not be uploaded; they stay in {} and the next decode or collect with this spool ships them",
            left.files,
            left.bytes,
            config.local_dir().display()
        )
        .into());
    }
    Ok(())
}
