//! The collector's pure core: export packets in (IPFIX, NetFlow v9, v5), Arrow batches out,
//! with template state, held data, sequence accounting and counters. No socket, no clock:
//! callers pass `now`.
//!
//! Each packet is handled in two passes (RFC 7011 §9.1, "check, then decode"): the first
//! (`plan.rs`, pure) frames every Set, decodes every Template Record and checks every Data Set
//! whose template is known against its Set Length; only if all of that holds does the second
//! (here) install templates and append rows. A malformed packet therefore adds nothing.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId};
use flowvm_vm::wire::packet::{ExportHeader, ExportPacket, SequenceUnit};
use flowvm_vm::wire::set::Set;
use flowvm_vm::wire::template::TemplateDef;
use flowvm_vm::{CompileError, Compiler, DecodeError, Program, RunStats, Spares};
use tracing::{debug, error, info, warn};

use crate::collector::FastMap;
use crate::collector::batch::{Batcher, Provenance, RowContext};
use crate::collector::pending::{PendingLimits, PendingSet, PendingStore};
use crate::collector::plan::{self, Step, Steps};
use crate::collector::programs::ProgramCache;
use crate::collector::sequence::{
    MessageRecords, SequenceEvent, SequenceLimits, SequenceNumber, SequenceTracker,
};
use crate::collector::session::TransportSession;
use crate::collector::templates::{
    SessionSlot, TemplateKey, TemplateLimits, TemplateState, TemplateStore,
};
use crate::telemetry::{Counters, DropReason, LogLimiter};

/// Settings of the decoder core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Template table bounds and the UDP template lifetime.
    pub templates: TemplateLimits,
    /// Bounds of the buffer for data that arrives before its template.
    pub pending: PendingLimits,
    /// Bounds of the sequence number tracker.
    pub sequences: SequenceLimits,
    /// Rows after which a program's columns are handed over as a batch.
    pub batch_rows: usize,
}

/// What applying a packet's plan counted.
#[derive(Clone, Copy, Debug)]
struct Applied {
    /// Template records (definitions and withdrawals).
    templates: u32,
    /// Data Records; `None` when some could not be counted (held for their template, or of a
    /// rejected one).
    records: Option<MessageRecords>,
    /// What decoding the packet's Data Sets counted, added to the shared counters once per
    /// packet.
    decoded: RunStats,
}

/// The columns every row of a Transport Session's Message shares: found once per Message.
#[derive(Clone, Debug)]
struct Origin {
    /// The exporter's address as text.
    exporter: Arc<str>,
    /// Its authenticated identity (TLS with a client certificate).
    identity: Option<Arc<str>>,
}

impl Origin {
    /// The context of rows from `domain` that came in the packet of `provenance`.
    fn rows(&self, domain: ObservationDomainId, provenance: Provenance) -> RowContext<'_> {
        RowContext {
            exporter: &self.exporter,
            identity: self.identity.as_ref(),
            domain,
            provenance,
        }
    }
}

/// Decodes the export packets of every Transport Session into batches.
#[derive(Debug)]
pub struct Decoder {
    /// Identical templates, from any exporter and protocol, share one program.
    programs: ProgramCache,
    templates: TemplateStore,
    pending: PendingStore,
    sequences: SequenceTracker,
    batchers: Builders,
    exporters: FastMap<TransportSession, Arc<str>>,
    /// The identity of each TLS session's authenticated exporter.
    identities: FastMap<TransportSession, Arc<str>>,
    counters: Arc<Counters>,
    /// This decoder's share of the shared gauges, as last added to them.
    published: Gauges,
    limiter: LogLimiter,
}

/// The batch builders: the rows of each program, per protocol version (NetFlow rows have
/// columns more) and whether they come from an authenticated exporter (a column more).
#[derive(Debug)]
struct Builders {
    map: FastMap<(usize, u16, bool), Batcher>,
    /// Rows after which a builder's batch is handed over.
    batch_rows: usize,
    /// Buffers of batches the archive is done with, for the next batches' columns.
    spares: Spares,
}

impl Builders {
    /// Runs `program` over a Data Set into its builder, handing the batch over when full.
    fn run(
        &mut self,
        program: &Arc<Program>,
        set: &Set<'_>,
        context: &RowContext<'_>,
        counters: &Counters,
        out: &mut Vec<RecordBatch>,
    ) -> Result<RunStats, DecodeError> {
        let version = context.provenance.version;
        let authenticated = context.identity.is_some();
        let batcher = self
            .map
            .entry((Arc::as_ptr(program) as usize, version, authenticated))
            .or_insert_with(|| Batcher::new(Arc::clone(program), version, authenticated));
        let stats = batcher.run(set, context)?;
        // Arrow's 32-bit offsets bound a batch's variable-length content; stay far below.
        if batcher.rows() >= self.batch_rows || batcher.var_bytes() >= 1 << 30 {
            Self::emit(batcher, &mut self.spares, counters, out);
        }
        Ok(stats)
    }

    /// Hands over every buffered row, and forgets the builders of programs no template uses.
    fn flush(&mut self, counters: &Counters, out: &mut Vec<RecordBatch>) {
        for batcher in self.map.values_mut() {
            Self::emit(batcher, &mut self.spares, counters, out);
        }
        // Only the batcher itself still holds a program nobody uses.
        self.map.retain(|_, b| Arc::strong_count(b.program()) > 1);
    }

