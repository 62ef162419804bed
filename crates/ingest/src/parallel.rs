//! Parsing one file's chunks on several blocking threads at once (no format carries
//! state from one chunk to the next: [`crate::formats::Format::parse`]). Each chunk is
//! parsed into a staging area of its own; the results are taken in file order and
//! merged into the source's staging area ([`Staging::absorb`]), which renumbers their
//! key occurrences so that they still grow in read order (the latest file's wins). The
//! staged batches are spilled once [`crate::BACKGROUND_STAGED_INPUT_BYTES`] of input has
//! gathered, on a blocking thread of its own while the next chunks are parsed (one spill
//! at a time, in order).

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
    /// Input bytes gathered between two spills ([`crate::BACKGROUND_STAGED_INPUT_BYTES`]).
    pub spill_every: usize,
}

/// Parses one file with up to `workers` chunks in flight; see the module docs. The
/// spill is handed to the spilling thread and back, and returned at the end.
pub async fn parse_file_parallel(
    how: ParallelParse,
    mut reader: ChunkReader,
    file: u32,
    source: &str,
    staging: &mut Staging,
    spill: Spill,
) -> Result<Spill> {
    let ParallelParse {
        kind,
        opts,
        workers,
        spill_every,
    } = how;
    let framing_format = format_for(kind, opts);
    let name = staging.file_name(file);
    let mut in_flight: VecDeque<tokio::task::JoinHandle<Result<Parsed>>> = VecDeque::new();
    let mut gathered: Vec<Vec<RecordBatch>> = vec![vec![]; staging.tables.len()];
    let mut spilling = Spilling::Idle(Box::new(spill));
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
        let (parsed, batches) = next
            .await
            .map_err(|e| thread_failed(&name, "parser", e))??;
        for (table, batch) in staging.absorb(parsed, batches)? {
            gathered[table].push(batch);
        }
        if staging.staged_bytes >= spill_every {
            let work = crate::SpillWork::take(source, staging, &mut gathered)?;
            let mut spill = spilling.wait(&name).await?;
            spilling = Spilling::Running(tokio::task::spawn_blocking(move || {
                work.apply(&mut spill)?;
                Ok(spill)
            }));
        }
    }
    let mut spill = spilling.wait(&name).await?;
    crate::SpillWork::take(source, staging, &mut gathered)?.apply(&mut spill)?;
    Ok(spill)
}

fn thread_failed(file: &str, what: &str, e: tokio::task::JoinError) -> IngestError {
    IngestError::Read {
        file: file.to_string(),
        message: format!("{what} thread failed: {e}"),
    }
}

/// The spill, idle in this task or being written to by the spilling thread.
enum Spilling {
    Idle(Box<Spill>),
    Running(tokio::task::JoinHandle<Result<Spill>>),
}

