//! Runs a [`Program`] over Data Sets into Arrow columns (`run`), and hands the columns over as
//! a `RecordBatch` (`flush`).
//!
//! Every Set is checked whole first (record boundaries against the Set Length, RFC 7011 §3.3.1,
//! §11.7), so a malformed Set appends nothing. Then one of two executions fills the columns:
//! record at a time, interpreting the instructions as listed (the general path), or op at a
//! time, each read running once across all records of the Set. For fixed-length templates a
//! field sits at the same offset in every record; for variable-length ones the check notes the
//! bounds of every record (its start, and where each variable-length field's content starts
//! and ends) in a scratch buffer kept with the columns, and each read finds its field from
//! those.
#![deny(clippy::indexing_slicing)]

mod columns;
mod spares;
mod stats;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

pub use spares::Spares;
pub use stats::RunStats;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::exec::columns::{Based, Column, One, Strided, append, append_natural, append_var};
use crate::op::Op;
use crate::program::{ColumnKind, Place, Program};
use crate::wire::set::Set;

/// How a Set is executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The faster execution: op at a time, for every template.
    #[default]
    Auto,
    /// Interpret the instructions record by record.
    RecordAtATime,
    /// Run each read across all records of the Set, variable-length templates included.
    OpAtATime,
}

/// The shape of a checked Data Set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetShape {
    /// Whole Data Records in the Set.
    pub records: usize,
    /// Octets after the last record: padding, shorter than the shortest record.
    pub padding: usize,
}

impl Program {
    /// Checks that `set` holds whole records followed by padding, reading only the length
    /// prefixes of variable-length fields; appends nothing.
    ///
    /// # Errors
    /// [`DecodeErrorKind::Truncated`](crate::DecodeErrorKind::Truncated) when a record runs
    /// past the end of the Set.
    pub fn check(&self, set: &Set<'_>) -> Result<SetShape, DecodeError> {
        self.check_marking(set, |_| {})
    }

    /// [`check`](Self::check), handing `mark` the bounds of every record of a variable-length
    /// template in order (see [`Program::bounds_per_record`]); never calls it for fixed-length
    /// ones, whose records need no bounds.
    fn check_marking(
        &self,
        set: &Set<'_>,
        mark: impl FnMut(usize),
    ) -> Result<SetShape, DecodeError> {
        let len = set.body.len();
        if let Some(record_len) = self.record_len.filter(|&l| l > 0) {
            return Ok(SetShape {
                records: len / record_len,
                padding: len % record_len,
            });
        }
        match self.walk(set.body, mark) {
            Some(shape) => Ok(shape),
            // Cold: walk again op by op for the offset of the read that failed.
            None => match self.check_ops(set) {
                Err(e) => Err(e),
                // Unreachable: both walks test the same lengths. Refuse the Set all the same.
                Ok(_) => Err(DecodeError::new(DecodeErrorKind::Truncated, set.offset)),
            },
        }
    }

    /// The check of a variable-length template over the gaps between its variable-length
    /// fields, one bounds check per gap and field rather than one per instruction. `None` when
    /// a record runs past the end of `body`; [`check_ops`](Self::check_ops) then says where.
    #[inline]
    fn walk(&self, body: &[u8], mut mark: impl FnMut(usize)) -> Option<SetShape> {
        let (&tail, gaps) = self.gaps.split_last()?;
        let mut pos = 0;
        let mut records = 0;
        // Positions stay at most `body.len()` between steps, and gaps and lengths are at most
        // `max_fields * 65535`: no step can overflow. `min_record_len >= 1` is a compile-time
        // invariant; the `pos < len` check keeps a broken invariant from looping forever.
        while pos < body.len() && body.len() - pos >= self.min_record_len {
            mark(pos);
            for &gap in gaps {
                pos += gap;
                //= https://www.rfc-editor.org/rfc/rfc7011#section-7
                //# In this case, the first octet of the Length field MUST be 255, and
                //# the length is carried in the second and third octets, as shown in
                //# Figure S.
                let (start, field_len) = match *body.get(pos)? {
                    255 => {
                        let long = body.get(pos + 1..)?.first_chunk::<2>()?;
                        (pos + 3, usize::from(u16::from_be_bytes(*long)))
                    }
                    short => (pos + 1, usize::from(short)),
                };
                pos = start + field_len;
                if pos > body.len() {
                    return None;
                }
                mark(start);
                mark(pos);
            }
            pos += tail;
            if pos > body.len() {
                return None;
            }
            records += 1;
        }
        Some(SetShape {
            records,
            padding: body.len().saturating_sub(pos),
        })
    }

