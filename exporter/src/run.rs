//! The meter's loop: captured packets in, timers on the capture clock, records out to the
//! Exporting Process; and the summary at the end.
//!
//! STYLE.md sketches a tokio `select!` edge here. The loop is synchronous instead: a pcap
//! replay is CPU-bound and has no other event source (its clock is the packets' own), and a live
//! capture waits in `recvfrom` with a timeout that doubles as the timer tick. A runtime would add
//! a hop per packet and nothing else.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::capture::file::{self, CaptureError, MappedCapture};
use crate::capture::live::LiveCapture;
use crate::capture::{CapturedPacket, sys};
use crate::clock;
use crate::dissect::{self, Addresses, Skip, protocol};
use crate::export::transport::Transport;
use crate::export::{ExportStats, ExportingProcess};
use crate::flow::key::{KeyMask, PackedKey};
use crate::flow::map::KeyHasher;
use crate::flow::table::{Arrival, Observation};
use crate::flow::{FlowRecord, FlowTable, RecordFlags, TableStats};

/// Packets the meter keys before it counts them: enough for their flow table loads to overlap,
/// few enough to stay in the first-level cache (VPP's vectors hold up to 256).
const BATCH: usize = 32;

/// The exporter's own traffic, which it must not meter (VPP marks its buffers
/// `VNET_BUFFER_F_FLOW_REPORT`; a capture sees only bytes, so the meter matches the export
/// socket's addresses instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnTraffic {
    /// The export sockets' bound addresses, one per worker (an unspecified IP matches any
    /// address, port 0 any port: a TCP socket's port is known only once it connects). Any
    /// worker's capture may see any worker's Messages.
    pub locals: Vec<SocketAddr>,
    /// The collector.
    pub collector: SocketAddr,
}

impl OwnTraffic {
    /// Whether `d`, a UDP or TCP packet to or from the collector's port (the caller's test,
    /// made inline on every packet: see `Keying::own_port`), is the exporter's own traffic.
    fn matches(&self, d: &dissect::Dissected) -> bool {
        let (src, dst): (IpAddr, IpAddr) = match d.addresses {
            Addresses::V4(s, d) => (s.into(), d.into()),
            Addresses::V6(s, d) => (s.into(), d.into()),
            Addresses::None => return false,
        };
        let local = |ip: IpAddr, port: u16| {
            self.locals.iter().any(|l| {
                (l.ip().is_unspecified() || l.ip() == ip) && (l.port() == 0 || l.port() == port)
            })
        };
        let out = dst == self.collector.ip()
            && d.dst_port == self.collector.port()
            && local(src, d.src_port);
        let back = src == self.collector.ip()
            && d.src_port == self.collector.port()
            && local(dst, d.dst_port);
        out || back
    }
}

/// What capture and dissection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames read.
    pub packets: u64,
    /// Frames metered.
    pub metered: u64,
    /// Frames skipped: a header cut short.
    pub truncated: u64,
    /// Frames skipped: a header invalid.
    pub malformed: u64,
    /// Frames skipped: a link type not read.
    pub unsupported_link: u64,
    /// Non-IP frames not metered because `l2` is not recorded.
    pub not_ip: u64,
    /// The exporter's own Messages (and their TCP acknowledgements), not metered.
    pub own_export: u64,
    /// Frames of a live interface the kernel dropped because the meter fell behind (its
    /// receive ring was full).
    pub kernel_drops: u64,
}

/// The first half of metering a frame, which needs of the flow table only its hasher:
/// dissection, the exporter's own traffic set aside, the flow key packed and hashed. In a
/// pipelined replay it runs on the capture's reader thread.
#[derive(Debug)]
struct Keying {
    /// The key fields the record flags keep.
    key_mask: KeyMask,
    hasher: KeyHasher,
    own: Option<OwnTraffic>,
    /// The collector's port, when there is own traffic to recognise.
    own_port: u16,
    /// The capture clock: the latest packet timestamp (or live wall time) seen.
    now_ns: u64,
    stats: CaptureStats,
}

