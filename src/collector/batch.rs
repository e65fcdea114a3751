//! Columns of one program plus the per-row context the archive adds: exporter, observation
//! domain, export time and the protocol's version; for NetFlow rows also the device's boot
//! time and the absolute start and end its uptime-relative times give, and for v5 rows the
//! header's engine and sampling fields.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMillisecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, PrimitiveArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::wire::netflow5;
use flowvm_vm::wire::packet::ExportHeader;
use flowvm_vm::wire::set::Set;
use flowvm_vm::{Columns, DecodeError, Program, RunStats, Spares};

use crate::collector::FastMap;

/// Name of the column holding the exporter's IP address as text.
pub const EXPORTER: &str = "exporter";
/// Name of the column holding the Observation Domain ID.
pub const OBSERVATION_DOMAIN_ID: &str = "observation_domain_id";
/// Name of the column holding the Message's Export Time.
pub const EXPORT_TIME: &str = "export_time";
/// Name of the column holding the packet's version field: 10 IPFIX, 9 NetFlow v9, 5 v5.
pub const EXPORT_VERSION: &str = "export_version";
/// Rows from a TLS session whose exporter presented a certificate: its name (the first DNS
/// name of the certificate, else its SHA-256 fingerprint).
pub const EXPORTER_IDENTITY: &str = "exporter_identity";
/// NetFlow rows: when the device booted (IE 160), the export time less its uptime.
pub const SYSTEM_INIT_TIME: &str = "systemInitTimeMilliseconds";

/// The uptime-relative times NetFlow sends (IE 22 and 21) and the absolute times (IE 152 and
/// 153) archived beside them.
const UPTIME_TIMES: [(&str, &str); 2] = [
    ("flowStartSysUpTime", "flowStartMilliseconds"),
    ("flowEndSysUpTime", "flowEndMilliseconds"),
];

/// What a row keeps of the packet it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The packet's version field.
    pub version: u16,
    /// Seconds since the UNIX epoch at which it left the exporter.
    pub export_time: u32,
    /// Nanoseconds past that (v5).
    pub export_nanos: u32,
    /// The device's uptime in milliseconds when it left (NetFlow).
    pub sys_uptime: Option<u32>,
    /// The v5 header (engine, sampling).
    pub netflow5: Option<netflow5::PacketHeader>,
}

impl Provenance {
    /// What rows keep of a packet with `header`.
    pub fn of(header: &ExportHeader) -> Self {
        Self {
            version: header.version,
            export_time: header.export_time,
            export_nanos: header.export_nanos,
            sys_uptime: header.sys_uptime,
            netflow5: header.netflow5,
        }
    }

    /// The export time in milliseconds since the UNIX epoch.
    fn export_millis(&self) -> i64 {
        i64::from(self.export_time) * 1000 + i64::from(self.export_nanos / 1_000_000)
    }
}

/// The columns rows of `program` get from packets of `version`, in order: the context (with
/// the exporter's identity when `authenticated`), the template's, then what NetFlow's header
/// adds.
pub fn schema(program: &Program, version: u16, authenticated: bool) -> SchemaRef {
    let utc = || Some(Arc::from("UTC"));
    let text = || DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
    let mut fields = vec![Field::new(EXPORTER, text(), false)];
    if authenticated {
        fields.push(Field::new(EXPORTER_IDENTITY, text(), false));
    }
    fields.extend([
        Field::new(OBSERVATION_DOMAIN_ID, DataType::UInt32, false),
        Field::new(
            EXPORT_TIME,
            DataType::Timestamp(TimeUnit::Second, utc()),
            false,
        ),
        Field::new(EXPORT_VERSION, DataType::UInt16, false),
    ]);
    fields.extend(program.schema().fields().iter().map(|f| f.as_ref().clone()));
    if version != flowvm_vm::wire::VERSION {
        let millis = DataType::Timestamp(TimeUnit::Millisecond, utc());
        fields.push(Field::new(SYSTEM_INIT_TIME, millis.clone(), false));
        for (_, absolute) in derived_times(program) {
            fields.push(Field::new(absolute, millis.clone(), true));
        }
    }
    if version == netflow5::VERSION {
        fields.extend([
            Field::new("engineType", DataType::UInt8, false),
            Field::new("engineId", DataType::UInt8, false),
            Field::new("samplingAlgorithm", DataType::UInt8, false),
            Field::new("samplingInterval", DataType::UInt32, false),
        ]);
    }
    Arc::new(Schema::new(fields))
}

/// The (uptime, absolute) time columns to derive for `program`: each uptime column it has
/// whose absolute twin it does not already have.
fn derived_times(program: &Program) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    let schema = program.schema();
    UPTIME_TIMES.into_iter().filter(move |(uptime, absolute)| {
        schema.field_with_name(uptime).is_ok() && schema.field_with_name(absolute).is_err()
    })
}

/// Where the rows of one Data Set come from.
#[derive(Clone, Copy, Debug)]
pub struct RowContext<'a> {
    /// The exporter's address as text.
    pub exporter: &'a Arc<str>,
    /// The authenticated exporter's name (TLS with a client certificate).
    pub identity: Option<&'a Arc<str>>,
    /// The Observation Domain of the Message.
    pub domain: ObservationDomainId,
    /// The packet it came in.
    pub provenance: Provenance,
}

