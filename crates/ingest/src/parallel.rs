//! Parsing one file's chunks on several blocking threads at once, for the formats that
//! carry no state from one chunk to the next ([`Format::carries_state`]). Each chunk is
//! parsed into a staging area of its own; the results are taken in file order and
//! merged into the source's staging area ([`Staging::absorb`]), which renumbers their
//! key occurrences so that they still grow in read order (the latest file's wins). The
//! staged batches are spilled once [`crate::STAGED_INPUT_BYTES`] of input has gathered,
//! so that the spill writes batches as large as the sequential path does.

use std::collections::VecDeque;

use arrow::record_batch::RecordBatch;
use crmflow_core::config::SourceKind;

use crate::chunks::{Chunk, ChunkReader};
use crate::error::{IngestError, Result};
use crate::formats::{ParseOptions, format_for};
use crate::spill::Spill;
use crate::stage::Staging;

/// A chunk's staging area (counts, quarantine) and its staged batches.
type Parsed = (Staging, Vec<(usize, RecordBatch)>);

/// How to parse in parallel: the source kind and parse options of a format that
/// carries no state, and the number of chunks in flight.
#[derive(Debug, Clone, Copy)]
pub struct ParallelParse {
    pub kind: SourceKind,
    pub opts: ParseOptions,
    pub workers: usize,
}

/// Parses one file with up to `workers` chunks in flight; see the module docs.
pub async fn parse_file_parallel(
    how: ParallelParse,
    mut reader: ChunkReader,
    file: u32,
    source: &str,
    staging: &mut Staging,
    spill: &mut Spill,
) -> Result<()> {
    let ParallelParse {
        kind,
        opts,
        workers,
    } = how;
    let framing_format = format_for(kind, opts);
    let name = staging.file_name(file);
    let mut in_flight: VecDeque<tokio::task::JoinHandle<Result<Parsed>>> = VecDeque::new();
    let mut gathered: Vec<Vec<RecordBatch>> = vec![vec![]; staging.tables.len()];
    let mut eof = false;
    loop {
        while !eof && in_flight.len() < workers.max(1) {
            let Some(text) = reader
                .next_chunk(|head| framing_format.framing(head))
                .await?
            else {
                eof = true;
                break;
            };
            let mut chunk_staging = staging.for_chunk(framing_format.tables());
            let name = name.clone();
            in_flight.push_back(tokio::task::spawn_blocking(move || {
                let chunk = Chunk {
                    file,
                    name: &name,
                    text: &text.text,
                    line_shift: text.line_shift,
                    first: text.first,
                    last: text.last,
                };
                format_for(kind, opts).parse(&chunk, &mut chunk_staging)?;
                chunk_staging.staged_bytes = text.text.len();
                let batches = chunk_staging.take_batches()?;
                Ok((chunk_staging, batches))
            }));
        }
        let Some(next) = in_flight.pop_front() else {
            break;
        };
        let (parsed, batches) = next.await.map_err(|e| IngestError::Read {
            file: name.clone(),
            message: format!("parser thread failed: {e}"),
        })??;
        for (table, batch) in staging.absorb(parsed, batches)? {
            gathered[table].push(batch);
        }
        if staging.staged_bytes >= crate::STAGED_INPUT_BYTES {
            spill_gathered(source, staging, spill, &mut gathered)?;
        }
    }
    spill_gathered(source, staging, spill, &mut gathered)
}