impl Keying {
    /// The frame `p` as its flow table counts it, or `None` when it is not metered (counted
    /// in the stats: the caller still lets the clock pass).
    #[inline(always)]
    fn key(&mut self, p: &CapturedPacket<'_>) -> Option<Arrival> {
        self.stats.packets += 1;
        self.now_ns = self.now_ns.max(p.timestamp_ns);
        // The fast path's result is used where it was built: through `dissect`, its move from
        // one enum into another cost each frame about 40 instructions.
        let fast = dissect::fast(p.link, p.data);
        let general;
        let d = match &fast {
            Some(d) => d,
            None => match dissect::general(p.link, p.data, p.orig_len) {
                Ok(d) => {
                    general = d;
                    &general
                }
                Err(skip) => {
                    *match skip {
                        Skip::Truncated => &mut self.stats.truncated,
                        Skip::Malformed => &mut self.stats.malformed,
                        Skip::UnsupportedLink => &mut self.stats.unsupported_link,
                    } += 1;
                    return None;
                }
            },
        };
        // The protocol and the collector's port first, inline: most packets are not to it.
        if matches!(d.protocol, protocol::UDP | protocol::TCP)
            && (d.dst_port == self.own_port || d.src_port == self.own_port)
            && self.own.as_ref().is_some_and(|own| own.matches(d))
        {
            self.stats.own_export += 1;
            return None;
        }
        let Some(key) = PackedKey::of(d, &self.key_mask, p.interface) else {
            self.stats.not_ip += 1;
            return None;
        };
        self.stats.metered += 1;
        Some(Arrival {
            key: self.hasher.hash(key),
            packet: Observation {
                timestamp_ns: p.timestamp_ns,
                octets: d.octets,
                tcp_flags: d.tcp_flags,
            },
            now_ns: self.now_ns,
        })
    }
}

/// The second half: the flow table and the Exporting Process on the capture clock.
#[derive(Debug)]
struct Counting<T> {
    table: FlowTable,
    exporter: ExportingProcess<T>,
    records: Vec<FlowRecord>,
}

impl<T: Transport> Counting<T> {
    /// Counts `arrivals` in order, each one's records exported at its clock; the flow table
    /// overlaps their lookups (their index slots should be on their way: see
    /// [`FlowTable::prefetch_slot`]).
    fn count(&mut self, arrivals: &[Arrival]) {
        let exporter = &mut self.exporter;
        self.table
            .observe_batch(arrivals, &mut self.records, |records, now_ns| {
                export(exporter, records, now_ns);
                exporter.poll(now_ns);
            });
    }

    /// [`Self::count`] for packets keyed on another thread: batch by batch, each batch's index
    /// slots fetched first, as [`Meter::packet`] does as it keys them.
    fn count_handed_over(&mut self, arrivals: &[Arrival]) {
        for batch in arrivals.chunks(BATCH) {
            for arrival in batch {
                self.table.prefetch_slot(arrival);
            }
            self.count(batch);
        }
    }

    /// The clock reached `now_ns` (after the packets counted so far): fires due timers and
    /// flushes.
    fn tick(&mut self, now_ns: u64) {
        self.table.expire(now_ns, &mut self.records);
        export(&mut self.exporter, &mut self.records, now_ns);
        self.exporter.poll(now_ns);
    }

    /// Exports every flow (flowEndReason 4) and sends the last partial Message.
    fn finish(&mut self, now_ns: u64) {
        let exporter = &mut self.exporter;
        self.table.flush(|record| exporter.export(&record, now_ns));
        self.exporter.flush(now_ns);
    }
}

/// The meter: flow table and Exporting Process on one clock.
#[derive(Debug)]
pub struct Meter<T> {
    keying: Keying,
    counting: Counting<T>,
    /// The packets keyed and not yet counted (at most `BATCH`).
    batch: Vec<Arrival>,
}

