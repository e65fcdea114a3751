//! The archive's Parquet encoder: arrow-rs's `ArrowWriter` in shape (batches in, row groups
//! out, the footer at the end), with most columns encoded by our own [`Chunk`]s (integer and
//! time columns, text without a dictionary or statistics, Arrow dictionaries of text) and the
//! rest (text with a dictionary, anything nested) by arrow-rs's column writers; each chunk is
//! spliced into its row group in the schema's order. The file's schema, the Arrow schema it
//! carries for readers, and every column's encoding, dictionary, statistics and codec come
//! from the same `WriterProperties` an `ArrowWriter` takes.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::sink::chunk::Chunk;

/// A Parquet file being written from record batches of one schema.
pub struct Encoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// For each leaf column (in the file's order), its [`Chunk`] when one of ours writes it:
    /// kept from one row group to the next, with its codec's context.
    chunks: Vec<Option<Chunk>>,
    /// arrow-rs's writers of the row group in progress, for the leaves without a chunk;
    /// empty between row groups, and when every leaf has a chunk.
    writers: Vec<Option<ArrowColumnWriter>>,
    rows: usize,
    max_rows: usize,
}

impl<W: Write + Send> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("rows_in_progress", &self.rows)
            .field("row_groups", &self.file.flushed_row_groups().len())
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> Encoder<W> {
    /// A file of `schema` written to `writer`: the Parquet magic now, row groups as they fill
    /// or are flushed, the footer at [`Self::into_inner`] or [`Self::finish`].
    ///
    /// # Errors
    /// The schema has no Parquet form, a column's codec has no such level, or writing the
    /// magic failed.
    pub fn try_new(writer: W, schema: SchemaRef, properties: WriterProperties) -> Result<Self> {
        let (file, factory) =
            ArrowWriter::try_new(writer, schema.clone(), Some(properties.clone()))?
                .into_serialized_writer()?;
        // A primitive field is one leaf; a nested one (lists, structs) is several and is left
        // to arrow-rs whole.
        let descriptors = file.schema_descr();
        let mut chunks = Vec::with_capacity(descriptors.num_columns());
        for field in schema.fields() {
            let chunk = match descriptors.columns().get(chunks.len()) {
                Some(descr) if !field.data_type().is_nested() => {
                    Chunk::for_column(field, descr, &properties)?
                }
                _ => None,
            };
            if chunk.is_some() {
                chunks.push(chunk);
            } else {
                let empty = arrow_array::new_empty_array(field.data_type());
                let leaves = compute_leaves(field, &empty)?.len();
                chunks.extend(std::iter::repeat_with(|| None).take(leaves));
            }
        }
        Ok(Self {
            max_rows: properties
                .max_row_group_row_count()
                .unwrap_or(usize::MAX)
                .max(1),
            file,
            factory,
            schema,
            chunks,
            writers: Vec::new(),
            rows: 0,
        })
    }

    /// Encodes `batch` into the row group in progress, which is written out each time it
    /// reaches the properties' row limit.
    ///
    /// # Errors
    /// `batch` is not of the file's schema, or encoding or writing failed; the row group in
    /// progress is then in an unknown state, as `ArrowWriter`'s would be, and the encoder is
    /// to be dropped (the archive completes such a file from its journal).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema_ref().fields() != self.schema.fields() {
            return Err(ParquetError::General(
                "a batch's schema is not the file's".to_owned(),
            ));
        }
        let mut start = 0;
        while start < batch.num_rows() {
            let take = (self.max_rows - self.rows).min(batch.num_rows() - start);
            self.encode(&batch.slice(start, take))?;
            start += take;
            if self.rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.writers.is_empty() && self.chunks.iter().any(Option::is_none) {
            let index = self.file.flushed_row_groups().len();
            self.writers = self
                .factory
                .create_column_writers(index)?
                .into_iter()
                .zip(&self.chunks)
                .map(|(writer, chunk)| chunk.is_none().then_some(writer))
                .collect();
        }
        let mut leaf = 0;
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            if let Some(Some(chunk)) = self.chunks.get_mut(leaf) {
                chunk.write(column.as_ref())?;
                leaf += 1;
                continue;
            }
            for values in compute_leaves(field, column)? {
                let writer = self
                    .writers
                    .get_mut(leaf)
                    .and_then(Option::as_mut)
                    .ok_or_else(|| {
                        ParquetError::General("a batch has more leaves than the file".to_owned())
                    })?;
                writer.write(&values)?;
                leaf += 1;
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Writes the row group in progress out, if it has rows.
    ///
    /// # Errors
    /// Encoding or writing failed.
    pub fn flush(&mut self) -> Result<()> {
        let mut writers = std::mem::take(&mut self.writers).into_iter();
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let mut group = self.file.next_row_group()?;
        for chunk in &mut self.chunks {
            match (chunk, writers.next().flatten()) {
                (Some(chunk), _) => {
                    let (bytes, close) = chunk.finish()?;
                    group.append_column(&bytes, close)?;
                }
                (None, Some(writer)) => writer.close()?.append_to_row_group(&mut group)?,
                (None, None) => {
                    return Err(ParquetError::General(
                        "a leaf column without a writer".to_owned(),
                    ));
                }
            }
        }
        group.close()?;
        Ok(())
    }

    /// Pushes what is buffered on its way to the underlying writer into it.
    ///
    /// # Errors
    /// Writing failed.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// The underlying writer.
    pub fn inner(&self) -> &W {
        self.file.inner()
    }

    /// The row groups written so far.
    pub fn flushed_row_groups(&self) -> &[RowGroupMetaData] {
        self.file.flushed_row_groups()
    }

    /// Octets written to the underlying writer so far.
    pub fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Octets the row group in progress holds, about.
    pub fn in_progress_size(&self) -> usize {
        let chunks: usize = self.chunks.iter().flatten().map(Chunk::size).sum();
        let writers: usize = self
            .writers
            .iter()
            .flatten()
            .map(ArrowColumnWriter::get_estimated_total_bytes)
            .sum();
        chunks + writers
    }

    /// Writes the row group in progress and the footer.
    ///
    /// # Errors
    /// Encoding or writing failed.
    pub fn finish(&mut self) -> Result<ParquetMetaData> {
        self.flush()?;
        self.file.finish()
    }

    /// Writes the row group in progress and the footer, and gives the underlying writer back.
    ///
    /// # Errors
    /// Encoding or writing failed.
    pub fn into_inner(mut self) -> Result<W> {
        self.flush()?;
        self.file.into_inner()
    }
}
