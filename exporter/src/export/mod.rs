//! The Exporting Process: packs Flow Records into IPFIX Messages no larger than the path MTU
//! allows, numbers them, sends the templates first and again every template interval (UDP) or
//! once per connection (TCP), and flushes partial Messages periodically and at the end.

pub mod templates;
pub mod transport;

use flowvm_vm::wire::header::MessageHeader;
use flowvm_vm::wire::ids::{ObservationDomainId, SetId};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::wire::{HEADER_LEN, MAX_MESSAGE_LEN, SET_HEADER_LEN};

use crate::export::templates::Templates;
use crate::export::transport::{RunError, Transport};
use crate::flow::{FlowRecord, Variant};

/// The smallest and largest path MTU accepted, and VPP's messages for values outside.
pub const MIN_PATH_MTU: u16 = 68;
/// VPP does not fragment, so it caps the path MTU at 1450.
pub const MAX_PATH_MTU: u16 = 1450;

/// Checks a path MTU as VPP's `set ipfix exporter` does.
///
/// # Errors
/// VPP's message for a value out of range.
pub fn check_path_mtu(path_mtu: u32) -> Result<u16, String> {
    if path_mtu > u32::from(MAX_PATH_MTU) {
        return Err("too big path-mtu value, maximum is 1450".to_owned());
    }
    if path_mtu < u32::from(MIN_PATH_MTU) {
        return Err("too small path-mtu value, minimum is 68".to_owned());
    }
    u16::try_from(path_mtu).map_err(|e| e.to_string())
}

/// How the Exporting Process behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    /// Octets a Message may take: the path MTU less the IP and transport headers.
    pub message_budget: usize,
    /// Re-send templates this often over UDP (capture-clock ns).
    pub template_interval_ns: u64,
    /// Send a partial Message this long after it got its first record (capture-clock ns).
    pub flush_interval_ns: u64,
    /// The Observation Domain ID in every header.
    pub domain: ObservationDomainId,
}

/// What the Exporting Process has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Data Records sent.
    pub records: u64,
    /// Messages sent, template Messages included.
    pub messages: u64,
    /// Messages that carried templates.
    pub template_messages: u64,
    /// Octets of all Messages sent.
    pub octets: u64,
    /// Messages larger than the budget, because one template or one record alone did not fit.
    pub oversize_messages: u64,
    /// Messages the transport failed to send.
    pub send_errors: u64,
    /// Data Records in Messages that could not be sent.
    pub records_lost: u64,
}

/// The Exporting Process over a [`Transport`].
///
/// Each template's Data Records fill Messages of their own (VPP's flowprobe keeps a buffer per
/// record variant likewise), so a template's full Messages are all of one length; they queue
/// in the template's run, which leaves in one send where the transport can cut it into
/// datagrams (UDP segmentation offload). Messages are numbered as they leave. A run goes when
/// a Message of another length comes, when it is full, and at the end of every
/// [`poll`](Self::poll) and [`flush`](Self::flush): whoever exports records polls or flushes
/// after them.
#[derive(Debug)]
pub struct ExportingProcess<T> {
    config: ExportConfig,
    templates: Templates,
    /// One Message being filled per template, in template order, each with its run.
    open: Vec<OpenMessage>,
    /// For a record that does not fit the budget alone.
    oversize: MessageWriter,
    /// The template Messages, built once (each `true` when over the budget).
    template_messages: Vec<(MessageWriter, bool)>,
    /// A template or oversize Message on its way: a run of one, sent at once.
    single: Run,
    out: Out<T>,
    templates_sent_at: Option<u64>,
    export_time: fn() -> u32,
    /// The last attempt to open a session failed: the next failure is not logged again.
    unreachable: bool,
}

/// A Message being filled with the Data Records of one template, and the template's finished
/// Messages waiting to be sent.
#[derive(Debug)]
struct OpenMessage {
    variant: Variant,
    set_id: SetId,
    writer: MessageWriter,
    /// Data Records in it.
    records: u32,
    /// When the first of them was added.
    since: u64,
    run: Run,
}