    /// The check as the instructions read, one take per field: the reference the fast walk
    /// must agree with, and the source of exact error offsets.
    fn check_ops(&self, set: &Set<'_>) -> Result<SetShape, DecodeError> {
        let mut r = set.reader();
        let mut records = 0;
        // `min_record_len >= 1` is a compile-time invariant; the `is_empty` check keeps a
        // broken invariant from becoming an infinite loop.
        while !r.is_empty() && r.len() >= self.min_record_len {
            for op in &self.ops {
                match op.wire_len() {
                    Some(0) => {}
                    Some(n) => {
                        r.take(n)?;
                    }
                    None => {
                        r.var_len()?;
                    }
                }
            }
            records += 1;
        }
        Ok(SetShape {
            records,
            padding: r.len(),
        })
    }
}

/// Octets a row takes in a fixed-width binary column (6 for MAC addresses, 16 for IPv6);
/// unused by other kinds.
fn fixed_width(kind: ColumnKind) -> usize {
    match kind {
        ColumnKind::MacAddress => 6,
        _ => 16,
    }
}

/// The column buffers of one [`Program`], filled by `run` and emptied by `flush`.
///
/// The mutable cache to the program's immutable plan: each worker owns one per live template.
///
/// Op at a time pays for each read once per run, whatever the records: over the small Sets of
/// routers that interleave templates (a few records each) that cost dominates. So op at a
/// time stages records instead: a Set is checked (and a variable-length one's record bounds
/// noted), its records copied whole into a buffer, and the reads run over the staged records
/// once [`STAGE_OCTETS`] have gathered, or at the flush. Rows and their order are the same;
/// invalid values are counted when their records are read: by a later run, or at the flush
/// ([`Columns::take_invalid_values`]).
#[derive(Debug)]
pub struct Columns {
    program: Arc<Program>,
    /// Apart from the program, so a Set is run with the program borrowed, not shared anew
    /// (no atomic count up and down per Set).
    buf: Buffers,
    /// Rows the next batch is expected to hold; the capacity buffers are re-created with.
    capacity: usize,
    /// The columns of variable-length content (strings, octet arrays), the only ones
    /// [`var_bytes`](Self::var_bytes) reads: a collector asks after every Set.
    var_columns: Vec<usize>,
}

/// The buffers [`Columns`] fills.
#[derive(Debug)]
struct Buffers {
    cols: Vec<Column>,
    /// Rows held, staged ones included.
    rows: usize,
    /// Op at a time over variable-length templates: the bounds of every staged record,
    /// [`Program::bounds_per_record`] per record, as offsets into `staged`. Cleared, not
    /// freed, when the records are read, so a steady stream of Sets does not allocate.
    bounds: Vec<usize>,
    /// Whole records staged by op at a time and not yet read into the columns.
    staged: Vec<u8>,
    /// Invalid values met reading staged records, not yet reported.
    invalid: u64,
}

/// Octets of staged records that are read into the columns at once: enough records to pay
/// for each read's set-up many times over, few enough to stay in the first-level cache
/// while every read strides over them.
const STAGE_OCTETS: usize = 16 * 1024;