impl Spilling {
    /// The spill, once the running spill (if any) is done.
    async fn wait(self, file: &str) -> Result<Spill> {
        match self {
            Spilling::Idle(spill) => Ok(*spill),
            Spilling::Running(handle) => handle
                .await
                .map_err(|e| thread_failed(file, "spilling", e))?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::stream_of;
    use crate::formats::test_support::{MSK, NO_CUTOFF, opts};
    use crmflow_core::config::{SpillCompression, TextEncoding};

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

    /// A Shopify export of `orders` orders of 1 to 4 line items (the continuation rows
    /// with the order-level columns empty), every 9th order a repeat of an earlier one
    /// and every 13th without a creation time (its items are orphans), over 20 days.
    fn orders(orders: usize, first: usize) -> String {
        let mut out = String::from(
            "Name,Email,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku\n",
        );
        for i in 0..orders {
            let number = if i % 9 == 8 { first + i / 3 } else { first + i };
            let created = match i % 13 {
                12 => String::new(),
                _ => format!("2026-10-{:02} 10:00:00 +0300", 1 + i % 20),
            };
            for item in 0..1 + i % 4 {
                let head = match item {
                    0 => format!("a{i}@x.ru,{created}"),
                    _ => ",".to_string(),
                };
                out.push_str(&format!(
                    "#{number},{head},{},\"Item, {item}\",{}.50,SKU-{item}\n",
                    1 + item,
                    100 + i
                ));
            }
        }
        out
    }

    /// Ingests `files` one chunk after the other (`workers` = 0) or in parallel, with a
    /// spill of `input_bytes`; returns every table's rows by date, the counts and the
    /// quarantined lines.
    fn ingest(files: &[String], workers: usize, input_bytes: u64, spill_every: usize) -> String {
        ingest_kind(
            SourceKind::MetricaVisits,
            700,
            files,
            workers,
            input_bytes,
            spill_every,
        )
    }

    /// [`ingest`] for files of another source kind, read in chunks of `chunk_bytes`.
    fn ingest_kind(
        kind: SourceKind,
        chunk_bytes: usize,
        files: &[String],
        workers: usize,
        input_bytes: u64,
        spill_every: usize,
    ) -> String {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut format = format_for(kind, opts());
            let mut staging = Staging::new(format.tables(), NO_CUTOFF, MSK);
            let mut spill = Spill::new(
                &staging.tables,
                input_bytes,
                None,
                SpillCompression::default(),
            )
            .expect("spill");
            for (i, text) in files.iter().enumerate() {
                let name = format!("file{i}");
                let file = staging.add_file(&name, text.len() as u64);
                let stream = stream_of(text.as_bytes().to_vec(), 1000);
                let reader =
                    ChunkReader::with_chunk_bytes(&name, stream, TextEncoding::Auto, chunk_bytes);
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
                    n => {
                        spill = parse_file_parallel(
                            ParallelParse {
                                kind,
                                opts: opts(),
                                workers: n,
                                spill_every,
                            },
                            reader,
                            file,
                            "m",
                            &mut staging,
                            spill,
                        )
                        .await
                        .expect("parse in parallel")
                    }
                }
            }
            crate::spill_staged("m", &mut staging, &mut spill).expect("spill");
            let mut counts = std::mem::take(&mut staging.counts);
            let mut dated = spill
                .finish(&mut counts, &|_| Ok(vec![]), &staging.file_names)
                .expect("finish");
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
            let sequential = ingest(&files, 0, input_bytes, 0);
            assert!(
                sequential.contains("duplicates_collapsed: 1"),
                "{sequential}"
            );
            assert!(sequential.contains("missing_primary_key"));
            // Spilling once at the end, or every few chunks on the spilling thread.
            for (workers, spill_every) in [(1, usize::MAX), (2, usize::MAX), (3, 2000), (2, 1)] {
                assert_eq!(
                    sequential,
                    ingest(&files, workers, input_bytes, spill_every),
                    "{workers} workers, spilling every {spill_every} bytes"
                );
            }
        }
    }

    #[test]
    fn orders_split_across_chunks_parse_in_parallel_as_one_after_the_other() {
        // Each file whole as one chunk, against chunks of 50 to 700 bytes (which would
        // cut orders apart but for the grouping) parsed on 1 to 3 threads.
        let files = [orders(120, 1001), orders(30, 1050)];
        let shopify = SourceKind::ShopifyOrders;
        let whole = ingest_kind(shopify, 1 << 20, &files, 0, 1, 0);
        assert!(whole.contains("orphan_line_item"), "{whole}");
        assert!(!whole.contains("duplicates_collapsed: 0"), "{whole}");
        for (chunk_bytes, workers, spill_every) in
            [(700, 1, usize::MAX), (50, 2, 1), (300, 3, 2000)]
        {
            assert_eq!(
                whole,
                ingest_kind(shopify, chunk_bytes, &files, workers, 1, spill_every),
                "chunks of {chunk_bytes} bytes, {workers} workers, spilling every {spill_every} bytes"
            );
        }
    }
}