/// Finished Messages of one length laid end to end, with what each carries.
#[derive(Debug, Default)]
struct Run {
    octets: Vec<u8>,
    message_len: usize,
    /// Per Message: its Data Records and whether it carries templates.
    messages: Vec<(u32, Carries)>,
}

impl Run {
    /// Whether a Message of `len` octets may join, the run holding at most `capacity`.
    fn admits(&self, len: usize, capacity: usize) -> bool {
        self.messages.is_empty() || (len == self.message_len && self.messages.len() < capacity)
    }

    fn push(&mut self, message: &[u8], records: u32, carries: Carries) {
        self.message_len = message.len();
        self.octets.extend_from_slice(message);
        self.messages.push((records, carries));
    }
}

/// Where Messages leave: the transport, the sequence number and the counters.
#[derive(Debug)]
struct Out<T> {
    transport: T,
    //= https://www.rfc-editor.org/rfc/rfc7011#section-3.1
    //# Sequence Number
    //#    Incremental sequence counter modulo 2^32 of all IPFIX Data Records
    //#    sent in the current stream from the current Observation Domain by
    //#    the Exporting Process.
    sequence: u32,
    stats: ExportStats,
}

impl<T: Transport> Out<T> {
    /// Numbers the run's Messages, sends them and counts them: Messages and octets, or send
    /// errors and lost records for those that did not go (whose sequence numbers the next
    /// Messages take). The one place Messages leave the Exporting Process.
    fn send_run(&mut self, run: &mut Run) {
        if run.messages.is_empty() {
            return;
        }
        let mut sequence = self.sequence;
        for (message, &(records, _)) in run
            .octets
            .chunks_mut(run.message_len.max(1))
            .zip(&run.messages)
        {
            MessageHeader::set_sequence_number(message, sequence);
            sequence = sequence.wrapping_add(records);
        }
        let sent = match self.transport.send_run(&run.octets, run.message_len) {
            Ok(()) => run.messages.len(),
            Err(RunError { sent, error }) => {
                tracing::warn!(%error, "send to the collector failed");
                sent
            }
        };
        let (went, failed) = run.messages.split_at(sent.min(run.messages.len()));
        for &(records, carries) in went {
            self.sequence = self.sequence.wrapping_add(records);
            self.stats.messages += 1;
            self.stats.octets += run.message_len as u64;
            self.stats.records += u64::from(records);
            if carries == Carries::Templates {
                self.stats.template_messages += 1;
            }
        }
        for &(records, _) in failed {
            self.stats.send_errors += 1;
            self.stats.records_lost += u64::from(records);
        }
        run.octets.clear();
        run.messages.clear();
    }
}

/// The Export Time of a Message: wall-clock seconds (capture time drives only metering).
fn wall_seconds() -> u32 {
    u32::try_from(crate::clock::unix_nanos() / 1_000_000_000).unwrap_or(u32::MAX)
}

impl<T: Transport> ExportingProcess<T> {
    /// An Exporting Process sending `templates`' records through `transport`.
    pub fn new(config: ExportConfig, templates: Templates, transport: T) -> Self {
        let open = Variant::ALL
            .iter()
            .filter_map(|&variant| {
                let id = templates.template_id(variant)?;
                Some(OpenMessage {
                    variant,
                    set_id: SetId(id.0),
                    writer: MessageWriter::new(config.message_budget),
                    records: 0,
                    since: 0,
                    run: Run::default(),
                })
            })
            .collect();
        Self {
            open,
            oversize: MessageWriter::new(MAX_MESSAGE_LEN),
            template_messages: template_messages(&templates, config.message_budget),
            single: Run::default(),
            out: Out {
                transport,
                sequence: 0,
                stats: ExportStats::default(),
            },
            config,
            templates,
            templates_sent_at: None,
            export_time: wall_seconds,
            unreachable: false,
        }
    }