/// Bounds kept in [`Buffers::bounds`] across a flush (32 KiB), more than a 1400-octet Set of
/// realistic records needs. Beyond this, the scratch of a jumbo Set is given back at the flush
/// rather than held for the life of the template.
const KEEP_BOUNDS: usize = 4096;

impl Columns {
    /// Empty buffers for `program`.
    pub fn new(program: Arc<Program>) -> Self {
        let cols: Vec<Column> = program.kinds.iter().map(|&k| Column::new(k, 0)).collect();
        let var_columns = (0..cols.len())
            .filter(|&i| matches!(cols.get(i), Some(Column::Var { .. })))
            .collect();
        Self {
            program,
            buf: Buffers {
                cols,
                rows: 0,
                bounds: Vec::new(),
                staged: Vec::new(),
                invalid: 0,
            },
            capacity: 0,
            var_columns,
        }
    }

    /// The program these columns belong to.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Rows buffered since the last flush.
    pub fn rows(&self) -> usize {
        self.buf.rows
    }

    /// Octets of variable-length content buffered; flush before it nears `i32::MAX`, the
    /// limit of Arrow's 32-bit offsets (a Set adds at most 65535).
    pub fn var_bytes(&self) -> usize {
        self.var_columns
            .iter()
            .filter_map(|&i| self.buf.cols.get(i))
            .map(Column::var_bytes)
            .sum()
    }

    /// Checks `set`, then decodes every record in it, choosing the execution by [`Mode::Auto`].
    ///
    /// # Errors
    /// Those of [`Program::check`]; nothing is appended then.
    pub fn run(&mut self, set: &Set<'_>) -> Result<RunStats, DecodeError> {
        self.run_with(set, Mode::Auto)
    }

    /// Checks `set`, then decodes every record in it the way `mode` says (op at a time stages
    /// them: see [`Columns`]).
    ///
    /// # Errors
    /// Those of [`Program::check`]; nothing is appended then.
    pub fn run_with(&mut self, set: &Set<'_>, mode: Mode) -> Result<RunStats, DecodeError> {
        let program = &*self.program;
        let buf = &mut self.buf;
        if matches!(mode, Mode::Auto | Mode::OpAtATime) {
            return buf.stage(program, set);
        }
        let shape = program.check(set)?;
        let before = buf.rows;
        for (col, kind) in buf.cols.iter_mut().zip(&program.kinds) {
            col.reserve(shape.records, fixed_width(*kind));
        }
        let result = buf.run_records(program, set, shape.records);
        match result {
            Ok(invalid_values) => Ok(RunStats {
                records: u64::try_from(shape.records).unwrap_or(u64::MAX),
                padding_octets: u64::try_from(shape.padding).unwrap_or(u64::MAX),
                invalid_values,
            }),
            Err(e) => {
                // Unreachable after a successful check; undo rather than leave ragged columns.
                buf.truncate(program, before);
                Err(e)
            }
        }
    }

    /// Invalid values met when the last [`flush`](Self::flush) read the staged records: values
    /// no run has reported, to be added to the runs' counts.
    pub fn take_invalid_values(&mut self) -> u64 {
        std::mem::take(&mut self.buf.invalid)
    }

    /// Hands the buffered rows over as a `RecordBatch`; `None` when no row is buffered.
    ///
    /// # Errors
    /// An Arrow error would mean the columns broke an invariant of this module (a bug); the
    /// buffers are emptied either way.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.flush_with(&mut Spares::default())
    }

    /// [`flush`](Self::flush), the next batch's buffers taken from `spares` where it has them.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn flush_with(&mut self, spares: &mut Spares) -> Result<Option<RecordBatch>, ArrowError> {
        if self.buf.rows == 0 {
            return Ok(None);
        }
        self.buf.read_staged(&self.program);
        self.buf.staged.shrink_to(STAGE_OCTETS * 2);
        let rows = std::mem::take(&mut self.buf.rows);
        // A collector hands a batch over at the first Set that takes it past a row count, so
        // batches differ by part of a Set: without room for that, every batch a few rows longer
        // than the one before grew (copied) each column at its end.
        self.capacity = rows + rows / 32;
        self.buf.bounds.shrink_to(KEEP_BOUNDS);
        let mut arrays = Vec::with_capacity(self.buf.cols.len());
        for (col, &kind) in self.buf.cols.iter_mut().zip(&self.program.kinds) {
            arrays.push(col.take(kind, self.capacity, spares));
        }
        let arrays = arrays.into_iter().collect::<Result<Vec<_>, _>>()?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(self.program.schema()), arrays, &options)
            .map(Some)
    }
}