/// A program's columns with the context columns beside them.
#[derive(Debug)]
pub struct Batcher {
    columns: Columns,
    schema: SchemaRef,
    /// The packet version all rows come from.
    version: u16,
    exporters: TextColumn,
    /// The exporter's identity, for the rows of authenticated TLS sessions.
    identities: Option<TextColumn>,
    domains: Vec<u32>,
    export_times: Vec<i64>,
    /// Per row (NetFlow): the export time in milliseconds and the device's uptime then.
    clocks: Vec<(i64, u32)>,
    /// Per row (v5): the header's engine and sampling fields.
    engines: Vec<netflow5::PacketHeader>,
}

impl Batcher {
    /// Empty columns for rows of `program` from packets of `version`, from authenticated
    /// exporters or not.
    pub fn new(program: Arc<Program>, version: u16, authenticated: bool) -> Self {
        let schema = schema(&program, version, authenticated);
        Self {
            columns: Columns::new(program),
            schema,
            version,
            exporters: TextColumn::default(),
            identities: authenticated.then(TextColumn::default),
            domains: Vec::new(),
            export_times: Vec::new(),
            clocks: Vec::new(),
            engines: Vec::new(),
        }
    }

    /// The program the columns belong to.
    pub fn program(&self) -> &Arc<Program> {
        self.columns.program()
    }

    /// Rows buffered.
    pub fn rows(&self) -> usize {
        self.columns.rows()
    }

    /// Octets of variable-length content buffered.
    pub fn var_bytes(&self) -> usize {
        self.columns.var_bytes()
    }

    /// Checks and decodes one Data Set, adding the context to every row.
    ///
    /// # Errors
    /// Those of [`Columns::run`]; nothing is appended then.
    pub fn run(
        &mut self,
        set: &Set<'_>,
        context: &RowContext<'_>,
    ) -> Result<RunStats, DecodeError> {
        let stats = self.columns.run(set)?;
        let rows = usize::try_from(stats.records).unwrap_or(0);
        self.exporters.extend(context.exporter, rows);
        if let Some(identities) = &mut self.identities {
            let none = Arc::default();
            identities.extend(context.identity.unwrap_or(&none), rows);
        }
        self.domains
            .extend(std::iter::repeat_n(context.domain.0, rows));
        let provenance = context.provenance;
        self.export_times
            .extend(std::iter::repeat_n(i64::from(provenance.export_time), rows));
        if let Some(uptime) = provenance.sys_uptime {
            let clock = (provenance.export_millis(), uptime);
            self.clocks.extend(std::iter::repeat_n(clock, rows));
        }
        if let Some(engine) = provenance.netflow5 {
            self.engines.extend(std::iter::repeat_n(engine, rows));
        }
        Ok(stats)
    }

    /// Invalid values met when the last flush read staged records, not yet reported (see
    /// [`Columns::take_invalid_values`]).
    pub fn take_invalid_values(&mut self) -> u64 {
        self.columns.take_invalid_values()
    }

    /// Hands the buffered rows over; `None` when there are none.
    ///
    /// # Errors
    /// Only if the columns broke an invariant (a bug); the buffers are emptied either way.
    pub fn flush(&mut self, spares: &mut Spares) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(batch) = self.columns.flush_with(spares)? else {
            return Ok(None);
        };
        let rows = batch.num_rows();
        let mut arrays = vec![self.exporters.take(rows, spares)?];
        if let Some(identities) = &mut self.identities {
            arrays.push(identities.take(rows, spares)?);
        }
        let domains: ArrayRef = Arc::new(PrimitiveArray::<UInt32Type>::new(
            ScalarBuffer::from(renew(&mut self.domains, rows, |n| spares.vec(n))),
            None,
        ));
        let times = renew(&mut self.export_times, rows, |n| spares.vec(n));
        let times: ArrayRef = Arc::new(
            PrimitiveArray::<TimestampSecondType>::new(ScalarBuffer::from(times), None)
                .with_timezone("UTC"),
        );
        let mut versions = spares.vec(rows);
        versions.resize(rows, self.version);
        let versions: ArrayRef = Arc::new(PrimitiveArray::<UInt16Type>::new(
            ScalarBuffer::from(versions),
            None,
        ));
        arrays.extend([domains, times, versions]);
        arrays.extend(batch.columns().iter().cloned());
        let clocks = renew(&mut self.clocks, rows, Vec::with_capacity);
        if self.version != flowvm_vm::wire::VERSION {
            arrays.extend(netflow_times(&batch, self.columns.program(), &clocks));
        }
        let engines = renew(&mut self.engines, rows, Vec::with_capacity);
        if self.version == netflow5::VERSION {
            arrays.extend(engine_columns(&engines));
        }
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map(Some)
    }
}