impl<T: Transport> Meter<T> {
    /// A meter keying flows by `flags` into `table` and exporting through `exporter`; packets
    /// of `own` traffic are not metered.
    pub fn new(
        flags: RecordFlags,
        table: FlowTable,
        exporter: ExportingProcess<T>,
        own: Option<OwnTraffic>,
    ) -> Self {
        Self {
            keying: Keying {
                key_mask: KeyMask::new(flags),
                hasher: table.hasher(),
                own_port: own.as_ref().map_or(0, |own| own.collector.port()),
                own,
                now_ns: 0,
                stats: CaptureStats::default(),
            },
            counting: Counting {
                table,
                exporter,
                records: Vec::new(),
            },
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// Meters one captured frame. Its flow is counted when a batch of 32 frames is waiting, or
    /// at the next [`Self::tick`] or [`Self::finish`], in the order the frames came: the
    /// records, and when they are exported, are the same as if each were counted at once.
    pub fn packet(&mut self, p: &CapturedPacket<'_>) {
        match self.keying.key(p) {
            Some(arrival) => {
                self.counting.table.prefetch_slot(&arrival);
                self.batch.push(arrival);
                if self.batch.len() >= BATCH {
                    self.count_batch();
                }
            }
            None => self.tick(self.keying.now_ns),
        }
    }

    /// Counts the waiting packets.
    fn count_batch(&mut self) {
        self.counting.count(&self.batch);
        self.batch.clear();
    }

    /// Time passes without a packet (a live capture's idle poll): counts the waiting packets,
    /// fires due timers and flushes.
    pub fn tick(&mut self, now_ns: u64) {
        self.count_batch();
        self.keying.now_ns = self.keying.now_ns.max(now_ns);
        self.counting.tick(self.keying.now_ns);
    }

    /// Exports every flow (flowEndReason 4) and sends the last partial Message.
    pub fn finish(&mut self) -> Summary {
        self.count_batch();
        self.counting.finish(self.keying.now_ns);
        self.summary()
    }

    /// The counters so far (of the flow table: up to the last [`Self::tick`] or
    /// [`Self::finish`]).
    pub fn summary(&self) -> Summary {
        Summary {
            capture: self.keying.stats,
            table: self.counting.table.stats(),
            export: self.counting.exporter.stats(),
        }
    }

    /// The Exporting Process.
    pub fn exporter(&self) -> &ExportingProcess<T> {
        &self.counting.exporter
    }
}

/// Hands `records` to `exporter` at clock `now_ns`.
fn export<T: Transport>(
    exporter: &mut ExportingProcess<T>,
    records: &mut Vec<FlowRecord>,
    now_ns: u64,
) {
    for r in records.drain(..) {
        exporter.export(&r, now_ns);
    }
}

/// Replays a pcap or pcapng capture held in memory (a
/// [`MappedCapture`](crate::capture::file::MappedCapture)) into `meter` on the packets' own
/// clock, on this thread; with `speed`, paced at that multiple of real time. Stops early when
/// `stop` is set.
///
/// # Errors
/// The capture cannot be read (packets before the damage are metered).
pub fn replay<T: Transport>(
    capture: &[u8],
    meter: &mut Meter<T>,
    speed: Option<f64>,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let started = clock::now();
    let mut first_ts: Option<u64> = None;
    let speed = speed.filter(|s| *s > 0.0);
    file::for_each_packet_in(capture, |p| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(speed) = speed {
            let first = *first_ts.get_or_insert(p.timestamp_ns);
            let offset = p.timestamp_ns.saturating_sub(first) as f64 / speed;
            let due = Duration::try_from_secs_f64(offset / 1e9).unwrap_or(Duration::MAX);
            let elapsed = clock::now().duration_since(started);
            if let Some(wait) = due.checked_sub(elapsed) {
                std::thread::sleep(wait);
            }
        }
        meter.packet(p);
        true
    })
}

/// Packets (and passings of the clock) a capture's reader hands the meter at once in a
/// pipelined replay: few enough to stay in the second-level cache (about 100 KiB), enough that
/// handing over costs little a packet.
const HANDOVER: usize = 1024;

/// Batches on their way from the reader to the meter at most: the reader runs at most this
/// far ahead, and memory stays bounded.
const HANDOVERS_IN_FLIGHT: usize = 4;

/// What a capture's reader hands the meter: packets keyed, in order, and the passings of the
/// clock between them (a frame not metered still moves the clock).
#[derive(Debug, Default)]
struct Handover {
    arrivals: Vec<Arrival>,
    /// `(n, now_ns)`: the clock reached `now_ns` after the first `n` arrivals.
    ticks: Vec<(usize, u64)>,
}

impl Handover {
    fn len(&self) -> usize {
        self.arrivals.len() + self.ticks.len()
    }

