//! Writing a source's deduplicated tables into the lake: one Parquet (zstd) object per
//! table, business date and source, `raw/<table>/dt=YYYY-MM-DD/<source>.parquet`, and
//! the quarantine at `quarantine/<source>/dt=<as_of>/part-0.parquet`. Each object is
//! streamed and appears whole when closed (one put, or a completed multipart upload).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringBuilder, UInt64Builder};
use arrow::compute::BatchCoalescer;
use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::lake::Lake;
use futures::{Stream, StreamExt};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{IngestError, Result};
use crate::spill::Dated;
use crate::stage::{Quarantined, SOURCE_FILE_COLUMN};

/// Dictionary size of a column chunk beyond which its values are written plain. Near
/// unique columns (ids, emails, client ids) fall back after a few hundred values instead of
/// interning every value of a date, and zstd compresses their plain values better: at 1M
/// customers Metrica's lake took 222 MB instead of 265 MB and the message events' 159 MB
/// instead of 177 MB (with [`writer_properties`]' `_source_line` encoding), in the same
/// ingest time and the same time to read (parquet's default is 1 MiB). Columns of a few
/// hundred distinct values (channels, campaigns, events) keep their dictionaries.
const DICTIONARY_BYTES: usize = 16 << 10;

/// Columns written without min/max statistics, as no reader prunes by them:
/// - the contacts `email`, `phone` and `caller_phone`: their statistics cost two string
///   comparisons per value (3.9% of the message events' ingest CPU at 1M customers), and
///   each page's footer entry would hold two plain-text contacts;
/// - the lineage column `_source_file`: a source's few paths, each repeated on every row
///   of its file, so its statistics compared two equal paths of some 60 bytes per value.
const NO_STATISTICS_COLUMNS: [&str; 4] = ["email", "phone", "caller_phone", SOURCE_FILE_COLUMN];

/// Writer settings of every lake table: zstd(1), about 24% faster than zstd(3) for 2% more
/// bytes. The lineage column `_source_line` grows within a date (rows keep their read
/// order), so it is delta-encoded without dictionary: at 1M customers the message events'
/// column took 29 MB instead of 99 MB, and the table 177 MB instead of 247 MB; Metrica's
/// table 265 MB instead of 282 MB. Other settings were measured without gain. Writing
/// Metrica's dates at 1M customers took 12.1-12.3 s as set here. It took 10.6-12.9 s with any one of these changes:
/// statistics per column chunk or none, 8192-value write batches, or no dictionaries.
/// The whole Metrica ingest was 29.9-34.8 s with and without dictionaries.
pub fn writer_properties() -> WriterProperties {
    let builder = NO_STATISTICS_COLUMNS
        .iter()
        .fold(WriterProperties::builder(), |b, column| {
            b.set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::None)
        });
    builder
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_created_by("crmflow".to_string())
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .set_column_dictionary_enabled(ColumnPath::from("_source_line"), false)
        .set_column_encoding(
            ColumnPath::from("_source_line"),
            Encoding::DELTA_BINARY_PACKED,
        )
        .build()
}

/// Formats a Date32 as `YYYY-MM-DD`.
pub fn date_string(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.to_string())
        .unwrap_or_else(|| format!("day{days}"))
}

/// Streams batches into one Parquet object of the lake, its columns encoded in
/// parallel ([`crmflow_core::parquet_writer`]); the object appears whole when complete.
/// Nothing is written when there is no batch.
pub async fn write_parquet_object(
    lake: &Lake,
    relative: &str,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    write_parquet_stream(lake, relative, futures::stream::iter(batches)).await
}

/// [`write_parquet_object`] from a stream of batches.
async fn write_parquet_stream(
    lake: &Lake,
    relative: &str,
    mut batches: impl Stream<Item = Result<RecordBatch>> + Unpin,
) -> Result<u64> {
    let Some(first) = batches.next().await.transpose()? else {
        return Ok(0);
    };
    let schema = first.schema();
    let stream = futures::stream::iter([Ok(first)]).chain(batches);
    crmflow_core::parquet_writer::write_parquet(lake, relative, schema, writer_properties(), stream)
        .await
}