impl Buffers {
    /// Op at a time: checks `set` (noting a variable-length template's record bounds), stages
    /// its records, and reads the staged records once [`STAGE_OCTETS`] have gathered.
    fn stage(&mut self, program: &Program, set: &Set<'_>) -> Result<RunStats, DecodeError> {
        let start = self.staged.len();
        let marked = self.bounds.len();
        let bounds = &mut self.bounds;
        let shape = match program.check_marking(set, |b| bounds.push(start + b)) {
            Ok(shape) => shape,
            Err(e) => {
                self.bounds.truncate(marked);
                return Err(e);
            }
        };
        let end = set.body.len() - shape.padding;
        self.staged
            .extend_from_slice(set.body.get(..end).unwrap_or_default());
        self.rows += shape.records;
        if self.staged.len() >= STAGE_OCTETS {
            self.read_staged(program);
        }
        Ok(RunStats {
            records: u64::try_from(shape.records).unwrap_or(u64::MAX),
            padding_octets: u64::try_from(shape.padding).unwrap_or(u64::MAX),
            invalid_values: std::mem::take(&mut self.invalid),
        })
    }

    /// Reads the staged records into the columns (their rows are already counted), adding the
    /// invalid values met to those not yet reported.
    fn read_staged(&mut self, program: &Program) {
        // Records are at least one octet long (a compile-time invariant): none staged, no
        // octets staged.
        if self.staged.is_empty() {
            return;
        }
        let records = match program.record_len {
            Some(record_len) => self.staged.len() / record_len.max(1),
            None => self.bounds.len() / program.bounds_per_record(),
        };
        let staged = std::mem::take(&mut self.staged);
        for (col, kind) in self.cols.iter_mut().zip(&program.kinds) {
            col.reserve(records, fixed_width(*kind));
        }
        self.invalid += match program.record_len {
            Some(record_len) => self.run_ops(program, &staged, record_len),
            None => self.run_var_ops(program, &staged, records),
        };
        self.staged = staged;
        self.staged.clear();
        self.bounds.clear();
    }

    /// Op at a time over `data`, whole records of `record_len` octets: each read runs once
    /// over all of them, as a loop from its offset. Returns the invalid values met.
    fn run_ops(&mut self, program: &Program, data: &[u8], record_len: usize) -> u64 {
        let mut invalid = 0;
        for &(op, offset) in &program.fixed {
            let len = op.wire_len().unwrap_or(0);
            let Some(col) = op.column().and_then(|c| self.cols.get_mut(usize::from(c))) else {
                continue;
            };
            if append_natural(
                op,
                col,
                Strided {
                    data,
                    record_len,
                    offset,
                },
            ) {
                continue;
            }
            let fields = data
                .chunks_exact(record_len)
                .map(|r| r.get(offset..offset + len).unwrap_or_default());
            invalid += append(op, col, fields);
        }
        invalid
    }