    fn clear(&mut self) {
        self.arrivals.clear();
        self.ticks.clear();
    }
}

/// [`replay`] on two threads, as fast as they go: this one counts flows and exports while a
/// second reads the capture, dissects its frames and keys (and hashes) their flows, handing
/// them over in batches of [`HANDOVER`] through a bounded queue (nfdump's `nfpcapd` splits
/// its reader from its flow thread the same way). The records, the Messages and the counters
/// are those of [`replay`], octet for octet: packets are counted in the order read, on the
/// same clock.
///
/// # Errors
/// The capture cannot be read (packets before the damage are metered).
pub fn replay_pipelined<T: Transport>(
    capture: &MappedCapture,
    meter: &mut Meter<T>,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    pipeline(capture.bytes(), meter, stop, HANDOVER, &|read| {
        capture.unmap_pages(read);
    })
}

/// How long the meter waits for the reader's next batch by polling before it sleeps: longer
/// than the reader takes to fill one, so that while both keep pace neither sleeps, and the
/// reader's hand-over is a store instead of a wake-up (a system call, and on a virtual machine
/// an interrupt between cores through the hypervisor: in a profile, a tenth of the reader's
/// time).
const POLL_FOR_HANDOVER: Duration = Duration::from_micros(500);

/// How far past the reader's place the meter maps the capture in while it waits.
const MAP_AHEAD: usize = 32 << 20;

/// What the meter maps in between two looks at the queue.
const MAP_STEP: usize = 1 << 20;

/// Where the meter starts fetching the capture's lines while it waits, past the reader's
/// place (the reader's own prefetch covers what is nearer), and how far it goes.
const FETCH_FROM: usize = 1 << 20;
const FETCH_TO: usize = 6 << 20;

/// What the meter fetches between two looks at the queue.
const FETCH_STEP: usize = 32 << 10;

/// How far behind the reader's place the meter unmaps the pages it has read, and how much at
/// a time (each call a flush of the reader's core's TLB).
const UNMAP_BEHIND: usize = 1 << 20;
const UNMAP_STEP: usize = 8 << 20;

/// The capture brought nearer to its reader by the meter while it waits for a batch. The
/// reader's walk through the file is bound by memory: a mapped file's pages enter the page
/// table only as they are first read, a page fault each (or one a few pages), and on this
/// machine those faults are a third of a walk through a file in the page cache (a 554 MB
/// capture: 23 ms of faults, 39 ms of reading every line, and one core keeps only so many
/// lines in flight). The meter's core, idle meanwhile, takes the faults (a load a page, up to
/// [`MAP_AHEAD`] ahead) and starts fetching the lines a little ahead of the reader, so that
/// the reader's own prefetches find them in a cache the cores share.
struct ReadAhead<'a> {
    capture: &'a [u8],
    /// The offset the reader has reached, as of its last batch.
    reader_at: &'a AtomicUsize,
    /// The offset mapped in up to.
    mapped: usize,
    /// The offset fetched up to.
    fetched: usize,
    /// Unmaps the pages of a range of the capture.
    unmap: &'a dyn Fn(Range<usize>),
    /// The offset unmapped up to.
    unmapped: usize,
}

impl ReadAhead<'_> {
    /// Takes the next steps ahead of the reader; `false` when far enough ahead already.
    fn step(&mut self) -> bool {
        let at = self.reader_at.load(Ordering::Relaxed);
        let lines = self.next(self.fetched, at, FETCH_FROM..FETCH_TO, FETCH_STEP);
        let fetching = !lines.is_empty();
        if fetching {
            self.fetched = lines.end;
            for line in lines.step_by(64) {
                sys::prefetch_for_another_core(self.capture, line);
            }
        }
        let behind = at.saturating_sub(UNMAP_BEHIND);
        if behind >= self.unmapped.saturating_add(UNMAP_STEP) {
            (self.unmap)(self.unmapped..behind);
            self.unmapped = behind;
        }
        let pages = self.next(self.mapped, at, 0..MAP_AHEAD, MAP_STEP);
        let Some(octets) = self.capture.get(pages.clone()).filter(|p| !p.is_empty()) else {
            return fetching;
        };
        // One octet of each page, folded so that the loads are made (a prefetch of a page
        // not mapped is dropped).
        let folded = octets.iter().step_by(sys::PAGE).fold(0_u8, |a, b| a ^ b);
        std::hint::black_box(folded);
        self.mapped = pages.end;
        true
    }

    /// The next step of one walk ahead of the reader at `at`: from where the walk stopped
    /// (`done`) or `window.start` past the reader, whichever is further, to `window.end` past
    /// the reader, `step` octets at most, within the capture (empty when there is nothing to
    /// do).
    fn next(&self, done: usize, at: usize, window: Range<usize>, step: usize) -> Range<usize> {
        let from = done.max(at.saturating_add(window.start));
        let to = self
            .capture
            .len()
            .min(at.saturating_add(window.end))
            .min(from.saturating_add(step));
        from..to
    }
}