/// Batches a reading thread keeps ready on a date's channel ahead of the date's writer
/// ([`read_dates`]): enough to go on reading while a row group is encoded, few enough
/// to bound memory.
const READ_AHEAD_BATCHES: usize = 8;

/// Rows per batch the reading thread of [`write_tables`] sends (fewer when a date has
/// fewer): the spill's batches of a date are concatenated up to this, as the Parquet
/// writer's cost is per batch as much as per row. At 1M customers, writing Metrica's
/// 366 dates from the spill took 12.5-13 s this way, 22 s batch by batch.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// A date's batches regrouped into batches of [`WRITE_BATCH_ROWS`] rows (the last
/// one fewer), with arrow's [`BatchCoalescer`].
struct Coalesced<I> {
    batches: I,
    coalescer: Option<BatchCoalescer>,
    ended: bool,
    table: &'static str,
}

impl<I: Iterator<Item = Result<RecordBatch>>> Coalesced<I> {
    fn new(batches: I, table: &'static str) -> Self {
        Self {
            batches,
            coalescer: None,
            ended: false,
            table,
        }
    }

    fn err(&self, e: arrow::error::ArrowError) -> IngestError {
        IngestError::Write {
            table: self.table.to_string(),
            message: e.to_string(),
        }
    }
}

impl<I: Iterator<Item = Result<RecordBatch>>> Iterator for Coalesced<I> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self
                .coalescer
                .as_mut()
                .and_then(|c| c.next_completed_batch())
            {
                return Some(Ok(batch));
            }
            if self.ended {
                return None;
            }
            let pushed = match self.batches.next() {
                Some(Ok(batch)) => self
                    .coalescer
                    .get_or_insert_with(|| BatchCoalescer::new(batch.schema(), WRITE_BATCH_ROWS))
                    .push_batch(batch),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.ended = true;
                    match self.coalescer.as_mut() {
                        Some(c) => c.finish_buffered_batch(),
                        None => return None,
                    }
                }
            };
            if let Err(e) = pushed {
                return Some(Err(self.err(e)));
            }
        }
    }
}

/// What the reading thread of [`write_tables`] sends on a date's channel.
enum ReadAhead {
    Batch(Result<RecordBatch>),
    EndOfDate,
}

/// Dates of a table read and written at once, each by a reading thread of its own
/// and a writer. With one, the two cores idled between dates: while Metrica's dates
/// were written at 1M customers the reading thread took 0.7 of a core and the column
/// encoders 0.9, each waiting on the other at every date's last row group. With two
/// the write phase runs on 1.8-1.9 cores, and Metrica alone took 0.96x the time (median
/// of twelve interleaved pairs); the message events' ingest peaked at 380-404 MB
/// against 318-339 MB (their dates are of up to 300k rows, several row groups each).
const DATES_IN_FLIGHT: usize = 2;

/// A date's batches, as the reading thread sends them on its channel, ending at its
/// `EndOfDate`; an error if the thread ends before that, rather than a short object.
fn date_batches(
    table: &'static str,
    received: tokio::sync::mpsc::Receiver<ReadAhead>,
) -> impl Stream<Item = Result<RecordBatch>> + Unpin {
    Box::pin(futures::stream::unfold(
        received,
        move |mut received| async move {
            match received.recv().await {
                Some(ReadAhead::Batch(batch)) => Some((batch, received)),
                Some(ReadAhead::EndOfDate) => None,
                None => Some((
                    Err(IngestError::Write {
                        table: table.to_string(),
                        message: "the spill's reading thread stopped early".into(),
                    }),
                    received,
                )),
            }
        },
    ))
}