    /// Op at a time over `data`, the staged records of a variable-length template: each read
    /// runs once over all of them, finding its field in every record from the bounds the
    /// checks noted. Returns the invalid values met.
    fn run_var_ops(&mut self, program: &Program, data: &[u8], records: usize) -> u64 {
        let stride = program.bounds_per_record();
        // The check noted exactly `records` rows of bounds, each within `data`, and the
        // compiler placed every fixed field inside its record: the fallbacks are never used.
        let rows = self.bounds.get(..records * stride).unwrap_or_default();
        let mut invalid = 0;
        for &(op, place) in &program.placed {
            let Some(col) = op.column().and_then(|c| self.cols.get_mut(usize::from(c))) else {
                continue;
            };
            match place {
                Place::Fixed { base, offset } => {
                    let fields = Based {
                        data,
                        rows,
                        stride,
                        base,
                        offset,
                    };
                    if append_natural(op, col, fields) {
                        continue;
                    }
                    let len = op.wire_len().unwrap_or(0);
                    let fields = rows.chunks_exact(stride).map(|row| {
                        let at = row.get(base).map_or(0, |&b| b + offset);
                        data.get(at..at + len).unwrap_or_default()
                    });
                    invalid += append(op, col, fields);
                }
                Place::Var { start } => {
                    let spans = rows.chunks_exact(stride).map(|row| match row.get(start..) {
                        Some(&[from, to, ..]) => (from, to),
                        _ => (0, 0),
                    });
                    invalid += append_var(op, col, data, spans);
                }
            }
        }
        invalid
    }

    /// Record at a time: interprets the instructions as the listing reads.
    fn run_records(
        &mut self,
        program: &Program,
        set: &Set<'_>,
        records: usize,
    ) -> Result<u64, DecodeError> {
        let mut r = set.reader();
        let mut pc = 0;
        let mut left = records;
        let mut invalid = 0;
        while let Some(&op) = program.ops.get(pc) {
            pc += 1;
            match op {
                Op::Jnmb { target } => {
                    if left == 0 || r.len() < program.min_record_len {
                        pc = usize::from(target);
                    }
                }
                Op::Nr => {}
                Op::Adv => {
                    left -= 1; // JNMB let this record start only while `left > 0`
                    self.rows += 1;
                }
                Op::Jmp { target } => pc = usize::from(target),
                Op::End => break,
                Op::Skip { len } => {
                    r.take(usize::from(len))?;
                }
                Op::Skipv => {
                    r.var_len()?;
                }
                read => {
                    let (col, len) = program
                        .operands
                        .get(pc - 1)
                        .copied()
                        .unwrap_or((None, Some(0)));
                    let field = match len {
                        Some(n) => r.take(n)?,
                        None => r.var_len()?,
                    };
                    if let Some(col) = col.and_then(|c| self.cols.get_mut(usize::from(c)))
                        && !append_natural(read, col, One(field))
                    {
                        invalid += append(read, col, std::iter::once(field));
                    }
                }
            }
        }
        Ok(invalid)
    }