    fn emit(
        batcher: &mut Batcher,
        spares: &mut Spares,
        counters: &Counters,
        out: &mut Vec<RecordBatch>,
    ) {
        match batcher.flush(spares) {
            Ok(Some(batch)) => out.push(batch),
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "Lost a batch: columns broke an invariant.");
                counters.archive_errors.add(1);
            }
        }
        counters.record_drop(DropReason::InvalidValue, batcher.take_invalid_values());
    }
}

/// A Data Set to decode, with where it is from.
#[derive(Clone, Copy, Debug)]
struct Data<'s, 'a> {
    /// Its template's place.
    key: TemplateKey,
    /// Where its session's templates are (`None`: nowhere yet).
    slot: Option<SessionSlot>,
    set: &'s Set<'a>,
    provenance: Provenance,
}

/// A decoder's share of the gauges every worker adds to.
#[derive(Clone, Copy, Debug, Default)]
struct Gauges {
    templates: u64,
    pending_sets: u64,
    pending_bytes: u64,
}

impl Decoder {
    /// A decoder with no template yet.
    pub fn new(compiler: Compiler, config: DecoderConfig, counters: Arc<Counters>) -> Self {
        Self {
            programs: ProgramCache::new(compiler),
            templates: TemplateStore::new(config.templates),
            pending: PendingStore::new(config.pending),
            sequences: SequenceTracker::new(config.sequences),
            batchers: Builders {
                map: FastMap::default(),
                batch_rows: config.batch_rows.max(1),
                spares: Spares::default(),
            },
            exporters: FastMap::default(),
            identities: FastMap::default(),
            counters,
            published: Gauges::default(),
            limiter: LogLimiter::new(Duration::from_secs(10)),
        }
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The sequence tracker, for per-exporter loss figures.
    pub fn sequences(&self) -> &SequenceTracker {
        &self.sequences
    }

    /// Whether a warning about `reason` from `session`'s exporter may be logged now (offline
    /// sessions have no address and share one key); `Some(suppressed)` if so.
    fn warning_allowed(
        &mut self,
        session: TransportSession,
        reason: &'static str,
        now: Instant,
    ) -> Option<u64> {
        let ip = session
            .exporter_ip()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.limiter.allow(ip, reason, now)
    }

    fn warn_dropped(&mut self, session: TransportSession, err: DecodeError, now: Instant) {
        if let Some(suppressed) = self.warning_allowed(session, err.kind.label(), now) {
            warn!(%session, reason = err.kind.label(), offset = err.offset, suppressed, "Dropped malformed IPFIX message.");
        }
    }

    /// Decodes one whole export packet (IPFIX, NetFlow v9 or v5) from `session`, appending full
    /// batches to `out`. Malformed input is counted, logged at a rate-limited warning and
    /// skipped.
    pub fn handle(
        &mut self,
        session: TransportSession,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<RecordBatch>,
    ) {
        self.counters.messages_received.add(1);
        self.counters
            .bytes_received
            .add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        //= https://www.rfc-editor.org/rfc/rfc7011#section-9.1
        //# If the Collecting Process receives a malformed IPFIX Message, it
        //# MUST discard the IPFIX Message and SHOULD log the error.
        // The session's templates are found once here, not once per Set.
        let slot = self.templates.slot(session);
        let checked = ExportPacket::decode(bytes).and_then(|packet| {
            plan::plan(&packet, slot, &self.templates, &mut self.programs)
                .map(|steps| (packet, steps))
        });
        let (packet, steps) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                self.counters.messages_dropped.add(1);
                self.counters.record_drop(DropReason::from(e.kind), 1);
                self.warn_dropped(session, e, now);
                return;
            }
        };
        let header = packet.header();
        let applied = self.apply(session, slot, &header, steps, now, out);
        self.check_count(session, &header, applied);
        let sequence = SequenceNumber {
            value: header.sequence_number,
            unit: header.sequence_unit,
            sys_uptime: header.sys_uptime,
        };
        let domain = header.observation_domain_id;
        match self
            .sequences
            .observe(session, domain, sequence, applied.records, now)
        {
            SequenceEvent::Lost(n) => {
                debug!(%session, domain = domain.0, lost = n, unit = ?header.sequence_unit, "Sequence gap.");
                match header.sequence_unit {
                    SequenceUnit::Records => self.counters.records_lost.add(u64::from(n)),
                    SequenceUnit::Packets => self.counters.packets_lost.add(u64::from(n)),
                }
            }
            SequenceEvent::Reordered => self.counters.messages_reordered.add(1),
            SequenceEvent::Restart => {
                debug!(%session, domain = domain.0, "Exporter restart detected from sequence numbers.");
                self.counters.exporter_restarts.add(1);
            }
            SequenceEvent::Untracked => self.counters.sequence_untracked.add(1),
            SequenceEvent::CountsItsOwnRecords => {
                info!(%session, domain = domain.0, "The exporter's sequence numbers count the records of their own Message (as softflowd does); reading them that way.");
            }
            SequenceEvent::Synced | SequenceEvent::InOrder => {}
        }
        self.publish_gauges();
    }

    /// Pass two: applies a checked packet's steps in order; `slot` is where `session`'s
    /// templates were before it.
    fn apply(
        &mut self,
        session: TransportSession,
        mut slot: Option<SessionSlot>,
        header: &ExportHeader,
        steps: Steps<'_>,
        now: Instant,
        out: &mut Vec<RecordBatch>,
    ) -> Applied {
        let domain = header.observation_domain_id;
        let provenance = Provenance::of(header);
        let mut applied = Applied {
            templates: 0,
            records: Some(MessageRecords::plain(0)),
            decoded: RunStats::default(),
        };
        let mut origin = None;
        for step in steps {
            match step {
                Step::Define {
                    def,
                    compiled,
                    options,
                } => {
                    applied.templates += 1;
                    self.define(session, domain, def, compiled, options, now, out);
                    // A session's first template gives it a slot; slots stay put otherwise.
                    slot = slot.or_else(|| self.templates.slot(session));
                }
                Step::Withdraw(template_id) => {
                    applied.templates += 1;
                    self.withdraw(
                        session,
                        TemplateKey {
                            session,
                            domain,
                            template_id,
                        },
                    );
                }
                Step::WithdrawAll(set_id) => {
                    applied.templates += 1;
                    if session.is_udp() {
                        self.counters
                            .record_drop(DropReason::UdpWithdrawalIgnored, 1);
                    } else {
                        let n = self.templates.withdraw_all(session, domain, set_id);
                        self.counters
                            .templates_removed
                            .add(u64::try_from(n).unwrap_or(0));
                    }
                }
                Step::Skip(reason) => {
                    debug!(%session, reason = reason.label(), "Skipped a Set with a reserved Set ID.");
                    self.counters.record_drop(reason, 1);
                }
                Step::Data(set, template_id) => {
                    let key = TemplateKey {
                        session,
                        domain,
                        template_id,
                    };
                    let data = Data {
                        key,
                        slot,
                        set: &set,
                        provenance,
                    };
                    let decoded = self.data(&data, &mut origin, &mut applied.decoded, now, out);
                    applied.records = applied.records.zip(decoded).map(|(r, d)| r.plus(d));
                }
            }
        }
        self.count_decoded(applied.decoded);
        applied
    }

    /// Adds what runs decoded to the shared counters.
    fn count_decoded(&self, decoded: RunStats) {
        if decoded.records > 0 {
            self.counters.records_decoded.add(decoded.records);
        }
        if decoded.invalid_values > 0 {
            self.counters
                .record_drop(DropReason::InvalidValue, decoded.invalid_values);
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc3954#section-5.1
    //# Count
    //#       The total number of records in the Export Packet, which is the
    //#       sum of Options FlowSet records, Template FlowSet records, and
    //#       Data FlowSet records.
    /// Checks a NetFlow v9 packet's Count against the records it held, when all could be
    /// counted. A mismatch is counted, not fatal: exporters read Count differently (softflowd
    /// counts its flow records only, some devices count FlowSets), and the records decode the
    /// same either way.
    fn check_count(&self, session: TransportSession, header: &ExportHeader, applied: Applied) {
        let (Some(count), Some(records), SequenceUnit::Packets) =
            (header.count, applied.records, header.sequence_unit)
        else {
            return;
        };
        let held = applied.templates.saturating_add(records.all);
        if u32::from(count) != held {
            self.counters.netflow_count_mismatches.add(1);
            debug!(%session, count, held, "A NetFlow v9 packet's Count disagrees with the records it holds.");
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the parts of one template step"
    )]
    fn define(
        &mut self,
        session: TransportSession,
        domain: ObservationDomainId,
        def: TemplateDef,
        compiled: Result<Arc<Program>, CompileError>,
        options: bool,
        now: Instant,
        out: &mut Vec<RecordBatch>,
    ) {
        let key = TemplateKey {
            session,
            domain,
            template_id: def.template_id,
        };
        let state = match compiled {
            Ok(program) => TemplateState::Ready(program),
            Err(e) => {
                if self.warning_allowed(session, e.label(), now).is_some() {
                    warn!(%session, domain = domain.0, reason = e.label(), "Rejected template: {e}.");
                }
                self.counters.templates_rejected.add(1);
                TemplateState::Rejected { options }
            }
        };
        if !session.is_udp() {
            self.log_reuse(key, &state, now);
        }
        let fresh = match (&state, self.templates.get(&key)) {
            (TemplateState::Ready(new), Some(TemplateState::Ready(old))) => {
                (!Arc::ptr_eq(new, old)).then_some(new)
            }
            (TemplateState::Ready(new), _) => Some(new),
            _ => None,
        };
        if let Some(program) = fresh.filter(|p| !p.nonconforming().is_empty()) {
            let program = Arc::clone(program);
            self.report_nonconforming(key, &program, now);
        }
        let ready = matches!(state, TemplateState::Ready(_));
        if self.templates.install(key, state, now).is_err() {
            self.counters.record_drop(DropReason::TemplateLimit, 1);
            if self
                .warning_allowed(session, DropReason::TemplateLimit.label(), now)
                .is_some()
            {
                warn!(%session, domain = domain.0, template_id = def.template_id.0, "Template table full; template not installed.");
            }
            return;
        }
        self.counters.templates_installed.add(1);
        if ready {
            self.resolve_pending(key, now, out);
        }
    }

    /// Counts the fields of a newly defined template whose lengths their types do not permit,
    /// and says once, for the template, how each is decoded (a refresh says nothing again; a
    /// flood of such templates is held to the limiter's line per exporter and interval).
    fn report_nonconforming(&mut self, key: TemplateKey, program: &Program, now: Instant) {
        for field in program.nonconforming() {
            self.counters.record_nonconforming(field.handling, 1);
        }
        let Some(suppressed) = self.warning_allowed(key.session, "nonconforming_field", now) else {
            return;
        };
        let mut fields = String::new();
        for field in program.nonconforming() {
            let _ = write!(
                fields,
                "{}{} ({} in {} octets: {})",
                if fields.is_empty() { "" } else { ", " },
                field.column,
                field.data_type,
                field.field_length,
                field.handling.label()
            );
        }
        warn!(session = %key.session, domain = key.domain.0, template_id = key.template_id.0, suppressed, "Template with field lengths their types do not permit; decoded anyway: {fields}.");
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-8.1
    //# If a Collecting Process receives a new Template Record or Options
    //# Template Record for an already-allocated Template ID, and that
    //# Template or Options Template is identical to the already-received
    //# Template or Options Template, it SHOULD log the retransmission.
    //
    //# If a Collecting Process receives a new Template Record or Options
    //# Template Record for an already-allocated Template ID, and that
    //# Template or Options Template is different from the already-received
    //# Template or Options Template, this indicates a malfunctioning or
    //# improperly implemented Exporting Process.  The continued receipt and
    //# unambiguous interpretation of Data Records for this Template ID are
    //# no longer possible, and the Collecting Process SHOULD log the error.
    /// Logs a template that reuses an allocated ID without a withdrawal (outside UDP, where
    /// that is a refresh or normal reuse, §8.4). flowvm applies the new definition to the
    /// data that follows, as over UDP: the exporter's newest word is the best guess.
    fn log_reuse(&mut self, key: TemplateKey, new: &TemplateState, now: Instant) {
        let identical = match (self.templates.get(&key), new) {
            (None, _) => return,
            (Some(TemplateState::Ready(old)), TemplateState::Ready(new)) => Arc::ptr_eq(old, new),
            // Refused again: already logged as a rejection.
            (Some(TemplateState::Rejected { .. }), TemplateState::Rejected { .. }) => return,
            (Some(_), _) => false,
        };
        let session = key.session;
        if identical {
            debug!(%session, domain = key.domain.0, template_id = key.template_id.0, "Template retransmitted.");
        } else if self
            .warning_allowed(session, "template_redefined", now)
            .is_some()
        {
            warn!(%session, domain = key.domain.0, template_id = key.template_id.0, "Template redefined without a withdrawal; the new layout applies to the data that follows.");
        }
    }

    fn withdraw(&mut self, session: TransportSession, key: TemplateKey) {
        //= https://www.rfc-editor.org/rfc/rfc7011#section-8.4
        //# Template Withdrawals (Section 8.1) MUST NOT be sent by Exporting
        //# Processes exporting via UDP and MUST be ignored by Collecting
        //# Processes collecting via UDP.
        if session.is_udp() {
            self.counters
                .record_drop(DropReason::UdpWithdrawalIgnored, 1);
            return;
        }
        if self.templates.withdraw(&key) {
            self.counters.templates_removed.add(1);
        } else {
            //= https://www.rfc-editor.org/rfc/rfc7011#section-8.1
            //# If the Collecting Process receives a Template Withdrawal for a Template
            //# that is not currently defined, it SHOULD log an error
            warn!(%session, template_id = key.template_id.0, "Withdrawal of an unknown template.");
            self.counters.record_drop(DropReason::UnknownWithdrawal, 1);
        }
    }

    /// Decodes a Data Set, adding to `decoded`; returns its records, `None` when they could
    /// not be counted. `origin` is found on the first Set decoded and kept for the others.
    fn data(
        &mut self,
        data: &Data<'_, '_>,
        origin: &mut Option<Origin>,
        decoded: &mut RunStats,
        now: Instant,
        out: &mut Vec<RecordBatch>,
    ) -> Option<MessageRecords> {
        let key = data.key;
        let state = data
            .slot
            .and_then(|slot| self.templates.get_in(slot, key.domain, key.template_id));
        match state {
            Some(TemplateState::Ready(program)) => {
                let origin = match origin {
                    Some(origin) => origin,
                    None => origin.insert(Self::origin(
                        &mut self.exporters,
                        &self.identities,
                        key.session,
                    )),
                };
                let context = origin.rows(key.domain, data.provenance);
                let options = program.scope_field_count() > 0;
                // Pass one checked the Set; a failure here is still counted, never silent.
                let run = self
                    .batchers
                    .run(program, data.set, &context, &self.counters, out);
                let stats = match run {
                    Ok(stats) => stats,
                    Err(e) => {
                        self.counters.record_drop(DropReason::from(e.kind), 1);
                        self.warn_dropped(key.session, e, now);
                        return None;
                    }
                };
                *decoded += stats;
                let all = u32::try_from(stats.records).unwrap_or(u32::MAX);
                Some(MessageRecords {
                    all,
                    options: if options { all } else { 0 },
                })
            }
            Some(TemplateState::Rejected { .. }) => {
                self.counters.record_drop(DropReason::TemplateRejected, 1);
                None
            }
            None => {
                //= https://www.rfc-editor.org/rfc/rfc7011#section-8
                //# the Collecting Process MAY buffer the Data Record
                //# for later processing.
                debug!(session = %key.session, template_id = key.template_id.0, "Holding data for a template not yet received.");
                let held = PendingSet {
                    body: data.set.body.to_vec(),
                    offset: data.set.offset,
                    provenance: data.provenance,
                    arrived: now,
                };
                if !self.pending.push(key, held) {
                    self.counters.record_drop(DropReason::PendingOverflow, 1);
                    let reason = DropReason::PendingOverflow.label();
                    if let Some(suppressed) = self.warning_allowed(key.session, reason, now) {
                        warn!(session = %key.session, template_id = key.template_id.0, suppressed, "Dropped data held for a template not yet received: the pending buffer is full (pending_max_session_bytes, pending_max_bytes).");
                    }
                }
                self.publish_gauges();
                None
            }
        }
    }

    /// The columns `session`'s rows share, its exporter's text made once.
    fn origin(
        exporters: &mut FastMap<TransportSession, Arc<str>>,
        identities: &FastMap<TransportSession, Arc<str>>,
        session: TransportSession,
    ) -> Origin {
        let exporter = Arc::clone(
            exporters
                .entry(session)
                .or_insert_with(|| Arc::from(session.exporter_text())),
        );
        Origin {
            exporter,
            identity: identities.get(&session).map(Arc::clone),
        }
    }

    fn resolve_pending(&mut self, key: TemplateKey, now: Instant, out: &mut Vec<RecordBatch>) {
        let held = self.pending.take(&key);
        if held.is_empty() {
            return;
        }
        let Some(TemplateState::Ready(program)) = self.templates.get(&key).cloned() else {
            return;
        };
        let origin = Self::origin(&mut self.exporters, &self.identities, key.session);
        for p in held {
            let set = Set {
                id: SetId(key.template_id.0),
                body: &p.body,
                offset: p.offset,
            };
            let context = origin.rows(key.domain, p.provenance);
            match self
                .batchers
                .run(&program, &set, &context, &self.counters, out)
            {
                Ok(stats) => {
                    self.count_decoded(stats);
                    self.counters.records_decoded_late.add(stats.records);
                }
                Err(e) => {
                    self.counters.record_drop(DropReason::from(e.kind), 1);
                    self.warn_dropped(key.session, e, now);
                }
            }
        }
        self.publish_gauges();
    }

    /// Brings the shared gauges (live templates, held data) up to date with this decoder's
    /// share: each worker's decoder adds its own, so the metrics page shows their sum.
    fn publish_gauges(&mut self) {
        let now = Gauges {
            templates: u64::try_from(self.templates.len()).unwrap_or(u64::MAX),
            pending_sets: u64::try_from(self.pending.sets()).unwrap_or(u64::MAX),
            pending_bytes: u64::try_from(self.pending.bytes()).unwrap_or(u64::MAX),
        };
        let was = std::mem::replace(&mut self.published, now);
        self.counters
            .templates_live
            .adjust(was.templates, now.templates);
        self.counters
            .pending_sets
            .adjust(was.pending_sets, now.pending_sets);
        self.counters
            .pending_bytes
            .adjust(was.pending_bytes, now.pending_bytes);
    }

    /// Applies the timers: UDP template lifetimes, idle UDP sequence streams and the age bound
    /// of held data. Harmless to call early or often.
    pub fn expire(&mut self, now: Instant) {
        let expired = self.templates.expire(now);
        self.sequences.expire(now);
        let templates = &self.templates;
        self.exporters.retain(|s, _| templates.has_session(*s));
        self.counters
            .templates_removed
            .add(u64::try_from(expired).unwrap_or(0));
        self.counters
            .record_drop(DropReason::PendingExpired, self.pending.expire(now));
        self.programs.sweep();
        self.publish_gauges();
    }

    /// Hands over every buffered row, and forgets the columns of programs no template uses.
    pub fn flush(&mut self, out: &mut Vec<RecordBatch>) {
        self.batchers.flush(&self.counters, out);
    }

    /// Keeps the buffers of `batch`, which the archive is done with, for the next batches.
    pub fn keep_spent(&mut self, batch: RecordBatch) {
        self.batchers.spares.keep(batch);
    }

    /// Rows of `session` from now on carry `identity`, its exporter's authenticated name.
    pub fn authenticate(&mut self, session: TransportSession, identity: Arc<str>) {
        self.identities.insert(session, identity);
    }

    /// Forgets a session that ended (a closed TCP connection): its templates, held data and
    /// sequence state.
    pub fn close_session(&mut self, session: TransportSession) {
        let removed = self.templates.remove_session(session);
        self.counters
            .templates_removed
            .add(u64::try_from(removed).unwrap_or(0));
        self.counters.record_drop(
            DropReason::PendingUnresolved,
            self.pending.remove_session(session),
        );
        self.sequences.remove_session(session);
        self.exporters.remove(&session);
        self.identities.remove(&session);
        self.publish_gauges();
    }

    /// Hands over everything at shutdown; data still waiting for a template is counted lost.
    pub fn finish(&mut self, out: &mut Vec<RecordBatch>) {
        self.flush(out);
        let unresolved = self.pending.clear();
        if unresolved > 0 {
            warn!(
                sets = unresolved,
                "Data Sets whose template never arrived were dropped at shutdown."
            );
        }
        self.counters
            .record_drop(DropReason::PendingUnresolved, unresolved);
        self.publish_gauges();
    }
}

#[cfg(test)]
mod netflow_tests;

#[cfg(test)]
mod tests {

    use arrow_array::cast::AsArray;
    use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type};
    use flowvm_vm::wire::ids::TemplateId;
    use flowvm_vm::wire::writer::MessageWriter;

    use super::*;

    fn config() -> DecoderConfig {
        DecoderConfig {
            templates: TemplateLimits {
                max_templates: 100,
                max_per_session: 10,
                max_per_exporter: 100,
                max_weight: 1 << 20,
                max_weight_per_exporter: 1 << 20,
                lifetime: Duration::from_secs(1800),
            },
            sequences: SequenceLimits {
                max_streams: 100,
                max_per_exporter: 100,
                idle: Duration::from_secs(1800),
            },
            pending: PendingLimits {
                max_bytes: 1 << 20,
                max_session_bytes: 1 << 18,
                max_age: Duration::from_secs(60),
            },
            batch_rows: 1 << 16,
        }
    }

    pub(super) fn decoder() -> Decoder {
        Decoder::new(Compiler::default(), config(), Arc::new(Counters::default()))
    }

    pub(super) fn udp(port: u16) -> TransportSession {
        TransportSession::example_udp(port)
    }

    fn tcp(connection: u64) -> TransportSession {
        TransportSession::Tcp {
            exporter: ([198, 51, 100, 7], 40_000).into(),
            connection,
        }
    }

    /// Template 256 as (element, length) pairs.
    fn template(fields: &[(u16, u16)]) -> TemplateDef {
        TemplateDef::of_iana(TemplateId(256), fields)
    }

    fn template_message(def: &TemplateDef, domain: u32) -> Vec<u8> {
        let mut w = MessageWriter::new(1500);
        w.begin_set(SetId::TEMPLATE);
        w.put_template(def);
        assert!(w.commit());
        w.finish(100, 0, ObservationDomainId(domain)).to_vec()
    }

    /// A Data Set of template 256 with `records` records of raw octets.
    fn data_message(records: &[&[u8]], sequence: u32, domain: u32) -> Vec<u8> {
        let mut w = MessageWriter::new(1500);
        w.begin_set(SetId(256));
        for r in records {
            w.put_bytes(r);
            assert!(w.commit());
        }
        w.finish(200, sequence, ObservationDomainId(domain))
            .to_vec()
    }

    pub(super) fn run(
        d: &mut Decoder,
        session: TransportSession,
        messages: &[Vec<u8>],
    ) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let now = crate::clock::now();
        for m in messages {
            d.handle(session, m, now, &mut out);
        }
        d.flush(&mut out);
        out
    }

    #[test]
    fn two_exporters_with_the_same_template_id_and_different_layouts_both_decode() {
        let mut d = decoder();
        let mut out = Vec::new();
        let now = crate::clock::now();
        // Port 1: 256 = sourceTransportPort(2) + packetDeltaCount(4);
        // port 2: 256 = packetDeltaCount(8) alone. Same address, same domain.
        d.handle(
            udp(1),
            &template_message(&template(&[(7, 2), (2, 4)]), 1),
            now,
            &mut out,
        );
        d.handle(
            udp(2),
            &template_message(&template(&[(2, 8)]), 1),
            now,
            &mut out,
        );
        d.handle(
            udp(1),
            &data_message(&[&[0, 80, 0, 0, 0, 5]], 0, 1),
            now,
            &mut out,
        );
        d.handle(
            udp(2),
            &data_message(&[&[0, 0, 0, 0, 0, 0, 0, 9]], 0, 1),
            now,
            &mut out,
        );
        d.flush(&mut out);
        assert_eq!(out.len(), 2);
        let ports = out
            .iter()
            .find(|b| b.schema().field_with_name("sourceTransportPort").is_ok())
            .unwrap();
        assert_eq!(
            ports
                .column_by_name("sourceTransportPort")
                .unwrap()
                .as_primitive::<UInt16Type>()
                .value(0),
            80
        );
        assert_eq!(
            ports
                .column_by_name("packetDeltaCount")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .value(0),
            5
        );
        let other = out
            .iter()
            .find(|b| b.schema().field_with_name("sourceTransportPort").is_err())
            .unwrap();
        assert_eq!(
            other
                .column_by_name("packetDeltaCount")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .value(0),
            9
        );
        assert_eq!(other.column_by_name("exporter").unwrap().len(), 1);
    }

    #[test]
    fn data_before_its_template_is_decoded_when_the_template_comes() {
        let mut d = decoder();
        let out = run(
            &mut d,
            udp(1),
            &[
                data_message(&[&[0, 0, 0, 1], &[0, 0, 0, 2]], 0, 1),
                data_message(&[&[0, 0, 0, 3]], 2, 1),
                template_message(&template(&[(10, 4)]), 1),
                data_message(&[&[0, 0, 0, 4]], 3, 1),
            ],
        );
        let values: Vec<u32> = out
            .iter()
            .flat_map(|b| {
                b.column_by_name("ingressInterface")
                    .unwrap()
                    .as_primitive::<UInt32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, [1, 2, 3, 4]);
        let c = d.counters();
        assert_eq!(
            (c.records_decoded.get(), c.records_decoded_late.get()),
            (4, 3)
        );
        assert_eq!(c.pending_sets.get(), 0);
        // The domain of another Message does not resolve held data of domain 1.
        let mut d = decoder();
        run(
            &mut d,
            udp(1),
            &[
                data_message(&[&[0, 0, 0, 1]], 0, 1),
                template_message(&template(&[(10, 4)]), 2),
            ],
        );
        assert_eq!(d.counters().records_decoded.get(), 0);
        assert_eq!(d.counters().pending_sets.get(), 1);
    }

    #[test]
    fn a_malformed_message_adds_nothing_even_after_a_good_set() {
        let mut d = decoder();
        let def = template(&[(10, 4)]);
        let mut bad = template_message(&def, 1);
        // Append a Data Set that claims 12 octets but holds 11: the record boundary is wrong.
        bad.extend([1, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0]);
        let len = u16::try_from(bad.len()).unwrap();
        bad[2..4].copy_from_slice(&len.to_be_bytes());
        let out = run(&mut d, udp(1), &[data_message(&[&[0, 0, 0, 1]], 0, 1), bad]);
        assert!(out.is_empty());
        let c = d.counters();
        assert_eq!(c.messages_dropped.get(), 1);
        assert_eq!(c.dropped(DropReason::BadSetLength), 1);
        assert_eq!(
            c.templates_installed.get(),
            0,
            "the template in the bad message was not installed"
        );
    }

    #[test]
    fn withdrawals_are_honoured_on_tcp_and_ignored_on_udp() {
        let def = template(&[(10, 4)]);
        let mut withdrawal = MessageWriter::new(100);
        withdrawal.begin_set(SetId::TEMPLATE);
        withdrawal.put_u16(256);
        withdrawal.put_u16(0);
        assert!(withdrawal.commit());
        let withdrawal = withdrawal.finish(0, 0, ObservationDomainId(1)).to_vec();
        let data = data_message(&[&[0, 0, 0, 1]], 0, 1);

        let mut d = decoder();
        run(
            &mut d,
            udp(1),
            &[template_message(&def, 1), withdrawal.clone(), data.clone()],
        );
        assert_eq!(d.counters().records_decoded.get(), 1);
        assert_eq!(d.counters().dropped(DropReason::UdpWithdrawalIgnored), 1);

        let mut d = decoder();
        run(
            &mut d,
            tcp(1),
            &[
                template_message(&def, 1),
                withdrawal.clone(),
                data,
                withdrawal,
            ],
        );
        assert_eq!(d.counters().records_decoded.get(), 0);
        assert_eq!(d.counters().pending_sets.get(), 1);
        assert_eq!(d.counters().dropped(DropReason::UnknownWithdrawal), 1);
        d.close_session(tcp(1));
        assert_eq!(d.counters().dropped(DropReason::PendingUnresolved), 1);
    }

    #[test]
    fn a_redefinition_applies_to_data_that_follows_and_keeps_rows_in_flight() {
        let mut d = decoder();
        let out = run(
            &mut d,
            udp(1),
            &[
                template_message(&template(&[(10, 4)]), 1),
                data_message(&[&[0, 0, 0, 1]], 0, 1),
                template_message(&template(&[(7, 2)]), 1),
                data_message(&[&[0, 80]], 1, 1),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        assert!(
            out.iter()
                .any(|b| b.column_by_name("ingressInterface").is_some())
        );
        assert!(
            out.iter()
                .any(|b| b.column_by_name("sourceTransportPort").is_some())
        );
    }

    #[test]
    fn one_message_holds_defines_redefines_and_decodes_in_order_for_a_new_session() {
        // A session's first Message: data before its template (held, then decoded when the
        // template comes), the template, data, a redefinition, data; each Set meets the
        // layout in force where it stands.
        let mut w = MessageWriter::new(1500);
        let data = |w: &mut MessageWriter, record: &[u8]| {
            w.begin_set(SetId(256));
            w.put_bytes(record);
            assert!(w.commit());
            w.end_set();
        };
        let define = |w: &mut MessageWriter, def: &TemplateDef| {
            w.begin_set(SetId::TEMPLATE);
            w.put_template(def);
            assert!(w.commit());
            w.end_set();
        };
        data(&mut w, &[0, 0, 0, 7]);
        define(&mut w, &template(&[(10, 4)]));
        data(&mut w, &[0, 0, 0, 8]);
        define(&mut w, &template(&[(7, 2)]));
        data(&mut w, &[0, 80]);
        let message = w.finish(100, 0, ObservationDomainId(1)).to_vec();
        let mut d = decoder();
        let out = run(&mut d, udp(1), &[message]);
        let mut interfaces = Vec::new();
        let mut ports = Vec::new();
        for batch in &out {
            if let Some(c) = batch.column_by_name("ingressInterface") {
                interfaces.extend(c.as_primitive::<UInt32Type>().values().iter().copied());
            }
            if let Some(c) = batch.column_by_name("sourceTransportPort") {
                ports.extend(c.as_primitive::<UInt16Type>().values().iter().copied());
            }
        }
        assert_eq!(interfaces, [7, 8]);
        assert_eq!(ports, [80]);
        assert_eq!(d.counters().records_decoded.get(), 3);
        assert_eq!(d.counters().records_decoded_late.get(), 1);
        assert_eq!(d.counters().messages_dropped.get(), 0);
    }

    #[test]
    fn sequence_gaps_count_lost_records() {
        let mut d = decoder();
        run(
            &mut d,
            udp(1),
            &[
                template_message(&template(&[(10, 4)]), 1),
                data_message(&[&[0, 0, 0, 1], &[0, 0, 0, 2]], 0, 1),
                data_message(&[&[0, 0, 0, 3]], 5, 1),
                data_message(&[&[0, 0, 0, 4]], 6, 1),
            ],
        );
        assert_eq!(d.counters().records_lost.get(), 3);
        assert_eq!(d.sequences().lost().map(|(_, _, _, n)| n).sum::<u64>(), 3);
    }

    #[test]
    fn rejected_templates_and_the_template_limit_are_counted() {
        let mut d = decoder();
        let mut out = Vec::new();
        let now = crate::clock::now();
        // A template whose fields occupy no octets cannot decode any record.
        d.handle(
            udp(1),
            &template_message(&template(&[(8, 0)]), 1),
            now,
            &mut out,
        );
        d.handle(udp(1), &data_message(&[&[0; 5]], 0, 1), now, &mut out);
        assert_eq!(d.counters().templates_rejected.get(), 1);
        assert_eq!(d.counters().dropped(DropReason::TemplateRejected), 1);
        for domain in 2..20 {
            d.handle(
                udp(1),
                &template_message(&template(&[(10, 4)]), domain),
                now,
                &mut out,
            );
        }
        assert_eq!(
            d.counters().dropped(DropReason::TemplateLimit),
            9,
            "10 per session"
        );
    }

    #[test]
    fn workers_add_their_shares_to_the_gauges_rather_than_overwrite_them() {
        let counters = Arc::new(Counters::default());
        let mut a = Decoder::new(Compiler::default(), config(), Arc::clone(&counters));
        let mut b = Decoder::new(Compiler::default(), config(), Arc::clone(&counters));
        let mut out = Vec::new();
        let t0 = crate::clock::now();
        a.handle(
            udp(1),
            &template_message(&template(&[(10, 4)]), 1),
            t0,
            &mut out,
        );
        a.handle(
            udp(2),
            &template_message(&template(&[(10, 4)]), 1),
            t0,
            &mut out,
        );
        b.handle(udp(3), &data_message(&[&[0, 0, 0, 5]], 0, 1), t0, &mut out);
        assert_eq!(counters.templates_live.get(), 2);
        assert_eq!(counters.pending_sets.get(), 1);
        // A worker with nothing to expire leaves the others' shares alone.
        b.expire(t0);
        a.expire(t0);
        assert_eq!(
            (counters.templates_live.get(), counters.pending_sets.get()),
            (2, 1)
        );
        a.close_session(udp(1));
        assert_eq!(counters.templates_live.get(), 1);
        b.expire(t0 + Duration::from_secs(61));
        assert_eq!(
            (counters.pending_sets.get(), counters.pending_bytes.get()),
            (0, 0)
        );
    }

    #[test]
    fn udp_templates_expire_and_held_data_ages_out() {
        let mut d = decoder();
        let mut out = Vec::new();
        let t0 = crate::clock::now();
        d.handle(
            udp(1),
            &template_message(&template(&[(10, 4)]), 1),
            t0,
            &mut out,
        );
        d.expire(t0 + Duration::from_secs(1800));
        assert_eq!(d.counters().templates_live.get(), 0);
        d.handle(
            udp(1),
            &data_message(&[&[0, 0, 0, 1]], 0, 1),
            t0 + Duration::from_secs(1801),
            &mut out,
        );
        assert_eq!(d.counters().pending_sets.get(), 1);
        d.expire(t0 + Duration::from_secs(1900));
        assert_eq!(d.counters().dropped(DropReason::PendingExpired), 1);
    }

    #[test]
    fn odd_field_lengths_cost_neither_the_template_nor_its_records() {
        use flowvm_vm::program::Nonconformity;
        let mut d = decoder();
        // samplerId (48, unsigned8) in 4 octets as Cisco sends it, a sourceIPv4Address in 5
        // octets, then packetDeltaCount: every record decodes, the odd fields as said.
        let def = template(&[(48, 4), (8, 5), (2, 4)]);
        let record: &[u8] = &[0, 1, 0, 2, 10, 0, 0, 1, 99, 0, 0, 0, 7];
        let out = run(
            &mut d,
            udp(1),
            &[
                template_message(&def, 1),
                data_message(&[record, record], 0, 1),
                template_message(&def, 1),
            ],
        );
        let batch = &out[0];
        assert_eq!(batch.num_rows(), 2);
        let sampler = batch.column_by_name("samplerId").unwrap();
        assert_eq!(sampler.as_primitive::<UInt32Type>().value(0), 65_538);
        let raw = batch.column_by_name("sourceIPv4Address_raw").unwrap();
        assert_eq!(raw.as_binary::<i32>().value(1), [10, 0, 0, 1, 99]);
        let packets = batch.column_by_name("packetDeltaCount").unwrap();
        assert_eq!(packets.as_primitive::<UInt64Type>().value(0), 7);
        let c = d.counters();
        assert_eq!(c.templates_rejected.get(), 0);
        // Counted once for the definition, not again for its refresh.
        assert_eq!(c.nonconforming(Nonconformity::WideInteger), 1);
        assert_eq!(c.nonconforming(Nonconformity::Raw), 1);
        assert!(
            c.render()
                .contains("flowvm_fields_nonconforming_total{reason=\"raw_octets\"} 1")
        );
    }
}
