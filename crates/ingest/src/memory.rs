//! The whole ingest path over in-memory files, with nothing written: chunks of a chosen
//! size, parsing, staging, the spill (in memory) and deduplication. The format tests
//! and the fuzz targets (`fuzz/`) run exports through it; it checks that
//! `rows_read = loaded + quarantined + duplicates collapsed` and panics otherwise, so a
//! fuzzer finds a broken balance as it finds a crash.

use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use crmflow_core::config::{SourceKind, SpillCompression, TextEncoding};

use crate::chunks::{Chunk, ChunkReader, stream_of};
use crate::error::{IngestError, Result};
use crate::formats::{Format, ParseOptions, format_for};
use crate::spill::Spill;
use crate::stage::{Staging, with_lineage};

/// What [`ingest_in_memory`] produced: every table (dates ascending, one batch each,
/// in the order of the format's tables) and the staging area holding the final counts
/// and every quarantined row.
pub struct InMemory {
    pub tables: Vec<RecordBatch>,
    pub staging: Staging,
}

/// Runs `format` over `files` (named `file0`, `file1`, ...) cut into chunks of about
/// `chunk_bytes`, read in pieces of 7 bytes. A file-level error (a wrong export, a
/// truncated JSON document) stops at that file and is returned; the counts balance
/// either way. `spill_buckets` > 1 spills to that many bucket files in a temporary
/// folder, as a large source does.
pub fn ingest_in_memory(
    format: &mut dyn Format,
    files: &[&[u8]],
    cutoff: i64,
    tz: Tz,
    chunk_bytes: usize,
    spill_buckets: u64,
) -> Result<InMemory> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| IngestError::Read {
            file: "(in memory)".into(),
            message: e.to_string(),
        })?;
    rt.block_on(async {
        let mut staging = Staging::new(format.tables(), cutoff, tz);
        let input = spill_buckets.max(1) * crate::spill::BUCKET_INPUT_BYTES;
        let mut spill = Spill::new(&staging.tables, input, None, SpillCompression::default())?;
        let mut quarantined = vec![];
        let mut failed = None;
        'files: for (i, bytes) in files.iter().enumerate() {
            let name = format!("file{i}");
            let index = staging.add_file(&name, bytes.len() as u64);
            let mut reader = ChunkReader::with_chunk_bytes(
                &name,
                stream_of(bytes.to_vec(), 7),
                TextEncoding::Auto,
                chunk_bytes,
            );
            loop {
                let next = reader.next_chunk(|head| format.framing(head)).await;
                let text = match next {
                    Ok(Some(text)) => text,
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break 'files;
                    }
                };
                let chunk = Chunk {
                    file: index,
                    name: &name,
                    text: &text.text,
                    line_shift: text.line_shift,
                    first: text.first,
                    last: text.last,
                };
                let parsed = format.parse(&chunk, &mut staging);
                quarantined.append(&mut staging.quarantine);
                for (t, table) in staging.tables.iter_mut().enumerate() {
                    if let Some(batch) = table.take_batch()? {
                        spill.add(t, batch)?;
                    }
                }
                if let Err(e) = parsed {
                    failed = Some(e);
                    break 'files;
                }
            }
        }
        let mut counts = std::mem::take(&mut staging.counts);
        let mut dated = spill.finish(
            &mut counts,
            &|bucket| format.derive(bucket),
            &staging.file_names,
        )?;
        let mut tables = vec![];
        for (stage, table) in format.tables().iter().zip(&mut dated.tables) {
            let mut parts = vec![];
            for date in table.dates() {
                parts.extend(table.read(date)?);
            }
            let schema = with_lineage(stage.schema());
            let batch = arrow::compute::concat_batches(&schema, &parts).map_err(|e| {
                IngestError::Write {
                    table: stage.name.to_string(),
                    message: e.to_string(),
                }
            })?;
            tables.push(batch);
        }
        staging.counts = counts;
        staging.quarantine = quarantined;
        assert!(
            staging.counts.balanced(),
            "rows read != loaded + quarantined + duplicates: {:?}",
            staging.counts
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(InMemory { tables, staging }),
        }
    })
}

/// A fuzz target's body: `data` as an export of `kind` (site time zone Moscow, no
/// cut-off), in chunks whose size comes from the first byte, must not panic and must
/// balance its counts. Errors (a wrong or truncated export) are fine.
pub fn fuzz_one(kind: SourceKind, data: &[u8]) {
    let (size, body) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first) + 1, rest),
        None => (1, data),
    };
    let opts = ParseOptions {
        tz: chrono_tz::Europe::Moscow,
        delimiter: None,
        cost_in_micros: true,
    };
    let mut format = format_for(kind, opts);
    let _ = ingest_in_memory(
        format.as_mut(),
        &[body],
        i64::MAX,
        chrono_tz::Europe::Moscow,
        size,
        1,
    );
}