    fn truncate(&mut self, program: &Program, rows: usize) {
        for (col, kind) in self.cols.iter_mut().zip(&program.kinds) {
            col.truncate(rows, fixed_width(*kind));
        }
        self.rows = rows;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Compiler;
    use crate::wire::VARIABLE_LENGTH;
    use crate::wire::ids::{SetId, TemplateId};
    use crate::wire::template::{FieldSpecifier, TemplateDef};

    /// Fields of every kind the walk treats differently: fixed reads, skipped padding, kept and
    /// skipped variable-length fields.
    const FIELDS: [(u16, u16); 7] = [
        (8, 4),
        (1, 8),
        (4, 1),
        (210, 3),
        (82, VARIABLE_LENGTH),
        (96, VARIABLE_LENGTH),
        (210, VARIABLE_LENGTH),
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        /// The walk over gaps finds the same records and padding as the walk op by op, and
        /// fails where it fails, at the same offset.
        #[test]
        fn the_walk_over_gaps_agrees_with_the_walk_op_by_op(
            fields in proptest::collection::vec(0..FIELDS.len(), 1..6),
            body in proptest::collection::vec(prop_oneof![any::<u8>(), 0_u8..4, Just(255_u8)], 0..300),
        ) {
            let def = TemplateDef {
                template_id: TemplateId(256),
                scope_field_count: 0,
                fields: fields
                    .iter()
                    .filter_map(|&i| FIELDS.get(i))
                    .map(|&(id, len)| FieldSpecifier::iana(id, len))
                    .collect(),
            };
            let Ok(program) = Compiler::default().compile(&def) else {
                return Ok(());
            };
            let set = Set { id: SetId(256), body: &body, offset: 20 };
            let mut bounds = Vec::new();
            let marked = program.check_marking(&set, |b| bounds.push(b));
            prop_assert_eq!(marked, program.check_ops(&set));
            if let (Ok(shape), None) = (marked, program.record_len()) {
                prop_assert_eq!(bounds.len(), shape.records * program.bounds_per_record());
            }
        }
    }

    /// Capacities of the scratch and of every variable-width buffer.
    fn capacities(cols: &Columns) -> Vec<usize> {
        let mut out = vec![cols.buf.bounds.capacity()];
        for col in &cols.buf.cols {
            if let Column::Var { offsets, values } = col {
                out.extend([offsets.capacity(), values.capacity()]);
            }
        }
        out
    }

    /// A Data Set of template 256 with `body`.
    fn data_set(body: &[u8]) -> Set<'_> {
        Set {
            id: SetId(256),
            body,
            offset: 20,
        }
    }