/// The next batch from the reader, or `None` when it is done; in the meantime, reads the
/// capture ahead of the reader.
fn next_handover(
    handovers: &mpsc::Receiver<Handover>,
    ahead: &mut ReadAhead<'_>,
) -> Option<Handover> {
    let started = clock::now();
    loop {
        match handovers.try_recv() {
            Ok(handover) => return Some(handover),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < POLL_FOR_HANDOVER => {
                if !ahead.step() {
                    std::hint::spin_loop();
                }
            }
            Err(mpsc::TryRecvError::Empty) => return handovers.recv().ok(),
        }
    }
}

/// [`replay_pipelined`] handing over `handover` packets at a time.
fn pipeline<T: Transport>(
    capture: &[u8],
    meter: &mut Meter<T>,
    stop: &AtomicBool,
    handover: usize,
    unmap: &dyn Fn(Range<usize>),
) -> Result<(), CaptureError> {
    // Whatever a single-threaded caller left waiting goes first.
    meter.count_batch();
    let Meter {
        keying, counting, ..
    } = meter;
    let reader_at = &AtomicUsize::new(0);
    let mut ahead = ReadAhead {
        capture,
        reader_at,
        mapped: 0,
        fetched: 0,
        unmap,
        unmapped: 0,
    };
    let (full, to_count) = mpsc::sync_channel::<Handover>(HANDOVERS_IN_FLIGHT);
    let (empty, to_fill) = mpsc::sync_channel::<Handover>(HANDOVERS_IN_FLIGHT + 1);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut filling = Handover::default();
            let read = file::for_each_packet_in(capture, |p| {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                match keying.key(p) {
                    Some(arrival) => filling.arrivals.push(arrival),
                    None => filling.ticks.push((filling.arrivals.len(), keying.now_ns)),
                }
                if filling.len() < handover {
                    return true;
                }
                let at = p
                    .data
                    .as_ptr()
                    .addr()
                    .saturating_sub(capture.as_ptr().addr());
                reader_at.store(at, Ordering::Relaxed);
                let next = to_fill.try_recv().unwrap_or_default();
                // The meter hung up only if it is gone; nothing is left to read for.
                full.send(std::mem::replace(&mut filling, next)).is_ok()
            });
            // The meter is waiting for the rest, or is gone.
            let _ = full.send(filling);
            read
        });
        while let Some(mut handed) = next_handover(&to_count, &mut ahead) {
            let mut counted = 0;
            for &(n, now_ns) in &handed.ticks {
                counting.count_handed_over(handed.arrivals.get(counted..n).unwrap_or_default());
                counting.tick(now_ns);
                counted = n;
            }
            counting.count_handed_over(handed.arrivals.get(counted..).unwrap_or_default());
            handed.clear();
            // A full return queue only means the reader has buffers enough.
            let _ = empty.try_send(handed);
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Meters a live interface until `stop` is set.
///
/// # Errors
/// The capture socket failed.
pub fn live<T: Transport>(
    capture: &mut LiveCapture,
    meter: &mut Meter<T>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        match capture.next_packet()? {
            Some(p) => meter.packet(&p),
            None => meter.tick(clock::unix_nanos()),
        }
    }
    meter.keying.stats.kernel_drops += capture.take_kernel_drops()?;
    Ok(())
}

/// The end-of-run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Capture and dissection.
    pub capture: CaptureStats,
    /// The flow table.
    pub table: TableStats,
    /// The Exporting Process.
    pub export: ExportStats,
}

