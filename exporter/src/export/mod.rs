//! The Exporting Process: packs Flow Records into IPFIX Messages no larger than the path MTU
//! allows, numbers them, sends the templates first and again every template interval (UDP) or
//! once per connection (TCP), and flushes partial Messages periodically and at the end.

pub mod templates;
pub mod transport;

use flowvm_vm::wire::ids::{ObservationDomainId, SetId};
use flowvm_vm::wire::writer::MessageWriter;
use flowvm_vm::wire::{HEADER_LEN, MAX_MESSAGE_LEN, SET_HEADER_LEN};

use crate::export::templates::Templates;
use crate::export::transport::Transport;
use crate::flow::FlowRecord;

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
#[derive(Debug)]
pub struct ExportingProcess<T> {
    config: ExportConfig,
    templates: Templates,
    transport: T,
    writer: MessageWriter,
    /// For a template or record that does not fit the budget alone.
    oversize: MessageWriter,
    /// Data Records in `writer`.
    pending: u32,
    /// When the first of them was added.
    pending_since: u64,
    //= https://www.rfc-editor.org/rfc/rfc7011#section-3.1
    //# Sequence Number
    //#    Incremental sequence counter modulo 2^32 of all IPFIX Data Records
    //#    sent in the current stream from the current Observation Domain by
    //#    the Exporting Process.
    sequence: u32,
    templates_sent_at: Option<u64>,
    export_time: fn() -> u32,
    stats: ExportStats,
    /// The last attempt to open a session failed: the next failure is not logged again.
    unreachable: bool,
}

/// The Export Time of a Message: wall-clock seconds (capture time drives only metering).
fn wall_seconds() -> u32 {
    u32::try_from(crate::clock::unix_nanos() / 1_000_000_000).unwrap_or(u32::MAX)
}