    /// Empty columns for the program of `def`.
    fn columns_of(def: &TemplateDef) -> Columns {
        let program = Compiler::default().compile(def).map(Arc::new);
        Columns::new(program.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_batch_like_the_last_one_grows_no_buffer() {
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: vec![
                FieldSpecifier::iana(8, 4),
                FieldSpecifier::iana(82, VARIABLE_LENGTH),
                FieldSpecifier::iana(96, VARIABLE_LENGTH),
            ],
        };
        let mut body = Vec::new();
        for n in 0..40_u8 {
            body.extend([10, 0, 0, n, n % 31]);
            body.extend((0..n % 31).map(|i| b'a' + i % 26));
            body.extend([3, b'd', b'n', b's']);
        }
        let set = data_set(&body);
        let mut cols = columns_of(&def);
        for _ in 0..3 {
            assert_eq!(cols.run(&set).map(|s| s.records), Ok(40));
        }
        assert!(cols.flush().is_ok_and(|b| b.is_some()));
        let before = capacities(&cols);
        for _ in 0..3 {
            assert_eq!(cols.run(&set).map(|s| s.records), Ok(40));
            assert_eq!(capacities(&cols), before);
        }
    }

    #[test]
    fn a_batch_a_part_of_a_set_longer_than_the_last_grows_no_column() {
        // As a collector hands batches over: at the first Set past a row count, so one batch
        // is 64 Sets of 40 records and the next 66.
        let def = TemplateDef::of_iana(TemplateId(256), &[(8, 4), (1, 8)]);
        let body: Vec<u8> = (0..40_u8)
            .flat_map(|n| [10, 0, 0, n, 0, 0, 0, 0, 0, 0, 0, n])
            .collect();
        let set = data_set(&body);
        let mut cols = columns_of(&def);
        for _ in 0..64 {
            assert_eq!(cols.run(&set).map(|s| s.records), Ok(40));
        }
        assert!(
            cols.flush()
                .is_ok_and(|b| b.is_some_and(|b| b.num_rows() == 2560))
        );
        for _ in 0..66 {
            assert_eq!(cols.run(&set).map(|s| s.records), Ok(40));
        }
        let batch = cols
            .flush()
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no batch"));
        assert_eq!(batch.num_rows(), 2640);
        // Each column's buffer as the last flush made it (room for 2640 rows): never grown
        // (doubled) on the way.
        for (column, width) in batch.columns().iter().zip([4, 8]) {
            let capacity = column.to_data().buffers()[0].capacity();
            assert!(capacity < 2 * 2560 * width, "{capacity}");
        }
    }

    /// Records staged over many Sets, read at the stage's bound and at the flush, give the
    /// rows record at a time gives, in order, for fixed- and variable-length templates; every
    /// invalid value is counted once, by a later run or at the flush.
    #[test]
    fn staged_records_read_at_the_bound_and_the_flush_equal_record_at_a_time() {
        let template = |fields: &[(u16, u16)]| TemplateDef::of_iana(TemplateId(256), fields);
        // Fixed: addresses, a reduced counter, MAC, time and a boolean (invalid unless 1 or
        // 2). Variable: a string (invalid where 0xff lands in it) between fixed fields.
        let fixed = template(&[(8, 4), (1, 4), (27, 16), (56, 6), (152, 8), (276, 1)]);
        let var = template(&[(8, 4), (82, VARIABLE_LENGTH), (1, 8)]);
        for def in [fixed, var] {
            let program = Arc::new(
                Compiler::default()
                    .compile(&def)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
            let octet = |s: usize, i: usize| u8::try_from((s * 31 + i * 7) % 256).unwrap_or(0);
            // Sets of 7 records, then padding shorter than a record: the stage's 16 KiB is no
            // whole number of Sets.
            let sets: Vec<Vec<u8>> = (0..300)
                .map(|s| {
                    let mut body = Vec::new();
                    for r in 0..7 {
                        match program.record_len() {
                            Some(len) => body.extend((0..len).map(|i| octet(s, r * len + i))),
                            None => {
                                let text = (s + r) % 23;
                                body.extend([10, 0, 0, octet(s, r)]);
                                body.push(u8::try_from(text).unwrap_or(0));
                                body.extend((0..text).map(|i| b'a' + octet(s, i) % 26));
                                if s % 5 == 0 && text > 0 {
                                    let last = body.len() - 1;
                                    body[last] = 0xff;
                                }
                                body.extend(u64::try_from(s).unwrap_or(0).to_be_bytes());
                            }
                        }
                    }
                    body.extend([0; 3]);
                    body
                })
                .collect();
            let run = |mode| {
                let mut cols = Columns::new(Arc::clone(&program));
                let mut invalid = 0;
                for body in &sets {
                    let set = Set {
                        id: SetId(256),
                        body,
                        offset: 20,
                    };
                    let stats = cols.run_with(&set, mode).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!((stats.records, stats.padding_octets), (7, 3));
                    invalid += stats.invalid_values;
                }
                assert_eq!(cols.rows(), 2100);
                let batch = cols.flush().unwrap_or_else(|e| panic!("{e}"));
                (batch, invalid + cols.take_invalid_values())
            };
            let (by_op, op_invalid) = run(Mode::OpAtATime);
            let (by_record, record_invalid) = run(Mode::RecordAtATime);
            assert_eq!(by_op, by_record);
            assert_eq!(op_invalid, record_invalid);
            assert!(op_invalid > 0);
            assert_eq!(by_op.map(|b| b.num_rows()), Some(2100));
        }
    }

    #[test]
    fn places_follow_the_last_variable_length_field() {
        let def = TemplateDef {
            template_id: TemplateId(256),
            scope_field_count: 0,
            fields: [
                (8, 4),
                (82, VARIABLE_LENGTH),
                (210, 2),
                (1, 8),
                (96, VARIABLE_LENGTH),
            ]
            .iter()
            .map(|&(id, len)| FieldSpecifier::iana(id, len))
            .collect(),
        };
        let program = Compiler::default()
            .compile(&def)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(program.gaps, [4, 10, 0]);
        assert_eq!(program.bounds_per_record(), 5);
        let places: Vec<_> = program.placed.iter().map(|&(_, place)| place).collect();
        assert_eq!(
            places,
            [
                Place::Fixed { base: 0, offset: 0 },
                Place::Var { start: 1 },
                Place::Fixed { base: 2, offset: 2 },
                Place::Var { start: 3 },
            ]
        );
    }
}