impl std::ops::AddAssign for Summary {
    /// Adds another worker's counts.
    fn add_assign(&mut self, other: Self) {
        let (c, o) = (&mut self.capture, other.capture);
        c.packets += o.packets;
        c.metered += o.metered;
        c.truncated += o.truncated;
        c.malformed += o.malformed;
        c.unsupported_link += o.unsupported_link;
        c.not_ip += o.not_ip;
        c.own_export += o.own_export;
        c.kernel_drops += o.kernel_drops;
        let (t, o) = (&mut self.table, other.table);
        t.packets += o.packets;
        t.flows += o.flows;
        t.records += o.records;
        t.table_full += o.table_full;
        let (e, o) = (&mut self.export, other.export);
        e.records += o.records;
        e.messages += o.messages;
        e.template_messages += o.template_messages;
        e.octets += o.octets;
        e.oversize_messages += o.oversize_messages;
        e.send_errors += o.send_errors;
        e.records_lost += o.records_lost;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.capture;
        let t = &self.table;
        let e = &self.export;
        writeln!(
            f,
            "packets read {}, metered {}, skipped {} (truncated {}, malformed {}, unsupported link {}, non-IP {}, own export {}), dropped by the kernel {}",
            c.packets,
            c.metered,
            c.packets - c.metered,
            c.truncated,
            c.malformed,
            c.unsupported_link,
            c.not_ip,
            c.own_export,
            c.kernel_drops
        )?;
        writeln!(
            f,
            "flows {}, records {} ({} exported alone: flow table full)",
            t.flows, t.records, t.table_full
        )?;
        write!(
            f,
            "exported {} records in {} messages ({} with templates, {} over the path MTU), {} octets; {} send errors, {} records lost",
            e.records,
            e.messages,
            e.template_messages,
            e.oversize_messages,
            e.octets,
            e.send_errors,
            e.records_lost
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use flowvm_vm::Registry;
    use flowvm_vm::wire::ids::ObservationDomainId;

    use super::*;
    use crate::export::ExportConfig;
    use crate::export::templates::Templates;
    use crate::flow::Timers;

    /// The Messages sent, as a collector would receive them.
    #[derive(Debug, Default)]
    struct Messages {
        sent: Vec<Vec<u8>>,
        open: bool,
    }

    impl Transport for Messages {
        fn open(&mut self) -> io::Result<bool> {
            let new = !self.open;
            self.open = true;
            Ok(new)
        }

        fn send(&mut self, message: &[u8]) -> io::Result<()> {
            self.sent.push(message.to_vec());
            Ok(())
        }

        fn unreliable(&self) -> bool {
            true
        }
    }

    fn meter() -> Meter<Messages> {
        meter_of(None)
    }

    fn meter_of(own: Option<OwnTraffic>) -> Meter<Messages> {
        const S: u64 = 1_000_000_000;
        let templates = Templates::new(RecordFlags::L3_L4, &Registry::new())
            .unwrap_or_else(|e| unreachable!("{e}"));
        let config = ExportConfig {
            message_budget: 512 - 28,
            template_interval_ns: 20 * S,
            flush_interval_ns: 5 * S,
            domain: ObservationDomainId(1),
        };
        let exporter = ExportingProcess::new(config, templates, Messages::default())
            .with_export_time(|| 1_234);
        let timers = Timers {
            active_ns: 10 * S,
            passive_ns: 30 * S,
            tick_ns: S,
        };
        // A small table: some captures fill it, so the full-table path is counted too.
        Meter::new(
            RecordFlags::L3_L4,
            FlowTable::new(timers, 64),
            exporter,
            own,
        )
    }

    /// A capture cut part-way, replayed on two threads: the reader's error comes back, after
    /// the packets before the cut were counted and exported as on one thread; a replay
    /// stopped before it starts reads nothing.
    #[test]
    fn a_pipelined_replay_reports_a_cut_after_counting_what_came_before_and_stops() {
        let path = format!("{}/../testdata/pcap/many.pcap", env!("CARGO_MANIFEST_DIR"));
        let whole = std::fs::read(&path).unwrap_or_default();
        let cut = whole.get(..whole.len() - 5).unwrap_or_default();
        let (mut piped, mut alone) = (meter(), meter());
        let read = pipeline(cut, &mut piped, &AtomicBool::new(false), 7, &|_| {});
        let error = read.err().map(|e| e.0).unwrap_or_default();
        assert!(error.starts_with("capture cut short at octet "), "{error}");
        let read = replay(cut, &mut alone, None, &AtomicBool::new(false));
        assert!(read.is_err());
        let (p, a) = (piped.finish(), alone.finish());
        assert_eq!(p, a);
        assert!(p.capture.packets > 100, "{p:?}");
        assert_eq!(
            piped.exporter().transport().sent,
            alone.exporter().transport().sent
        );
        let mut stopped = meter();
        let read = pipeline(&whole, &mut stopped, &AtomicBool::new(true), 7, &|_| {});
        assert_eq!(read, Ok(()));
        assert_eq!(stopped.finish().capture.packets, 0);
    }

    /// The exporter's own Messages to the collector, and the collector's TCP segments back,
    /// are not metered; other traffic to or from the collector's port is, and so is traffic
    /// of the exporter's address on other ports.
    #[test]
    fn the_exporters_own_traffic_is_not_metered() {
        use etherparse::PacketBuilder;
        let collector = SocketAddr::from(([192, 0, 2, 9], 4739));
        let local = SocketAddr::from(([192, 0, 2, 1], 50_000));
        let mut meter = meter_of(Some(OwnTraffic {
            locals: vec![local],
            collector,
        }));
        let udp = |src: ([u8; 4], u16), dst: ([u8; 4], u16)| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(src.0, dst.0, 64)
                .udp(src.1, dst.1)
                .write(&mut v, &[0; 8])
                .map(|()| v)
                .unwrap_or_default()
        };
        let tcp = |src: ([u8; 4], u16), dst: ([u8; 4], u16)| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(src.0, dst.0, 64)
                .tcp(src.1, dst.1, 1, 1024)
                .ack(1)
                .write(&mut v, &[])
                .map(|()| v)
                .unwrap_or_default()
        };
        let (me, it) = (([192, 0, 2, 1], 50_000), ([192, 0, 2, 9], 4739));
        let frames = [
            (udp(me, it), false),
            (tcp(it, me), false),
            // Another host to the collector, and this host to it from another port.
            (udp(([192, 0, 2, 7], 50_000), it), true),
            (udp(([192, 0, 2, 1], 50_001), it), true),
            // This host's port to another port of the collector's host.
            (udp(me, ([192, 0, 2, 9], 53)), true),
        ];
        for (i, (frame, metered)) in frames.iter().enumerate() {
            let before = meter.summary().capture;
            meter.packet(&CapturedPacket {
                timestamp_ns: 1_000,
                link: crate::capture::LinkType::Ethernet,
                data: frame,
                orig_len: u32::try_from(frame.len()).unwrap_or(0),
                interface: 0,
            });
            let after = meter.summary().capture;
            assert_eq!(
                after.metered - before.metered,
                u64::from(*metered),
                "frame {i}"
            );
            assert_eq!(
                after.own_export - before.own_export,
                u64::from(!metered),
                "frame {i}"
            );
        }
    }