/// Spills the gathered batches and the quarantine.
fn spill_gathered(
    source: &str,
    staging: &mut Staging,
    spill: &mut Spill,
    gathered: &mut [Vec<RecordBatch>],
) -> Result<()> {
    for (table, batches) in gathered.iter_mut().enumerate() {
        let batches = std::mem::take(batches);
        if !batches.is_empty() {
            spill.add_all(table, &batches)?;
        }
    }
    crate::spill_staged(source, staging, spill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::stream_of;
    use crate::formats::test_support::{MSK, NO_CUTOFF, opts};
    use crmflow_core::config::TextEncoding;

    /// A Metrica export: `rows` visits, every 7th a repeat of an earlier visit (a
    /// duplicate), every 11th without a visit id (quarantined), over 40 days.
    fn visits(rows: usize, first_id: usize) -> String {
        let mut out = String::from(
            "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:clientID\tym:s:purchaseID\n",
        );
        for i in 0..rows {
            let id = if i % 7 == 6 {
                first_id + i / 2
            } else {
                first_id + i
            };
            let id = if i % 11 == 10 {
                String::new()
            } else {
                id.to_string()
            };
            let day = 1 + i % 28;
            out.push_str(&format!(
                "{id}\t42\t2026-10-{day:02} 1{}:00:00\tc{}\t['p{i}']\n",
                i % 10,
                i % 97
            ));
        }
        out
    }

    /// Ingests `files` one chunk after the other (`workers` = 0) or in parallel, with a
    /// spill of `input_bytes`; returns every table's rows by date, the counts and the
    /// quarantined lines.
    fn ingest(files: &[String], workers: usize, input_bytes: u64) -> String {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let kind = SourceKind::MetricaVisits;
            let mut format = format_for(kind, opts());
            let mut staging = Staging::new(format.tables(), NO_CUTOFF, MSK);
            let mut spill = Spill::new(&staging.tables, input_bytes, None).expect("spill");
            for (i, text) in files.iter().enumerate() {
                let name = format!("file{i}");
                let file = staging.add_file(&name, text.len() as u64);
                let stream = stream_of(text.as_bytes().to_vec(), 1000);
                let reader = ChunkReader::with_chunk_bytes(&name, stream, TextEncoding::Auto, 700);
                match workers {
                    0 => crate::parse_file(
                        format.as_mut(),
                        reader,
                        file,
                        "m",
                        &mut staging,
                        &mut spill,
                    )
                    .await
                    .expect("parse"),
                    n => parse_file_parallel(
                        ParallelParse {
                            kind,
                            opts: opts(),
                            workers: n,
                        },
                        reader,
                        file,
                        "m",
                        &mut staging,
                        &mut spill,
                    )
                    .await
                    .expect("parse in parallel"),
                }
            }
            crate::spill_staged("m", &mut staging, &mut spill).expect("spill");
            let mut counts = std::mem::take(&mut staging.counts);
            let mut dated = spill.finish(&mut counts, &|_| Ok(vec![])).expect("finish");
            assert!(counts.balanced());
            let mut out = format!("{counts:?}\n");
            for table in &mut dated.tables {
                for date in table.dates() {
                    let batches = table.read(date).expect("read");
                    let text = arrow::util::pretty::pretty_format_batches(&batches).expect("fmt");
                    out.push_str(&format!("{date}\n{text}\n"));
                }
            }
            let quarantine: Vec<_> = dated.quarantine().collect::<Result<_>>().expect("q");
            let text = arrow::util::pretty::pretty_format_batches(&quarantine).expect("fmt");
            out.push_str(&text.to_string());
            out
        })
    }

    #[test]
    fn chunks_parsed_in_parallel_give_what_one_after_the_other_gives() {
        // The second file repeats visits of the first: the later file's rows win.
        let files = [visits(400, 1000), visits(150, 1100)];
        for input_bytes in [1, 50 * crate::spill::BUCKET_INPUT_BYTES] {
            let sequential = ingest(&files, 0, input_bytes);
            assert!(
                sequential.contains("duplicates_collapsed: 1"),
                "{sequential}"
            );
            assert!(sequential.contains("missing_primary_key"));
            for workers in [1, 2, 3] {
                assert_eq!(
                    sequential,
                    ingest(&files, workers, input_bytes),
                    "{workers} workers"
                );
            }
        }
    }
}
