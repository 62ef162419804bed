//! crmflow-ingest: vendor exports -> canonical Parquet tables in the lake.
//!
//! For one source: list its files ([`inputs`]), read each as chunks of whole records
//! ([`chunks`]), parse the chunks with the source kind's format ([`formats`]) on every
//! core ([`parallel`]), into a staging area that applies the
//! cut-off and quarantines bad rows ([`stage`]), spill the staged rows by business date
//! with a key index that is deduplicated one bucket at a time ([`spill`]), and write one
//! Parquet object per table and business date, plus the quarantine ([`write`]). Memory
//! holds a few chunks, a bucket or a row group, never a source.

pub mod chunks;
pub mod error;
pub mod formats;
pub mod inputs;
pub mod memory;
pub mod parallel;
pub mod spill;
pub mod spill_file;
pub mod stage;
pub mod text;
pub mod write;

use std::path::Path;

use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use crmflow_core::config::{Job, SourceConfig};
use crmflow_core::lake::Lake;
use crmflow_core::normalize::end_of_day_micros;
use crmflow_core::runs::SourceCounts;

use chunks::{Chunk, ChunkReader};
pub use error::{IngestError, Result};
use formats::{Format, ParseOptions, format_for};
use spill::Spill;
use stage::Staging;

/// The input files of a source (its location: a path, a glob or an object-store URL).
pub async fn list_source(job: &Job, source: &SourceConfig) -> Result<Vec<inputs::InputFile>> {
    let location = job.source_location(source);
    inputs::list_inputs(&location, &source.storage_options).await
}

/// Ingests one source of a job for `as_of` from its files (listed with
/// [`list_source`]): replaces the date partitions it has rows for and its quarantine
/// partition of `as_of`; returns the counts.
pub async fn ingest_files(
    lake: &Lake,
    job: &Job,
    source: &SourceConfig,
    as_of: NaiveDate,
    files: Vec<inputs::InputFile>,
) -> Result<SourceCounts> {
    let started = std::time::Instant::now();
    let opts = ParseOptions {
        tz: job.source_tz(source),
        delimiter: source.delimiter.and_then(|c| u8::try_from(c).ok()),
        cost_in_micros: source.cost_in_micros.unwrap_or(true),
    };
    let format = format_for(source.kind, opts);
    let cutoff = end_of_day_micros(as_of, job.business_tz);
    let mut staging = Staging::new(format.tables(), cutoff, job.business_tz);
    let input_bytes = files.iter().map(|f| f.size).sum();
    let spill_dir = job.file.engine.spill_dir.as_deref().map(Path::new);
    let compression = job.file.ingest.spill_compression;
    let mut spill = Spill::new(&staging.tables, input_bytes, spill_dir, compression)?;
    for file in &files {
        let index = staging.add_file(&file.name, file.size);
        let reader = ChunkReader::new(&file.name, file.stream().await?, source.encoding);
        let how = parallel::ParallelParse {
            kind: source.kind,
            opts,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            spill_every: BACKGROUND_STAGED_INPUT_BYTES,
        };
        spill =
            parallel::parse_file_parallel(how, reader, index, &source.name, &mut staging, spill)
                .await?;
        tracing::debug!(source = %source.name, file = %file.name, rows = staging.counts.rows_read, "parsed");
    }
    spill_staged(&source.name, &mut staging, &mut spill)?;
    let mut counts = std::mem::take(&mut staging.counts);
    let buckets = spill.buckets();
    let mut dated = spill.finish(
        &mut counts,
        &|bucket| format.derive(bucket),
        &staging.file_names,
    )?;
    tracing::debug!(source = %source.name, buckets, "deduplicated");
    counts.tables = write::write_tables(lake, &source.name, &mut dated).await?;
    write::write_quarantine(lake, &source.name, &as_of.to_string(), &mut dated).await?;

    counts.source = source.name.clone();
    counts.kind = source.kind.as_str().to_string();
    let mut worst: Vec<(String, u64)> = staging
        .file_names
        .iter()
        .zip(&staging.quarantined_per_file)
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| (f.clone(), *n))
        .collect();
    worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    worst.truncate(5);
    counts.worst_files = worst;
    counts.seconds = started.elapsed().as_secs_f64();
    debug_assert!(counts.balanced());
    Ok(counts)
}

/// Input text whose staged rows are spilled together: the spill splits them by date,
/// so this sets the size of the batches it writes, and bounds the memory they take.
pub(crate) const STAGED_INPUT_BYTES: usize = 32 << 20;

