//! Runs a [`Program`] over Data Sets into Arrow columns (`run`), and hands the columns over as
//! a `RecordBatch` (`flush`).
//!
//! Every Set is checked whole first (record boundaries against the Set Length, RFC 7011 §3.3.1,
//! §11.7), so a malformed Set appends nothing. Then one of two executions fills the columns:
//! record at a time, interpreting the instructions as listed (the general path), or op at a
//! time, each read running once across all records of the Set (fixed-length templates only).
#![deny(clippy::indexing_slicing)]

mod columns;
mod stats;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

pub use stats::RunStats;

use crate::error::DecodeError;
use crate::exec::columns::{Column, One, Strided, append, append_natural};
use crate::op::Op;
use crate::program::{ColumnKind, Program};
use crate::wire::set::Set;

/// How a Set is executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Op at a time when the template has a fixed length, otherwise record at a time.
    #[default]
    Auto,
    /// Interpret the instructions record by record.
    RecordAtATime,
    /// Run each read across all records of the Set; falls back to record at a time for
    /// templates with variable-length fields.
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
        let len = set.body.len();
        if let Some(record_len) = self.record_len.filter(|&l| l > 0) {
            return Ok(SetShape {
                records: len / record_len,
                padding: len % record_len,
            });
        }
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
#[derive(Debug)]
pub struct Columns {
    program: Arc<Program>,
    cols: Vec<Column>,
    rows: usize,
    /// Rows the next batch is expected to hold; the capacity buffers are re-created with.
    capacity: usize,
}

impl Columns {
    /// Empty buffers for `program`.
    pub fn new(program: Arc<Program>) -> Self {
        let cols = program.kinds.iter().map(|&k| Column::new(k, 0)).collect();
        Self {
            program,
            cols,
            rows: 0,
            capacity: 0,
        }
    }

    /// The program these columns belong to.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Rows buffered since the last flush.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Octets of variable-length content buffered; flush before it nears `i32::MAX`, the
    /// limit of Arrow's 32-bit offsets (a Set adds at most 65535).
    pub fn var_bytes(&self) -> usize {
        self.cols.iter().map(Column::var_bytes).sum()
    }

    /// Checks `set`, then decodes every record in it, choosing the execution by [`Mode::Auto`].
    ///
    /// # Errors
    /// Those of [`Program::check`]; nothing is appended then.
    pub fn run(&mut self, set: &Set<'_>) -> Result<RunStats, DecodeError> {
        self.run_with(set, Mode::Auto)
    }

    /// Checks `set`, then decodes every record in it the way `mode` says.
    ///
    /// # Errors
    /// Those of [`Program::check`]; nothing is appended then.
    pub fn run_with(&mut self, set: &Set<'_>, mode: Mode) -> Result<RunStats, DecodeError> {
        let shape = self.program.check(set)?;
        let before = self.rows;
        let program = Arc::clone(&self.program);
        for (col, kind) in self.cols.iter_mut().zip(&program.kinds) {
            col.reserve(shape.records, fixed_width(*kind));
        }
        let result = match (mode, program.record_len) {
            (Mode::Auto | Mode::OpAtATime, Some(record_len)) => {
                Ok(self.run_ops(&program, set, record_len, shape.records))
            }
            _ => self.run_records(&program, set, shape.records),
        };
        match result {
            Ok(invalid_values) => Ok(RunStats {
                records: u64::try_from(shape.records).unwrap_or(u64::MAX),
                padding_octets: u64::try_from(shape.padding).unwrap_or(u64::MAX),
                invalid_values,
            }),
            Err(e) => {
                // Unreachable after a successful check; undo rather than leave ragged columns.
                self.truncate(before);
                Err(e)
            }
        }
    }

    /// Op at a time: each read runs once over the whole Set, as a loop from its offset.
    fn run_ops(
        &mut self,
        program: &Program,
        set: &Set<'_>,
        record_len: usize,
        records: usize,
    ) -> u64 {
        let data = set.body.get(..records * record_len).unwrap_or_default();
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
        self.rows += records;
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

    fn truncate(&mut self, rows: usize) {
        for (col, kind) in self.cols.iter_mut().zip(&self.program.kinds) {
            col.truncate(rows, fixed_width(*kind));
        }
        self.rows = rows;
    }

    /// Hands the buffered rows over as a `RecordBatch`; `None` when no row is buffered.
    ///
    /// # Errors
    /// An Arrow error would mean the columns broke an invariant of this module (a bug); the
    /// buffers are emptied either way.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        self.capacity = rows;
        let mut arrays = Vec::with_capacity(self.cols.len());
        for (col, &kind) in self.cols.iter_mut().zip(&self.program.kinds) {
            arrays.push(col.take(kind, self.capacity));
        }
        let arrays = arrays.into_iter().collect::<Result<Vec<_>, _>>()?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(self.program.schema()), arrays, &options)
            .map(Some)
    }
}
