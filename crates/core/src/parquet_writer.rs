//! Writing one Parquet object of the lake from a stream of record batches, for every
//! stage that writes tables (ingest's raw tables, the models' marts). The object is
//! streamed through a multipart upload that completes only at the end: it appears whole,
//! or not at all, and a failed write leaves the previous object readable.
//!
//! The columns of each row group are encoded in parallel, one blocking task per column,
//! while the stream produces the next row group's rows (with arrow's one writer,
//! encoding and zstd were one core's work: 55M rows of `attribution_credits` took 19 s).
//! Not DataFusion's Parquet sink, which does the same: it reserves its buffers in the
//! query's memory pool without being able to spill, so a model whose sort had filled
//! the pool failed while writing.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use tokio::io::AsyncWriteExt;

use crate::error::CoreError;
use crate::lake::Lake;

/// Streams `batches` (of `schema`) into the Parquet object `relative` of the lake;
/// returns the rows written. An error of the stream is returned as it is; errors of
/// encoding or upload name the object.
pub async fn write_parquet<E, S>(
    lake: &Lake,
    relative: &str,
    schema: SchemaRef,
    properties: WriterProperties,
    mut batches: S,
) -> Result<u64, E>
where
    E: From<CoreError>,
    S: Stream<Item = Result<RecordBatch, E>> + Unpin,
{
    let error = |e: &dyn std::fmt::Display| {
        E::from(CoreError::Lake {
            url: lake.url_of(relative),
            message: format!("writing Parquet: {e}"),
        })
    };
    let row_group_rows = properties
        .max_row_group_row_count()
        .unwrap_or(1 << 20)
        .max(1);
    let (mut file, columns) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(|e| error(&e))?;
    // Dropping the object writer before its shutdown aborts the multipart upload: the
    // previous object stays.
    let mut object = object_store::buffered::BufWriter::new(lake.store(), lake.path(relative));
    let mut pending: Vec<RecordBatch> = vec![];
    let mut pending_rows = 0;
    let mut row_groups = 0;
    let mut rows = 0;
    // One row group is encoded while the stream produces the next one's rows.
    let mut encoding: Option<Vec<ColumnTask>> = None;
    while let Some(batch) = batches.next().await {
        let mut batch = batch?;
        rows += batch.num_rows() as u64;
        while pending_rows + batch.num_rows() >= row_group_rows {
            let take = row_group_rows - pending_rows;
            pending.push(batch.slice(0, take));
            batch = batch.slice(take, batch.num_rows() - take);
            if let Some(tasks) = encoding.take() {
                append_row_group(&mut file, tasks)
                    .await
                    .map_err(|e| error(&e))?;
                let bytes = std::mem::take(file.inner_mut());
                object.write_all(&bytes).await.map_err(|e| error(&e))?;
            }
            let group = std::mem::take(&mut pending);
            encoding = Some(
                encode_row_group(&columns, row_groups, &schema, group).map_err(|e| error(&e))?,
            );
            row_groups += 1;
            pending_rows = 0;
        }
        if batch.num_rows() > 0 {
            pending_rows += batch.num_rows();
            pending.push(batch);
        }
    }
    let streamed = std::time::Instant::now();
    if let Some(tasks) = encoding.take() {
        append_row_group(&mut file, tasks)
            .await
            .map_err(|e| error(&e))?;
    }
    if pending_rows > 0 {
        let tasks =
            encode_row_group(&columns, row_groups, &schema, pending).map_err(|e| error(&e))?;
        append_row_group(&mut file, tasks)
            .await
            .map_err(|e| error(&e))?;
    }
    file.finish().map_err(|e| error(&e))?;
    let bytes = std::mem::take(file.inner_mut());
    object.write_all(&bytes).await.map_err(|e| error(&e))?;
    object.shutdown().await.map_err(|e| error(&e))?;
    tracing::debug!(
        object = relative,
        rows,
        row_groups = row_groups + usize::from(pending_rows > 0),
        seconds_after_input = format!("{:.2}", streamed.elapsed().as_secs_f64()),
        "parquet written"
    );
    Ok(rows)
}

/// A column of a row group being encoded.
type ColumnTask = tokio::task::JoinHandle<parquet::errors::Result<ArrowColumnChunk>>;

/// Starts encoding one row group: one blocking task per column.
fn encode_row_group(
    columns: &ArrowRowGroupWriterFactory,
    index: usize,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> parquet::errors::Result<Vec<ColumnTask>> {
    let writers = columns.create_column_writers(index)?;
    let mut leaves: Vec<Vec<ArrowLeafColumn>> = writers.iter().map(|_| vec![]).collect();
    for batch in &batches {
        let mut leaf = 0;
        for (array, field) in batch.columns().iter().zip(schema.fields()) {
            for column in compute_leaves(field, array)? {
                if let Some(slot) = leaves.get_mut(leaf) {
                    slot.push(column);
                }
                leaf += 1;
            }
        }
    }
    Ok(writers
        .into_iter()
        .zip(leaves)
        .map(|(mut writer, leaves)| {
            tokio::task::spawn_blocking(move || {
                for leaf in &leaves {
                    writer.write(leaf)?;
                }
                writer.close()
            })
        })
        .collect())
}

/// Waits for a row group's columns, in order, and appends them to the file.
async fn append_row_group(
    file: &mut SerializedFileWriter<Vec<u8>>,
    tasks: Vec<ColumnTask>,
) -> parquet::errors::Result<()> {
    let mut row_group = file.next_row_group()?;
    for task in tasks {
        let chunk = task
            .await
            .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))??;
        chunk.append_to_row_group(&mut row_group)?;
    }
    row_group.close()?;
    Ok(())
}