/// [`STAGED_INPUT_BYTES`] of the parallel path, whose spilling thread holds one set of
/// staged rows while the next one gathers. At 1M customers the CSV/TSV sources took
/// 42.2 s and 1084 MB with 32 MiB here, 45.7 s and 652 MB with 16 MiB, 43.4-45.1 s and
/// 501-526 MB with 8 MiB, 44.5 s and 455 MB with 4 MiB.
pub(crate) const BACKGROUND_STAGED_INPUT_BYTES: usize = 8 << 20;

/// Parses one file chunk by chunk on this thread into the staging area, spilling the
/// staged rows after every [`STAGED_INPUT_BYTES`] of input: the reference that
/// [`parallel`] parsing is tested against.
pub async fn parse_file(
    format: &mut dyn Format,
    mut reader: ChunkReader,
    file: u32,
    source: &str,
    staging: &mut Staging,
    spill: &mut Spill,
) -> Result<()> {
    let name = staging.file_name(file);
    while let Some(chunk) = reader.next_chunk(|head| format.framing(head)).await? {
        let chunk = Chunk {
            file,
            name: &name,
            text: &chunk.text,
            line_shift: chunk.line_shift,
            first: chunk.first,
            last: chunk.last,
        };
        format.parse(&chunk, staging)?;
        staging.staged_bytes += chunk.text.len();
        if staging.staged_bytes >= STAGED_INPUT_BYTES {
            spill_staged(source, staging, spill)?;
        }
    }
    Ok(())
}

/// Moves every staged row and quarantined row into the spill.
pub fn spill_staged(source: &str, staging: &mut Staging, spill: &mut Spill) -> Result<()> {
    SpillWork::take(source, staging, &mut [])?.apply(spill)
}

/// Staged rows per table and the quarantined rows, taken from the staging area to be
/// spilled, here or on the spilling thread of [`parallel`].
pub(crate) struct SpillWork {
    tables: Vec<(usize, Vec<RecordBatch>)>,
    quarantine: Option<RecordBatch>,
}

impl SpillWork {
    /// Takes `gathered` (batches per table that parallel parsing merged), the rows
    /// staged in the staging area itself and its quarantined rows.
    pub(crate) fn take(
        source: &str,
        staging: &mut Staging,
        gathered: &mut [Vec<RecordBatch>],
    ) -> Result<Self> {
        staging.staged_bytes = 0;
        let mut tables: Vec<(usize, Vec<RecordBatch>)> = gathered
            .iter_mut()
            .enumerate()
            .map(|(table, batches)| (table, std::mem::take(batches)))
            .filter(|(_, batches)| !batches.is_empty())
            .collect();
        // Rows staged in the source's own area (none when parallel chunks were absorbed).
        for (table, stage) in staging.tables.iter_mut().enumerate() {
            if let Some(batch) = stage.take_batch()? {
                tables.push((table, vec![batch]));
            }
        }
        let quarantine = match staging.quarantine.is_empty() {
            true => None,
            false => {
                let rows = std::mem::take(&mut staging.quarantine);
                Some(write::quarantine_batch(source, &staging.file_names, &rows)?)
            }
        };
        Ok(Self { tables, quarantine })
    }

    pub(crate) fn apply(self, spill: &mut Spill) -> Result<()> {
        for (table, batches) in self.tables {
            spill.add_all(table, &batches)?;
        }
        if let Some(batch) = self.quarantine {
            spill.add_quarantine(batch)?;
        }
        Ok(())
    }
}

/// Every canonical lake table with its schema as written (lineage columns included),
/// for registering the lake's raw tables before any file exists.
pub fn canonical_tables() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    let mut out: Vec<(&'static str, arrow::datatypes::SchemaRef)> = vec![];
    for kind in crmflow_core::config::SourceKind::ALL {
        let opts = ParseOptions {
            tz: chrono_tz::UTC,
            delimiter: None,
            cost_in_micros: true,
        };
        for table in format_for(kind, opts).tables() {
            if !out.iter().any(|(n, _)| *n == table.name) {
                out.push((table.name, stage::with_lineage(table.schema())));
            }
        }
    }
    out
}

/// The canonical tables a source kind writes.
pub fn tables_of(kind: crmflow_core::config::SourceKind) -> Vec<&'static str> {
    let opts = ParseOptions {
        tz: chrono_tz::UTC,
        delimiter: None,
        cost_in_micros: true,
    };
    format_for(kind, opts)
        .tables()
        .iter()
        .map(|t| t.name)
        .collect()
}
