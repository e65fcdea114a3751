//! Columns of one program plus the per-row context the archive adds: exporter, observation
//! domain and export time.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::types::{TimestampSecondType, UInt32Type};
use arrow_array::{
    ArrayRef, DictionaryArray, PrimitiveArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_buffer::ScalarBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use flowvm_vm::wire::ids::ObservationDomainId;
use flowvm_vm::wire::set::Set;
use flowvm_vm::{Columns, DecodeError, Program, RunStats};

/// Name of the column holding the exporter's IP address as text.
pub const EXPORTER: &str = "exporter";
/// Name of the column holding the Observation Domain ID.
pub const OBSERVATION_DOMAIN_ID: &str = "observation_domain_id";
/// Name of the column holding the Message's Export Time.
pub const EXPORT_TIME: &str = "export_time";

/// The schema of the batches for `program`: the three context columns, then the template's.
pub fn schema(program: &Program) -> SchemaRef {
    let mut fields = vec![
        Field::new(
            EXPORTER,
            DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new(OBSERVATION_DOMAIN_ID, DataType::UInt32, false),
        Field::new(
            EXPORT_TIME,
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
    ];
    fields.extend(program.schema().fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

/// Where the rows of one Data Set come from.
#[derive(Clone, Copy, Debug)]
pub struct RowContext<'a> {
    /// The exporter's address as text.
    pub exporter: &'a str,
    /// The Observation Domain of the Message.
    pub domain: ObservationDomainId,
    /// The Export Time of the Message.
    pub export_time: u32,
}

/// A program's columns with the context columns beside them.
#[derive(Debug)]
pub struct Batcher {
    columns: Columns,
    schema: SchemaRef,
    exporters: Vec<Arc<str>>,
    exporter_index: HashMap<Arc<str>, u32>,
    exporter_keys: Vec<u32>,
    domains: Vec<u32>,
    export_times: Vec<i64>,
}

impl Batcher {
    /// Empty columns for `program`.
    pub fn new(program: Arc<Program>) -> Self {
        let schema = schema(&program);
        Self {
            columns: Columns::new(program),
            schema,
            exporters: Vec::new(),
            exporter_index: HashMap::new(),
            exporter_keys: Vec::new(),
            domains: Vec::new(),
            export_times: Vec::new(),
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
        let key = match self.exporter_index.get(context.exporter) {
            Some(&key) => key,
            None => {
                let key = u32::try_from(self.exporters.len()).unwrap_or(u32::MAX);
                let text: Arc<str> = Arc::from(context.exporter);
                self.exporters.push(Arc::clone(&text));
                self.exporter_index.insert(text, key);
                key
            }
        };
        self.exporter_keys.extend(std::iter::repeat_n(key, rows));
        self.domains
            .extend(std::iter::repeat_n(context.domain.0, rows));
        self.export_times
            .extend(std::iter::repeat_n(i64::from(context.export_time), rows));
        Ok(stats)
    }

    /// Hands the buffered rows over; `None` when there are none.
    ///
    /// # Errors
    /// Only if the columns broke an invariant (a bug); the buffers are emptied either way.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(batch) = self.columns.flush()? else {
            return Ok(None);
        };
        let values = StringArray::from_iter_values(self.exporters.drain(..).map(|s| s.to_string()));
        self.exporter_index.clear();
        let keys = UInt32Array::new(
            ScalarBuffer::from(std::mem::take(&mut self.exporter_keys)),
            None,
        );
        let exporter: ArrayRef = Arc::new(DictionaryArray::<UInt32Type>::try_new(
            keys,
            Arc::new(values),
        )?);
        let domains: ArrayRef = Arc::new(PrimitiveArray::<UInt32Type>::new(
            ScalarBuffer::from(std::mem::take(&mut self.domains)),
            None,
        ));
        let times = std::mem::take(&mut self.export_times);
        let times: ArrayRef = Arc::new(
            PrimitiveArray::<TimestampSecondType>::new(ScalarBuffer::from(times), None)
                .with_timezone("UTC"),
        );
        let mut arrays = vec![exporter, domains, times];
        arrays.extend(batch.columns().iter().cloned());
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map(Some)
    }
}