    /// Uses `f` for the Export Time of Messages (tests pin it).
    pub fn with_export_time(mut self, f: fn() -> u32) -> Self {
        self.export_time = f;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> ExportStats {
        self.out.stats
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.out.transport
    }

    /// The templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Adds one record to its template's Message; finishes that Message first if the record
    /// does not fit in it. Finished Messages may wait for the next [`poll`](Self::poll) or
    /// [`flush`](Self::flush).
    pub fn export(&mut self, record: &FlowRecord, now_ns: u64) {
        let Some(i) = self
            .open
            .iter()
            .position(|o| o.variant == record.key.variant)
        else {
            return;
        };
        for _ in 0..2 {
            let Some(open) = self.open.get_mut(i) else {
                return;
            };
            if open.writer.is_empty() && !open.writer.begin_set(open.set_id) {
                break;
            }
            self.templates.put_record(record, &mut open.writer);
            if open.writer.commit() {
                if open.records == 0 {
                    open.since = now_ns;
                }
                open.records += 1;
                return;
            }
            if open.records == 0 {
                break;
            }
            self.send(Which::Open(i), now_ns);
        }
        // The record does not fit an empty Message of the budget: it goes alone.
        let Some(open) = self.open.get_mut(i) else {
            return;
        };
        open.writer.clear();
        self.oversize.clear();
        if self.oversize.begin_set(open.set_id) {
            self.templates.put_record(record, &mut self.oversize);
            if self.oversize.commit() {
                self.out.stats.oversize_messages += 1;
                self.send(Which::Oversize, now_ns);
            }
        }
    }

    /// Time passes: finishes each partial Message once the flush interval has run since its
    /// first record, sends the templates when the template interval has run (UDP), then every
    /// run. Early calls are harmless.
    pub fn poll(&mut self, now_ns: u64) {
        for i in 0..self.open.len() {
            if self.open.get(i).is_some_and(|o| {
                o.records > 0 && now_ns >= o.since.saturating_add(self.config.flush_interval_ns)
            }) {
                self.send(Which::Open(i), now_ns);
            }
        }
        if self.templates_due(now_ns) {
            self.send_templates(now_ns);
        }
        self.send_runs();
    }

    /// Finishes every partial Message and sends every run now (the end of the capture, a
    /// signal, `ipfix flush`).
    pub fn flush(&mut self, now_ns: u64) {
        for i in 0..self.open.len() {
            if self.open.get(i).is_some_and(|o| o.records > 0) {
                self.send(Which::Open(i), now_ns);
            }
        }
        self.send_runs();
    }

    fn send_runs(&mut self) {
        for open in &mut self.open {
            self.out.send_run(&mut open.run);
        }
    }

    fn templates_due(&self, now_ns: u64) -> bool {
        //= https://www.rfc-editor.org/rfc/rfc7011#section-8.4
        //# The Exporting Process SHOULD resend the Template
        //# Records ... at regular intervals
        self.out.transport.unreliable()
            && self
                .templates_sent_at
                .is_some_and(|at| now_ns >= at.saturating_add(self.config.template_interval_ns))
    }

    /// Finishes the Message of Data Records in `which` (an open or the oversize Message) on
    /// its way, with the templates first when the session is new or (UDP) they are due.
    fn send(&mut self, which: Which, now_ns: u64) {
        let records = match which {
            Which::Open(i) => self
                .open
                .get_mut(i)
                .map_or(0, |o| std::mem::take(&mut o.records)),
            Which::Oversize => 1,
            Which::Template(_) => 0,
        };
        match self.out.transport.open() {
            Ok(fresh) => {
                if fresh {
                    self.out.sequence = 0;
                }
                self.unreachable = false;
                //= https://www.rfc-editor.org/rfc/rfc7011#section-8
                //# The Exporting Process SHOULD transmit the Template Set and Options
                //# Template Set in advance of any Data Sets that use that (Options)
                //# Template ID
                if fresh || self.templates_sent_at.is_none() || self.templates_due(now_ns) {
                    self.send_templates(now_ns);
                }
                self.queue(which, records, Carries::Records);
            }
            Err(e) => {
                // One line per outage (a refused connection, a certificate error), not one
                // per Message; the summary counts every failed send.
                if !self.unreachable {
                    tracing::warn!(error = %e, "cannot reach the collector");
                }
                self.unreachable = true;
                self.out.stats.send_errors += 1;
                self.out.stats.records_lost += u64::from(records);
            }
        }
        if let Some((w, _)) = which.parts(
            &mut self.open,
            &mut self.oversize,
            &mut self.template_messages,
            &mut self.single,
        ) {
            w.clear();
        }
    }

    /// Sends every template Message. They hold no Data Record: the sequence number does not
    /// move.
    fn send_templates(&mut self, now_ns: u64) {
        self.templates_sent_at = Some(now_ns);
        for i in 0..self.template_messages.len() {
            if self.template_messages.get(i).is_some_and(|(_, big)| *big) {
                self.out.stats.oversize_messages += 1;
            }
            self.queue(Which::Template(i), 0, Carries::Templates);
        }
    }

    /// Finishes the Message in `which` into its run: an open Message's template's run (sent
    /// first if the Message cannot join it, and after if it is then full), or a run of its own
    /// sent at once.
    fn queue(&mut self, which: Which, records: u32, carries: Carries) {
        let export_time = (self.export_time)();
        let domain = self.config.domain;
        let Some((w, run)) = which.parts(
            &mut self.open,
            &mut self.oversize,
            &mut self.template_messages,
            &mut self.single,
        ) else {
            return;
        };
        // The sequence number is written as the run leaves.
        let message = w.finish(export_time, 0, domain);
        let capacity = self.out.transport.run_capacity(message.len());
        if !run.admits(message.len(), capacity) {
            self.out.send_run(run);
        }
        run.push(message, records, carries);
        if run.messages.len() >= capacity || !matches!(which, Which::Open(_)) {
            self.out.send_run(run);
        }
    }
}

/// The template Messages: as few Messages of `budget` octets as the templates fit, each template
/// alone in a larger Message if it does not fit the budget by itself (marked `true`).
fn template_messages(templates: &Templates, budget: usize) -> Vec<(MessageWriter, bool)> {
    let mut messages = Vec::new();
    let mut w = MessageWriter::new(budget);
    for def in templates.defs() {
        if !w.is_empty() {
            w.put_template(def);
            if w.commit() {
                continue;
            }
            messages.push((std::mem::replace(&mut w, MessageWriter::new(budget)), false));
        }
        if w.begin_set(SetId::TEMPLATE) && {
            w.put_template(def);
            w.commit()
        } {
            continue;
        }
        // Alone it does not fit the budget.
        w.clear();
        let mut big = MessageWriter::new(MAX_MESSAGE_LEN);
        if big.begin_set(SetId::TEMPLATE) {
            big.put_template(def);
            if big.commit() {
                messages.push((big, true));
            }
        }
    }
    if !w.is_empty() {
        messages.push((w, false));
    }
    messages
}

/// What a Message holds, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carries {
    Records,
    Templates,
}