impl<T: Transport> ExportingProcess<T> {
    /// An Exporting Process sending `templates`' records through `transport`.
    pub fn new(config: ExportConfig, templates: Templates, transport: T) -> Self {
        Self {
            writer: MessageWriter::new(config.message_budget),
            oversize: MessageWriter::new(MAX_MESSAGE_LEN),
            config,
            templates,
            transport,
            pending: 0,
            pending_since: 0,
            sequence: 0,
            templates_sent_at: None,
            export_time: wall_seconds,
            stats: ExportStats::default(),
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
        self.stats
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The templates.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Adds one record; sends the Message first if the record does not fit in it.
    pub fn export(&mut self, record: &FlowRecord, now_ns: u64) {
        let Some(template_id) = self.templates.template_id(record.key.variant) else {
            return;
        };
        let set_id = SetId(template_id.0);
        for _ in 0..2 {
            if self.writer.open_set() != Some(set_id) && !self.writer.begin_set(set_id) {
                self.send_pending(now_ns);
                continue;
            }
            self.templates.put_record(record, &mut self.writer);
            if self.writer.commit() {
                if self.pending == 0 {
                    self.pending_since = now_ns;
                }
                self.pending += 1;
                return;
            }
            if self.pending == 0 {
                break;
            }
            self.send_pending(now_ns);
        }
        // The record does not fit an empty Message of the budget: it goes alone.
        self.writer.clear();
        self.oversize.clear();
        if self.oversize.begin_set(set_id) {
            self.templates.put_record(record, &mut self.oversize);
            if self.oversize.commit() {
                self.stats.oversize_messages += 1;
                self.send(Which::Oversize, 1, now_ns);
            }
        }
    }

    /// Time passes: sends the partial Message once the flush interval has run since its first
    /// record, and the templates when the template interval has run (UDP). Early calls are
    /// harmless.
    pub fn poll(&mut self, now_ns: u64) {
        if self.pending > 0
            && now_ns
                >= self
                    .pending_since
                    .saturating_add(self.config.flush_interval_ns)
        {
            self.send_pending(now_ns);
        }
        if self.templates_due(now_ns) {
            self.send_templates(now_ns);
        }
    }

    /// Sends the partial Message now (the end of the capture, a signal, `ipfix flush`).
    pub fn flush(&mut self, now_ns: u64) {
        if self.pending > 0 {
            self.send_pending(now_ns);
        }
    }

    fn templates_due(&self, now_ns: u64) -> bool {
        //= https://www.rfc-editor.org/rfc/rfc7011#section-8.4
        //# The Exporting Process SHOULD resend the Template
        //# Records ... at regular intervals
        self.transport.unreliable()
            && self
                .templates_sent_at
                .is_some_and(|at| now_ns >= at.saturating_add(self.config.template_interval_ns))
    }

    fn send_pending(&mut self, now_ns: u64) {
        let records = self.pending;
        self.pending = 0;
        self.send(Which::Budget, records, now_ns);
    }

    /// Sends the Message in `which` carrying `records` Data Records, with the templates first
    /// when the session is new or (UDP) they are due.
    fn send(&mut self, which: Which, records: u32, now_ns: u64) {
        let opened = match self.transport.open() {
            Ok(fresh) => {
                if fresh {
                    self.sequence = 0;
                }
                self.unreachable = false;
                //= https://www.rfc-editor.org/rfc/rfc7011#section-8
                //# The Exporting Process SHOULD transmit the Template Set and Options
                //# Template Set in advance of any Data Sets that use that (Options)
                //# Template ID
                if fresh || self.templates_sent_at.is_none() || self.templates_due(now_ns) {
                    self.send_templates(now_ns);
                }
                true
            }
            Err(e) => {
                // One line per outage (a refused connection, a certificate error), not one
                // per Message; the summary counts every failed send.
                if !self.unreachable {
                    tracing::warn!(error = %e, "cannot reach the collector");
                }
                self.unreachable = true;
                self.stats.send_errors += 1;
                false
            }
        };
        let writer = match which {
            Which::Budget => &mut self.writer,
            Which::Oversize => &mut self.oversize,
        };
        let header = Header {
            export_time: (self.export_time)(),
            sequence: self.sequence,
            domain: self.config.domain,
        };
        let sent = opened
            && transmit(
                &mut self.transport,
                &mut self.stats,
                writer,
                header,
                Carries::Records,
            );
        writer.clear();
        if sent {
            self.stats.records += u64::from(records);
            self.sequence = self.sequence.wrapping_add(records);
        } else {
            self.stats.records_lost += u64::from(records);
        }
    }

    /// Sends every template, in as few Messages of the budget as they fit (each template alone
    /// in an oversize Message if it does not fit the budget by itself). Template Messages carry
    /// the sequence number without adding to it (they hold no Data Record).
    fn send_templates(&mut self, now_ns: u64) {
        self.templates_sent_at = Some(now_ns);
        let header = Header {
            export_time: (self.export_time)(),
            sequence: self.sequence,
            domain: self.config.domain,
        };
        let (transport, stats) = (&mut self.transport, &mut self.stats);
        let mut w = MessageWriter::new(self.config.message_budget);
        let mut in_message = false;
        for def in self.templates.defs() {
            if in_message {
                w.put_template(def);
                if w.commit() {
                    continue;
                }
                transmit(transport, stats, &mut w, header, Carries::Templates);
                w.clear();
            }
            in_message = w.begin_set(SetId::TEMPLATE) && {
                w.put_template(def);
                w.commit()
            };
            if !in_message {
                // Alone it does not fit the budget.
                let mut big = MessageWriter::new(MAX_MESSAGE_LEN);
                if big.begin_set(SetId::TEMPLATE) {
                    big.put_template(def);
                    if big.commit()
                        && transmit(transport, stats, &mut big, header, Carries::Templates)
                    {
                        stats.oversize_messages += 1;
                    }
                }
                w.clear();
            }
        }
        if in_message {
            transmit(transport, stats, &mut w, header, Carries::Templates);
        }
    }
}

/// The header fields of a Message about to be sent.
#[derive(Clone, Copy, Debug)]
struct Header {
    export_time: u32,
    sequence: u32,
    domain: ObservationDomainId,
}

/// What a Message holds, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carries {
    Records,
    Templates,
}

/// Finishes `w`'s Message, sends it and counts it (Messages, octets, or a send error); `true`
/// when it went. The one place a Message leaves the Exporting Process.
fn transmit<T: Transport>(
    transport: &mut T,
    stats: &mut ExportStats,
    w: &mut MessageWriter,
    header: Header,
    carries: Carries,
) -> bool {
    let message = w.finish(header.export_time, header.sequence, header.domain);
    match transport.send(message) {
        Ok(()) => {
            stats.messages += 1;
            stats.octets += message.len() as u64;
            if carries == Carries::Templates {
                stats.template_messages += 1;
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, ?carries, "send to the collector failed");
            stats.send_errors += 1;
            false
        }
    }
}

/// Which writer holds the Message to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Budget,
    Oversize,
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
    let data_sets = crate::flow::Variant::ALL
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
    use crate::flow::{FlowEndReason, FlowKey, RecordFlags, Variant};

    /// Keeps what it is sent; a reliable transport's first `open` (and the first after a
    /// failed send) starts a new session. The next `fail_sends` sends fail, closing it.
    #[derive(Debug, Default)]
    struct Recorder {
        messages: Vec<Vec<u8>>,
        reliable: bool,
        open: bool,
        fail_sends: usize,
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
    fn mixed_variants_share_a_message_in_separate_sets() {
        let mut e = exporter(1450, false);
        e.export(&record(1, Variant::Ip4), S);
        e.export(&record(2, Variant::Ip6), S);
        e.export(&record(3, Variant::Ip4), S);
        e.flush(S);
        let m = &e.transport().messages;
        assert_eq!(m.len(), 2);
        let sets = Message::decode(&m[1]).unwrap().sets().count();
        assert_eq!(sets, 3);
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
        e.transport.fail_sends = 1;
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
