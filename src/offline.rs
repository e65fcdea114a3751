//! `flowvm decode`: IPFIX Files (RFC 5655) and pcap/pcapng captures of IPFIX, NetFlow v9 and
//! NetFlow v5 over UDP into the same archive the collector writes, through the same decoder
//! core.
//!
//! Time comes from the input, not the clock: a capture's packet timestamps, or a file's Export
//! Times, drive the template and pending timers and choose the archive partitions, so decoding
//! the same input twice gives the same archive.

use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use flowvm_exporter::capture::file;
use flowvm_exporter::dissect::udp_datagram;
use flowvm_vm::wire::header::{MessageHeader, Messages};
use flowvm_vm::wire::packet::ExportPacket;
use indicatif::{ProgressBar, ProgressStyle};

use crate::collector::decode::Decoder;
use crate::collector::session::TransportSession;

use crate::sink::parquet::Archive;
use crate::sink::{self, Sink};

/// Decodes `paths` in order into `archive`, then completes every file. In captures, UDP
/// datagrams that do not start with a version flowvm collects (10, 9, 5) are passed over.
/// The archive is synced every `sync_every` of the clock, as the collector's is: a decode that
/// is killed leaves what it read that long before in journals and checkpoints, and under load
/// each batch is encoded once.
///
/// # Errors
/// An input that cannot be read, or an archive write failure.
pub fn decode_files(
    paths: &[impl AsRef<Path>],
    decoder: &mut Decoder,
    archive: &mut Archive,
    base: Instant,
    sync_every: Duration,
) -> Result<(), String> {
    let total: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut batches = Vec::new();
    let mut out = Out {
        archive,
        every: sync_every,
        synced: crate::clock::now(),
    };
    let mut clock = Clock {
        base,
        first: None,
        last_unix: 0,
    };
    for (index, path) in paths.iter().enumerate() {
        let path = path.as_ref();
        progress.set_message(path.display().to_string());
        let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut head = Vec::with_capacity(4);
        (&mut file)
            .take(4)
            .read_to_end(&mut head)
            .and_then(|_| file.seek(std::io::SeekFrom::Start(0)))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let is_capture = file::is_capture(&head);
        let counted = progress.wrap_read(file);
        if is_capture {
            file::for_each_packet(counted, |p| {
                let Some(d) = udp_datagram(p.link, p.data) else {
                    return true;
                };
                if !ExportPacket::is_collected_version(d.payload) {
                    return true;
                }
                let now = clock.at_nanos(i64::try_from(p.timestamp_ns).unwrap_or(i64::MAX));
                let session = TransportSession::Udp {
                    exporter: d.source,
                    collector: d.destination,
                };
                decoder.handle(session, d.payload, now, &mut batches);
                out.drain(&mut batches, clock.last_unix, decoder);
                true
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        } else {
            let mut bytes = Vec::new();
            let mut counted = counted;
            counted
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let session = TransportSession::File {
                index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            for message in Messages::new(&bytes) {
                match message {
                    Ok(message) => {
                        let export = MessageHeader::decode(message)
                            .map(|h| h.export_time)
                            .unwrap_or(0);
                        let now = clock.at_nanos(i64::from(export) * 1_000_000_000);
                        decoder.handle(session, message, now, &mut batches);
                        out.drain(&mut batches, clock.last_unix, decoder);
                    }
                    Err(e) => {
                        decoder.counters().messages_dropped.add(1);
                        decoder.counters().record_drop(e.kind.into(), 1);
                        tracing::warn!(file = %path.display(), error = %e, "IPFIX File damaged; the rest of it is skipped.");
                    }
                }
            }
            decoder.close_session(session);
        }
        decoder.expire(clock.now());
    }
    decoder.finish(&mut batches);
    out.drain(&mut batches, clock.last_unix, decoder);
    let closed = out.archive.close();
    progress.finish_and_clear();
    closed.map_err(|e| format!("completing the archive: {e}"))?;
    Ok(())
}

/// Input time mapped onto `Instant`s for the decoder's timers.
struct Clock {
    base: Instant,
    first: Option<i64>,
    last_unix: i64,
}

impl Clock {
    fn at_nanos(&mut self, ts: i64) -> Instant {
        let first = *self.first.get_or_insert(ts);
        self.last_unix = ts.div_euclid(1_000_000_000);
        self.base + Duration::from_nanos(u64::try_from(ts - first).unwrap_or(0))
    }

    fn now(&self) -> Instant {
        self.first.map_or(self.base, |first| {
            self.base
                + Duration::from_secs(
                    u64::try_from(self.last_unix - first.div_euclid(1_000_000_000)).unwrap_or(0),
                )
        })
    }
}

/// Where decoded batches go: the archive, synced every `every` (last at `synced`).
struct Out<'a> {
    archive: &'a mut Archive,
    every: Duration,
    synced: Instant,
}

impl Out<'_> {
    /// Writes `batches` into the archive, and syncs it when that is due; what the archive is
    /// done with goes back to `decoder` for its buffers.
    fn drain(&mut self, batches: &mut Vec<RecordBatch>, unix: i64, decoder: &mut Decoder) {
        let counters = Arc::clone(decoder.counters());
        for batch in batches.drain(..) {
            // A full disk holds the decode until space returns: nothing read is dropped.
            sink::write_with_retry(self.archive, &batch, || unix, &counters, || false);
        }
        sink::sync_when_due(self.archive, &mut self.synced, self.every, &counters);
        for batch in self.archive.take_spent() {
            decoder.keep_spent(batch);
        }
    }
}