/// Reads a table's dates on [`DATES_IN_FLIGHT`] blocking threads, each taking the next
/// date not taken: it sends the date and the receiver of a channel of its own on
/// `dates`, then the date's batches on that channel, a few ahead of the writer.
fn read_dates(
    table: crate::spill::DatedTable,
    dates: tokio::sync::mpsc::Sender<(i32, tokio::sync::mpsc::Receiver<ReadAhead>)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let name = table.name;
    let all = table.dates();
    let table = Arc::new(table);
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (0..DATES_IN_FLIGHT)
        .map(|_| {
            let (table, taken, dates, all) =
                (table.clone(), taken.clone(), dates.clone(), all.clone());
            tokio::task::spawn_blocking(move || {
                loop {
                    let next = taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(date) = all.get(next) else { return };
                    let (sender, received) = tokio::sync::mpsc::channel(READ_AHEAD_BATCHES);
                    if dates.blocking_send((*date, received)).is_err() {
                        return; // the writer stopped on an error
                    }
                    for batch in Coalesced::new(table.parts(*date), name) {
                        if sender.blocking_send(ReadAhead::Batch(batch)).is_err() {
                            return;
                        }
                    }
                    if sender.blocking_send(ReadAhead::EndOfDate).is_err() {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// Writes every deduplicated table of a source, one object per business date; returns
/// rows written per table. [`DATES_IN_FLIGHT`] dates at once are read from the spill
/// ([`read_dates`]) and encoded and stored.
pub async fn write_tables(
    lake: &Lake,
    source: &str,
    dated: &mut Dated,
) -> Result<BTreeMap<String, u64>> {
    let mut written = BTreeMap::new();
    for table in std::mem::take(&mut dated.tables) {
        let name = table.name;
        let (date_sender, date_received) = tokio::sync::mpsc::channel(DATES_IN_FLIGHT);
        let reading = read_dates(table, date_sender);
        let dates = Box::pin(futures::stream::unfold(
            date_received,
            |mut received| async move { received.recv().await.map(|date| (date, received)) },
        ));
        let mut writes = dates
            .map(|(date, received)| {
                let path = format!("raw/{name}/dt={}/{source}.parquet", date_string(date));
                async move { write_parquet_stream(lake, &path, date_batches(name, received)).await }
            })
            .buffer_unordered(DATES_IN_FLIGHT);
        let mut rows = 0;
        while let Some(date_rows) = writes.next().await {
            rows += date_rows?;
        }
        for thread in reading {
            thread.await.map_err(|e| IngestError::Write {
                table: name.to_string(),
                message: format!("reading thread failed: {e}"),
            })?;
        }
        written.insert(name.to_string(), rows);
    }
    Ok(written)
}

/// Schema of the quarantine tables.
pub fn quarantine_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]))
}

/// Quarantined rows as a batch of [`quarantine_schema`].
pub fn quarantine_batch(
    source: &str,
    file_names: &[String],
    rows: &[Quarantined],
) -> Result<RecordBatch> {
    let (mut s, mut f, mut l, mut r, mut c, mut reason, mut m) = (
        StringBuilder::new(),
        StringBuilder::new(),
        UInt64Builder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for q in rows {
        s.append_value(source);
        f.append_value(
            file_names
                .get(q.file as usize)
                .map(String::as_str)
                .unwrap_or(""),
        );
        l.append_value(q.line);
        r.append_value(&q.raw);
        c.append_option(q.column.as_deref());
        reason.append_value(q.reason.as_str());
        m.append_value(&q.message);
    }
    RecordBatch::try_new(
        quarantine_schema(),
        vec![
            Arc::new(s.finish()),
            Arc::new(f.finish()),
            Arc::new(l.finish()),
            Arc::new(r.finish()),
            Arc::new(c.finish()),
            Arc::new(reason.finish()),
            Arc::new(m.finish()),
        ],
    )
    .map_err(|e| IngestError::Write {
        table: "quarantine".into(),
        message: e.to_string(),
    })
}

/// Replaces the quarantine partition of `as_of` for a source (removes it when empty).
pub async fn write_quarantine(
    lake: &Lake,
    source: &str,
    as_of: &str,
    dated: &mut Dated,
) -> Result<()> {
    let path = format!("quarantine/{source}/dt={as_of}/part-0.parquet");
    if dated.quarantined_batches() == 0 {
        lake.delete(&path).await?;
        return Ok(());
    }
    write_parquet_object(lake, &path, dated.quarantine()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    fn batch(from: i64, rows: i64) -> Result<RecordBatch> {
        let values = Int64Array::from_iter_values(from..from + rows);
        Ok(RecordBatch::try_from_iter([("v", Arc::new(values) as _)]).unwrap())
    }

    #[test]
    fn a_dates_batches_come_out_in_batches_of_the_write_size_in_order() {
        let n = WRITE_BATCH_ROWS as i64;
        let input = vec![
            batch(0, 10),
            batch(10, n),
            batch(10 + n, n - 5),
            batch(2 * n + 5, 1),
        ];
        let out: Vec<RecordBatch> = Coalesced::new(input.into_iter(), "t")
            .collect::<Result<_>>()
            .unwrap();
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [WRITE_BATCH_ROWS, WRITE_BATCH_ROWS, 6]);
        let values: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(values, (0..2 * n + 6).collect::<Vec<_>>());
        assert_eq!(Coalesced::new(std::iter::empty(), "t").count(), 0);
    }

    /// Encodings of the data pages (not dictionary pages) of each column of a Parquet
    /// file's first row group, by column name.
    fn data_page_encodings(bytes: bytes::Bytes) -> BTreeMap<String, Vec<Encoding>> {
        use parquet::column::page::Page;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes).unwrap();
        let group = reader.get_row_group(0).unwrap();
        let mut out = BTreeMap::new();
        for (i, column) in group.metadata().columns().iter().enumerate() {
            let pages = group.get_column_page_reader(i).unwrap();
            let data = pages
                .map(|page| page.unwrap())
                .filter(|page| !matches!(page, Page::DictionaryPage { .. }))
                .map(|page| page.encoding());
            out.insert(column.column_path().string(), data.collect());
        }
        out
    }

    /// Whether each column of a Parquet file's first row group has statistics.
    fn column_statistics(bytes: bytes::Bytes) -> BTreeMap<String, bool> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|c| (c.column_path().string(), c.statistics().is_some()))
            .collect()
    }

    #[test]
    fn lines_delta_encoded_unique_text_plain_contacts_without_statistics() {
        use arrow::array::{StringArray, UInt64Array};
        let rows = 20_000u64;
        let batch = RecordBatch::try_from_iter([
            (
                "_source_line",
                Arc::new(UInt64Array::from_iter_values(1..=rows)) as _,
            ),
            (
                "email",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("customer{i}@example.com")),
                )) as _,
            ),
            (
                "channel",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["email", "sms", "push"][i as usize % 3]),
                )) as _,
            ),
            (
                "_source_file",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| "/exports/message_events.csv"),
                )) as _,
            ),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let bytes = rt.block_on(async {
            let written = write_parquet_object(&lake, "t.parquet", [Ok(batch)]).await;
            assert_eq!(written.unwrap(), rows);
            lake.get("t.parquet").await.unwrap().unwrap()
        });
        let statistics = column_statistics(bytes.clone());
        assert!(statistics["channel"]);
        assert!(!statistics["email"], "contacts have no min/max");
        assert!(!statistics["_source_file"], "nor has the source file");
        let pages = data_page_encodings(bytes);
        assert!(pages.values().all(|column| !column.is_empty()), "{pages:?}");
        assert!(
            pages["_source_line"]
                .iter()
                .all(|e| *e == Encoding::DELTA_BINARY_PACKED),
            "{pages:?}"
        );
        // The emails' dictionary outgrew DICTIONARY_BYTES: the pages after it are plain.
        let email = &pages["email"];
        assert_eq!(email.first(), Some(&Encoding::RLE_DICTIONARY), "{pages:?}");
        assert_eq!(email.last(), Some(&Encoding::PLAIN), "{pages:?}");
        assert!(
            pages["channel"]
                .iter()
                .all(|e| *e == Encoding::RLE_DICTIONARY),
            "{pages:?}"
        );
    }

    /// A spill on disk (in `dir`) of `rows_per_date[i]` rows on date `i`, staged in turns
    /// (one row of each date with rows left, then again), value `date * 1_000_000 + n` for
    /// a date's row `n`; the row 0 of date 3 is an earlier occurrence of a key of date 5.
    fn spilled(rows_per_date: &[i64], dir: &std::path::Path) -> crate::spill::Dated {
        use crate::spill::{BUCKET_INPUT_BYTES, Spill};
        use crate::stage::TableStage;
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut stage = TableStage::new("t", schema);
        let compression = crmflow_core::config::SpillCompression::Lz4;
        let input = 4 * BUCKET_INPUT_BYTES;
        let mut spill =
            Spill::new(std::slice::from_ref(&stage), input, Some(dir), compression).expect("spill");
        let mut counts = crmflow_core::runs::SourceCounts::default();
        let (mut line, mut occurrence) = (0, 0);
        for n in 0..*rows_per_date.iter().max().unwrap_or(&0) {
            for (date, rows) in rows_per_date.iter().enumerate() {
                if n >= *rows {
                    continue;
                }
                (line, occurrence) = (line + 1, occurrence + 1);
                let key = match (date, n) {
                    (3, 0) | (5, 0) => "dup".to_string(),
                    _ => format!("{date}-{n}"),
                };
                stage
                    .row(date as i32, 0, line, Some((&key, occurrence)))
                    .i64(Some(date as i64 * 1_000_000 + n))
                    .end();
                counts.rows_read += 1;
                counts.rows_loaded += 1;
                if stage.rows() == 10_000 {
                    spill.add(0, stage.take_batch().unwrap().unwrap()).unwrap();
                }
            }
        }
        if let Some(batch) = stage.take_batch().unwrap() {
            spill.add(0, batch).unwrap();
        }
        let files = ["f.csv".to_string()];
        let dated = spill.finish(&mut counts, &|_| Ok(vec![]), &files).unwrap();
        assert_eq!(counts.duplicates_collapsed, 1);
        dated
    }

    #[test]
    fn dates_written_at_once_each_get_their_rows_whole_and_in_order() {
        // Two dates of several write batches each, among dates of a few rows.
        let big = 2 * WRITE_BATCH_ROWS as i64 + 7;
        let rows_per_date = [big, 3, big, 4, 5, 2, 40, 1, 1, 9];
        let dir = tempfile::tempdir().unwrap();
        let mut dated = spilled(&rows_per_date, &dir.path().join("spill"));
        let lake_dir = dir.path().join("lake");
        std::fs::create_dir_all(&lake_dir).unwrap();
        let lake = Lake::open(lake_dir.to_str().unwrap(), &Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let written = rt.block_on(write_tables(&lake, "src", &mut dated)).unwrap();
        let total: i64 = rows_per_date.iter().sum();
        assert_eq!(written["t"], total as u64 - 1, "the earlier `dup` dropped");
        for (date, rows) in rows_per_date.iter().enumerate() {
            let path = format!("raw/t/dt={}/src.parquet", date_string(date as i32));
            let bytes = rt
                .block_on(lake.get(&path))
                .unwrap()
                .expect("a date's object");
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024)
                    .unwrap();
            let mut values = vec![];
            for batch in reader {
                let batch = batch.unwrap();
                values.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
            let first = if date == 3 { 1 } else { 0 };
            let expected: Vec<i64> = (first..*rows)
                .map(|n| date as i64 * 1_000_000 + n)
                .collect();
            assert_eq!(values, expected, "date {date}");
        }
    }

    #[test]
    fn an_error_of_the_spill_is_passed_on() {
        let failed = Err(IngestError::Write {
            table: "t".into(),
            message: "spill read".into(),
        });
        let mut out = Coalesced::new(vec![batch(0, 3), failed].into_iter(), "t");
        assert!(matches!(out.next(), Some(Err(IngestError::Write { .. }))));
    }
}