    /// Counting frames in batches, on one thread or handed over from a reader thread, sends,
    /// octet for octet, the Messages that counting each frame at once does (an idle poll
    /// after every frame counts it at once), on every test capture.
    #[test]
    fn batches_and_pipelines_export_exactly_what_one_frame_at_a_time_does() {
        let mut frames = 0;
        for dir in ["pcap", "captures"] {
            let dir = format!("{}/../testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !entry
                    .path()
                    .extension()
                    .is_some_and(|e| e == "pcap" || e == "pcapng")
                {
                    continue;
                }
                let capture = std::fs::read(entry.path()).unwrap_or_default();
                let (mut batched, mut alone, mut piped) = (meter(), meter(), meter());
                // Handovers of 7: many of them, with passings of the clock inside.
                let read = pipeline(&capture, &mut piped, &AtomicBool::new(false), 7, &|_| {});
                assert_eq!(read, Ok(()), "{}", entry.path().display());
                let read = file::for_each_packet_in(&capture, |p| {
                    batched.packet(p);
                    alone.packet(p);
                    alone.tick(0);
                    frames += 1;
                    true
                });
                assert_eq!(read, Ok(()), "{}", entry.path().display());
                let (b, a, p) = (batched.finish(), alone.finish(), piped.finish());
                assert_eq!(b, a, "{}", entry.path().display());
                assert_eq!(p, a, "{}", entry.path().display());
                assert!(b.export.records > 0, "{}", entry.path().display());
                assert_eq!(
                    batched.exporter().transport().sent,
                    alone.exporter().transport().sent,
                    "{}",
                    entry.path().display()
                );
                assert_eq!(
                    piped.exporter().transport().sent,
                    alone.exporter().transport().sent,
                    "{}",
                    entry.path().display()
                );
            }
        }
        assert!(frames > 1_000, "{frames} frames");
    }
}
