//! crmflow-ingest: vendor exports -> canonical Parquet tables in the lake.
//!
//! For one source: list its files ([`inputs`]), decode each ([`text`]), parse it with
//! the source kind's format ([`formats`]) into a staging area that applies the cut-off,
//! deduplicates on the primary key and quarantines bad rows ([`stage`]), then write one
//! Parquet object per table and business date, plus the quarantine ([`write`]).

pub mod error;
pub mod formats;
pub mod inputs;
pub mod stage;
pub mod text;
pub mod write;

use chrono::NaiveDate;
use crmflow_core::config::{Job, SourceConfig};
use crmflow_core::lake::Lake;
use crmflow_core::normalize::end_of_day_micros;
use crmflow_core::runs::SourceCounts;

pub use error::{IngestError, Result};
use formats::{ParseOptions, format_for};
use stage::Staging;

/// Ingests one source of a job for `as_of`: replaces the date partitions it has rows
/// for and its quarantine partition of `as_of`; returns the counts.
pub async fn ingest_source(
    lake: &Lake,
    job: &Job,
    source: &SourceConfig,
    as_of: NaiveDate,
) -> Result<SourceCounts> {
    let location = job.source_location(source);
    let files = inputs::list_inputs(&location, &source.storage_options).await?;
    let opts = ParseOptions {
        tz: job.source_tz(source),
        delimiter: source.delimiter.and_then(|c| u8::try_from(c).ok()),
        cost_in_micros: source.cost_in_micros.unwrap_or(true),
    };
    let mut format = format_for(source.kind, opts);
    let cutoff = end_of_day_micros(as_of, job.business_tz);
    let mut staging = Staging::new(format.tables(), cutoff, job.business_tz);
    for file in &files {
        let bytes = file.read().await?;
        let text = text::decode(&bytes, source.encoding);
        let index = staging.add_file(&file.name, file.size);
        format.parse(index, &file.name, &text, &mut staging)?;
        tracing::debug!(source = %source.name, file = %file.name, rows = staging.counts.rows_read, "parsed");
    }
    format.finish(&mut staging)?;
    let tables = write::write_tables(lake, &source.name, &mut staging).await?;
    write::write_quarantine(lake, &source.name, &as_of.to_string(), &staging).await?;

    let mut counts = std::mem::take(&mut staging.counts);
    counts.source = source.name.clone();
    counts.kind = source.kind.as_str().to_string();
    counts.tables = tables;
    let mut per_file: std::collections::BTreeMap<&str, u64> = Default::default();
    for q in &staging.quarantine {
        *per_file
            .entry(staging.file_names[q.file as usize].as_str())
            .or_default() += 1;
    }
    let mut worst: Vec<(String, u64)> = per_file
        .into_iter()
        .map(|(f, n)| (f.to_string(), n))
        .collect();
    worst.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    worst.truncate(5);
    counts.worst_files = worst;
    debug_assert!(counts.balanced());
    Ok(counts)
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