/// Which writer holds a Message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// The open Message of the `n`th template.
    Open(usize),
    Oversize,
    /// The `n`th template Message.
    Template(usize),
}

impl Which {
    /// The writer that holds this Message and the run it joins (its template's for an open
    /// Message, a run of one otherwise), among the Exporting Process's fields, passed apart so
    /// that the rest of it stays free to borrow.
    fn parts<'a>(
        self,
        open: &'a mut [OpenMessage],
        oversize: &'a mut MessageWriter,
        templates: &'a mut [(MessageWriter, bool)],
        single: &'a mut Run,
    ) -> Option<(&'a mut MessageWriter, &'a mut Run)> {
        match self {
            Self::Open(i) => open.get_mut(i).map(|o| (&mut o.writer, &mut o.run)),
            Self::Oversize => Some((oversize, single)),
            Self::Template(i) => templates.get_mut(i).map(|(w, _)| (w, single)),
        }
    }
}

/// The smallest path MTU at which every template and every record fits a Message alone.
pub fn smallest_fitting_mtu(templates: &Templates, header_overhead: usize) -> usize {
    let template_sets = templates.defs().map(|d| {
        SET_HEADER_LEN
            + 4
            + d.fields
                .iter()
                .map(|f| if f.enterprise_number.0 == 0 { 4 } else { 8 })
                .sum::<usize>()
    });
    let data_sets = Variant::ALL
        .iter()
        .filter_map(|v| templates.record_len(*v))
        .map(|len| SET_HEADER_LEN + len);
    header_overhead + HEADER_LEN + template_sets.chain(data_sets).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::io;

    use flowvm_vm::Registry;
    use flowvm_vm::wire::header::Message;
    use flowvm_vm::wire::set::SetKind;
    use flowvm_vm::wire::template::TemplateRecords;

    use super::*;
    use crate::export::transport;
    use crate::flow::{FlowEndReason, FlowKey, RecordFlags};

    /// Keeps what it is sent; a reliable transport's first `open` (and the first after a
    /// failed send) starts a new session. The next `fail_sends` sends fail, closing it.
    #[derive(Debug, Default)]
    struct Recorder {
        messages: Vec<Vec<u8>>,
        reliable: bool,
        open: bool,
        fail_sends: usize,
        /// Messages a run may carry (0: 1).
        run_capacity: usize,
        /// Messages in each run sent.
        runs: Vec<usize>,
    }

    impl Transport for Recorder {
        fn open(&mut self) -> io::Result<bool> {
            let fresh = self.reliable && !self.open;
            self.open = true;
            Ok(fresh)
        }

        fn send(&mut self, message: &[u8]) -> io::Result<()> {
            if self.fail_sends > 0 {
                self.fail_sends -= 1;
                self.open = false;
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            self.messages.push(message.to_vec());
            Ok(())
        }

        fn unreliable(&self) -> bool {
            !self.reliable
        }

        fn run_capacity(&self, _: usize) -> usize {
            self.run_capacity.max(1)
        }

        fn send_run(&mut self, messages: &[u8], message_len: usize) -> Result<(), RunError> {
            self.runs.push(messages.len() / message_len);
            transport::send_each(self, messages, message_len)
        }
    }

    const S: u64 = 1_000_000_000;

    fn record(n: u16, variant: Variant) -> FlowRecord {
        FlowRecord {
            key: FlowKey {
                variant,
                protocol: 6,
                src_port: n,
                dst_port: 443,
                ethertype: 0,
                vlan: 0,
                interface: 1,
                src_mac: [0; 6],
                dst_mac: [0; 6],
                src: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                dst: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            },
            start_ns: 1_700_000_000 * S,
            end_ns: 1_700_000_001 * S,
            packets: 3,
            octets: 180,
            tcp_flags: 0x12,
            end_reason: FlowEndReason::IdleTimeout,
        }
    }

    fn exporter(mtu: usize, reliable: bool) -> ExportingProcess<Recorder> {
        let templates = Templates::new(RecordFlags::L3_L4, &Registry::new()).unwrap();
        let config = ExportConfig {
            message_budget: mtu - 28,
            template_interval_ns: 20 * S,
            flush_interval_ns: 5 * S,
            domain: ObservationDomainId(7),
        };
        let transport = Recorder {
            reliable,
            ..Recorder::default()
        };
        ExportingProcess::new(config, templates, transport).with_export_time(|| 1_234)
    }

    /// (sequence number, template records, data records) of each Message.
    fn shape(messages: &[Vec<u8>]) -> Vec<(u32, usize, usize)> {
        messages
            .iter()
            .map(|m| {
                let msg = Message::decode(m).unwrap();
                assert_eq!(msg.header.observation_domain_id, ObservationDomainId(7));
                assert_eq!(msg.header.export_time, 1_234);
                let (mut t, mut d) = (0, 0);
                for set in msg.sets() {
                    let set = set.unwrap();
                    match set.kind().unwrap() {
                        SetKind::Template => t += TemplateRecords::new(&set).count(),
                        SetKind::Data(id) => {
                            d += set.body.len() / if id.0 == 256 { 56 } else { 80 };
                        }
                        SetKind::OptionsTemplate => {}
                    }
                }
                (msg.header.sequence_number, t, d)
            })
            .collect()
    }

    #[test]
    fn templates_go_first_and_records_fill_messages_up_to_the_mtu() {
        let mut e = exporter(512, false);
        for n in 0..20 {
            e.export(&record(n, Variant::Ip4), S);
        }
        e.flush(S);
        let m = &e.transport().messages;
        assert!(m.iter().all(|m| m.len() <= 512 - 28));
        // (512 - 28 - 16 - 4) / 56 = 8 records per Message.
        assert_eq!(shape(m), [(0, 2, 0), (0, 0, 8), (8, 0, 8), (16, 0, 4)]);
        assert_eq!(e.stats().records, 20);
        assert_eq!(e.stats().template_messages, 1);
    }

    #[test]
    fn each_template_fills_messages_of_its_own() {
        let mut e = exporter(1450, false);
        e.export(&record(1, Variant::Ip4), S);
        e.export(&record(2, Variant::Ip6), S);
        e.export(&record(3, Variant::Ip4), S);
        e.flush(S);
        let m = &e.transport().messages;
        // Templates, then the IPv4 Message (two records), then the IPv6 one.
        assert_eq!(shape(m), [(0, 2, 0), (0, 0, 2), (2, 0, 1)]);
        assert!(
            m.iter()
                .all(|m| Message::decode(m).unwrap().sets().count() == 1)
        );
    }

    #[test]
    fn interleaved_templates_leave_in_runs_of_their_own_numbered_in_the_order_sent() {
        let mut e = exporter(512, false);
        e.out.transport.run_capacity = 64;
        // 80 IPv4 and 40 IPv6 records, interleaved as a flow table's flush hands them over.
        for n in 0..120 {
            let variant = if n % 3 == 2 {
                Variant::Ip6
            } else {
                Variant::Ip4
            };
            e.export(&record(n, variant), S);
        }
        e.flush(S);
        // Templates; the IPv4 run (ten Messages of 8); the IPv6 run (eight Messages of 5).
        assert_eq!(e.out.transport.runs, [1, 10, 8]);
        let mut expected = 0;
        for (seq, _, data) in shape(&e.transport().messages) {
            assert_eq!(seq, expected);
            expected += u32::try_from(data).unwrap();
        }
        assert_eq!(expected, 120);
        assert_eq!(e.stats().records, 120);
    }

    #[test]
    fn messages_of_one_length_leave_in_runs_and_a_failed_run_is_lost_and_renumbered() {
        let mut e = exporter(512, false);
        e.out.transport.run_capacity = 2;
        for n in 0..44 {
            e.export(&record(n, Variant::Ip4), S);
        }
        // Nothing leaves before the poll that follows the exports, but a full run.
        assert_eq!(e.transport().runs, [1, 2, 2]);
        e.poll(S);
        // Templates alone (another length), then runs of two full Messages (8 records each),
        // then the last full one, sent by the poll.
        assert_eq!(e.transport().runs, [1, 2, 2, 1]);
        e.flush(S);
        assert_eq!(e.transport().runs, [1, 2, 2, 1, 1]);
        let seqs: Vec<_> = shape(&e.transport().messages)
            .into_iter()
            .map(|(seq, _, data)| (seq, data))
            .collect();
        assert_eq!(
            seqs,
            [(0, 0), (0, 8), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4)]
        );

        // The next run fails whole: its records are lost and the next Message numbers from
        // where it began.
        e.out.transport.fail_sends = 1;
        for n in 0..20 {
            e.export(&record(n, Variant::Ip4), 2 * S);
        }
        e.flush(2 * S);
        let s = e.stats();
        assert_eq!((s.records, s.records_lost, s.send_errors), (48, 16, 2));
        let last = shape(&e.transport().messages).pop().unwrap();
        assert_eq!(last, (44, 0, 4));
    }

    #[test]
    fn templates_are_resent_on_the_interval_over_udp_only() {
        for reliable in [false, true] {
            let mut e = exporter(512, reliable);
            for t in 0..50 {
                e.export(&record(1, Variant::Ip4), t * S);
                e.poll(t * S);
            }
            e.flush(50 * S);
            let expected = if reliable { 1 } else { 3 };
            assert_eq!(e.stats().template_messages, expected, "reliable {reliable}");
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc7011#section-10.4.1.3
    //# When an Exporting Process detects that the TCP connection to the
    //# Collecting Process has terminated abnormally, it SHOULD try to
    //# re-establish the connection.
    #[test]
    fn a_lost_tcp_connection_is_reopened_as_a_new_session_and_its_records_counted_lost() {
        let mut e = exporter(1450, true);
        e.export(&record(1, Variant::Ip4), S);
        e.flush(S);
        // The connection resets under the next Message: its record is lost.
        e.out.transport.fail_sends = 1;
        e.export(&record(2, Variant::Ip4), 2 * S);
        e.flush(2 * S);
        e.export(&record(3, Variant::Ip4), 3 * S);
        e.export(&record(4, Variant::Ip4), 3 * S);
        e.flush(3 * S);
        let s = e.stats();
        assert_eq!((s.records, s.records_lost, s.send_errors), (3, 1, 1));
        // Templates, one record; then the new session: templates again, sequence from 0.
        assert_eq!(
            shape(&e.transport().messages),
            [(0, 2, 0), (0, 0, 1), (0, 2, 0), (0, 0, 2)]
        );
    }

    #[test]
    fn a_partial_message_waits_for_the_flush_interval() {
        let mut e = exporter(1450, false);
        e.export(&record(1, Variant::Ip4), 10 * S);
        e.poll(14 * S);
        assert_eq!(e.stats().records, 0);
        e.poll(15 * S);
        assert_eq!(e.stats().records, 1);
    }

    #[test]
    fn at_mtu_68_each_template_and_record_goes_alone_and_is_counted_oversize() {
        let mut e = exporter(68, false);
        for n in 0..3 {
            e.export(&record(n, Variant::Ip4), S);
        }
        e.flush(S);
        let s = e.stats();
        assert_eq!(s.records, 3);
        // Two templates and three records, each alone over the 40-octet budget.
        assert_eq!(s.messages, 5);
        assert_eq!(s.oversize_messages, 5);
        let seqs: Vec<_> = shape(&e.transport().messages)
            .into_iter()
            .map(|(seq, _, _)| seq)
            .collect();
        assert_eq!(seqs, [0, 0, 0, 1, 2]);
    }

    #[test]
    fn path_mtu_is_checked_with_vpps_messages() {
        assert_eq!(
            check_path_mtu(1451).unwrap_err(),
            "too big path-mtu value, maximum is 1450"
        );
        assert_eq!(
            check_path_mtu(67).unwrap_err(),
            "too small path-mtu value, minimum is 68"
        );
        assert_eq!(check_path_mtu(512), Ok(512));
    }

    #[test]
    fn the_smallest_fitting_mtu_holds_the_largest_set() {
        let t = Templates::new(RecordFlags::L3_L4, &Registry::new()).unwrap();
        // ip6 record: 80 octets + set header 4 + message header 16 + IPv4/UDP 28.
        assert_eq!(smallest_fitting_mtu(&t, 28), 128);
    }
}