/// `v`'s contents, leaving it empty with `room` for `rows` (from the spares, for a column's
/// buffer) if it held any (columns a protocol does not fill stay unallocated): the next batch
/// is likely the size of this one, so its buffers are reserved now, as the program's columns
/// do, and steady decoding does not grow them row by row.
fn renew<T>(v: &mut Vec<T>, rows: usize, room: impl FnOnce(usize) -> Vec<T>) -> Vec<T> {
    let next = if v.is_empty() { Vec::new() } else { room(rows) };
    std::mem::replace(v, next)
}

/// A column of text repeated over many rows (exporters, identities), as a dictionary.
#[derive(Debug, Default)]
struct TextColumn {
    values: Vec<Arc<str>>,
    index: FastMap<Arc<str>, u32>,
    keys: Vec<u32>,
    /// The text appended last and its key: a run of Sets from one exporter finds its key
    /// without hashing the text each time.
    last: Option<(Arc<str>, u32)>,
}

impl TextColumn {
    /// Appends `text` for `rows` rows (sharing it: no copy of the text is made).
    fn extend(&mut self, text: &Arc<str>, rows: usize) {
        let key = match &self.last {
            Some((last, key)) if Arc::ptr_eq(last, text) => *key,
            _ => {
                let key = self.intern(text);
                self.last = Some((Arc::clone(text), key));
                key
            }
        };
        self.keys.extend(std::iter::repeat_n(key, rows));
    }

    /// The dictionary key of `text`, added if new.
    fn intern(&mut self, text: &Arc<str>) -> u32 {
        if let Some(&key) = self.index.get(text) {
            return key;
        }
        let key = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(Arc::clone(text));
        self.index.insert(Arc::clone(text), key);
        key
    }

    /// The column so far, emptied, with room for `rows` more.
    fn take(&mut self, rows: usize, spares: &mut Spares) -> Result<ArrayRef, ArrowError> {
        let values = StringArray::from_iter_values(self.values.drain(..).map(|s| s.to_string()));
        self.index.clear();
        self.last = None;
        let keys = renew(&mut self.keys, rows, |n| spares.vec(n));
        let keys = UInt32Array::new(ScalarBuffer::from(keys), None);
        Ok(Arc::new(DictionaryArray::<UInt32Type>::try_new(
            keys,
            Arc::new(values),
        )?))
    }
}

//= https://www.rfc-editor.org/rfc/rfc3954#section-5.1
//# sysUpTime
//#       Time in milliseconds since this device was first booted.
/// NetFlow's time columns: the device's boot time per row, and the absolute start and end of
/// each flow from its uptime-relative ones. Uptimes are milliseconds modulo 2^32 (49.7 days),
/// so the distance back from the packet's uptime is taken modulo 2^32 too, signed: a flow that
/// started before the uptime wrapped is still in the past, and one stamped a little after the
/// packet (clock skew) a little in the future. A column that is not a 4- or 8-octet unsigned
/// gives nulls.
fn netflow_times(batch: &RecordBatch, program: &Program, clocks: &[(i64, u32)]) -> Vec<ArrayRef> {
    let boot: Vec<i64> = clocks
        .iter()
        .map(|&(export, uptime)| export - i64::from(uptime))
        .collect();
    let mut out: Vec<ArrayRef> = vec![Arc::new(
        PrimitiveArray::<TimestampMillisecondType>::new(ScalarBuffer::from(boot), None)
            .with_timezone("UTC"),
    )];
    for (uptime, _) in derived_times(program) {
        let column = batch.column_by_name(uptime);
        let values: Vec<Option<i64>> = (0..batch.num_rows())
            .map(|i| {
                let &(export, now) = clocks.get(i)?;
                let then = uptime_at(column?, i)?;
                let back = i64::from(now.wrapping_sub(then).cast_signed());
                Some(export - back)
            })
            .collect();
        out.push(Arc::new(
            PrimitiveArray::<TimestampMillisecondType>::from(values).with_timezone("UTC"),
        ));
    }
    out
}

/// Value `i` of an uptime column as the 32-bit milliseconds it counts.
fn uptime_at(column: &ArrayRef, i: usize) -> Option<u32> {
    if column.is_null(i) {
        return None;
    }
    match column.data_type() {
        DataType::UInt32 => Some(column.as_primitive::<UInt32Type>().value(i)),
        // Sent in 8 octets: the low 32 bits are the uptime clock's.
        DataType::UInt64 => {
            u32::try_from(column.as_primitive::<UInt64Type>().value(i) & u64::from(u32::MAX)).ok()
        }
        _ => None,
    }
}

/// The v5 header's engine type, engine ID, sampling mode and interval, per row.
fn engine_columns(engines: &[netflow5::PacketHeader]) -> Vec<ArrayRef> {
    let column = |f: fn(&netflow5::PacketHeader) -> u8| -> ArrayRef {
        Arc::new(PrimitiveArray::<UInt8Type>::new(
            engines.iter().map(f).collect(),
            None,
        ))
    };
    vec![
        column(|e| e.engine_type),
        column(|e| e.engine_id),
        column(netflow5::PacketHeader::sampling_mode),
        Arc::new(PrimitiveArray::<UInt32Type>::new(
            engines
                .iter()
                .map(|e| u32::from(e.sampling_interval()))
                .collect(),
            None,
        )),
    ]
}
