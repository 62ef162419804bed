//! The external staging of one source, which keeps memory bounded whatever the input
//! size. After every chunk the staged rows are spilled into hash buckets by primary key
//! (kept in memory for a small source, Arrow IPC files in a temporary folder otherwise);
//! then each bucket is loaded alone, deduplicated (of all occurrences of a key, across
//! every table of the source, only the latest one's rows are kept) and its survivors
//! regrouped by business date, so that each date can be written as one object.
//! Rows without a key (events) are never deduplicated: they go straight to stores by
//! business date (`date % DATE_STORES`), so they are written to disk and read back once.
//! Spill files are LZ4-compressed Arrow IPC.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Date32Type, SchemaRef, UInt64Type};
use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use crmflow_core::runs::SourceCounts;

use crate::error::{IngestError, Result};
use crate::stage::{INTERNAL_COLUMNS, TableStage, staged_schema};

/// Input bytes per bucket: a bucket holds about this much text once staged, and the
/// dedup step holds one bucket in memory at a time.
pub const BUCKET_INPUT_BYTES: u64 = 48 << 20;
/// Stores of keyless rows by business date: a store holds the dates equal modulo this
/// (one date each for a source that spans less than this many days).
const DATE_STORES: i32 = 256;
/// Buffer of each spill file: small, as hundreds may be open at once.
const FILE_BUFFER: usize = 64 << 10;
/// At most this many buckets (open spill files per table).
const MAX_BUCKETS: u64 = 512;

/// Record batches appended, then read back by index: in memory, or in an Arrow IPC
/// file (created on the first batch).
enum BatchStore {
    Memory(Vec<RecordBatch>),
    Disk {
        path: PathBuf,
        writer: Option<Box<FileWriter<BufWriter<File>>>>,
        batches: usize,
    },
}

fn spill_err(path: &Path, e: impl std::fmt::Display) -> IngestError {
    IngestError::Write {
        table: format!("spill file {}", path.display()),
        message: format!("{e}; check free space in the spill folder (engine.spill_dir)"),
    }
}

impl BatchStore {
    fn new(dir: Option<&Path>, name: String) -> Self {
        match dir {
            None => BatchStore::Memory(vec![]),
            Some(d) => BatchStore::Disk {
                path: d.join(name),
                writer: None,
                batches: 0,
            },
        }
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            BatchStore::Memory(v) => v.push(batch),
            BatchStore::Disk {
                path,
                writer,
                batches,
            } => {
                if writer.is_none() {
                    let file = File::create(&*path).map_err(|e| spill_err(path, e))?;
                    let options = IpcWriteOptions::default()
                        .try_with_compression(Some(CompressionType::LZ4_FRAME))
                        .map_err(|e| spill_err(path, e))?;
                    *writer = Some(Box::new(
                        FileWriter::try_new_with_options(
                            BufWriter::with_capacity(FILE_BUFFER, file),
                            &batch.schema(),
                            options,
                        )
                        .map_err(|e| spill_err(path, e))?,
                    ));
                }
                if let Some(w) = writer {
                    w.write(&batch).map_err(|e| spill_err(path, e))?;
                }
                *batches += 1;
            }
        }
        Ok(())
    }

    /// Ends writing; the batches can then be read back by index.
    fn into_reader(self) -> Result<BatchReader> {
        match self {
            BatchStore::Memory(v) => Ok(BatchReader::Memory(v)),
            BatchStore::Disk { writer: None, .. } => Ok(BatchReader::Memory(vec![])),
            BatchStore::Disk {
                path,
                writer: Some(mut w),
                batches,
            } => {
                w.finish().map_err(|e| spill_err(&path, e))?;
                drop(w);
                Ok(BatchReader::Disk {
                    path,
                    batches,
                    reader: None,
                })
            }
        }
    }
}

/// The read side of a [`BatchStore`]; a file is opened on the first read and stays
/// open until [`BatchReader::close`].
enum BatchReader {
    Memory(Vec<RecordBatch>),
    Disk {
        path: PathBuf,
        batches: usize,
        reader: Option<Box<FileReader<BufReader<File>>>>,
    },
}

impl BatchReader {
    fn len(&self) -> usize {
        match self {
            BatchReader::Memory(v) => v.len(),
            BatchReader::Disk { batches, .. } => *batches,
        }
    }

    fn get(&mut self, index: usize) -> Result<RecordBatch> {
        match self {
            BatchReader::Memory(v) => v.get(index).cloned().ok_or_else(|| IngestError::Write {
                table: "spill".into(),
                message: format!("no batch {index}"),
            }),
            BatchReader::Disk { path, reader, .. } => {
                if reader.is_none() {
                    let file = File::open(&*path).map_err(|e| spill_err(path, e))?;
                    let opened =
                        FileReader::try_new(BufReader::with_capacity(FILE_BUFFER, file), None)
                            .map_err(|e| spill_err(path, e))?;
                    *reader = Some(Box::new(opened));
                }
                let Some(r) = reader else {
                    return Err(spill_err(path, "not open"));
                };
                r.set_index(index).map_err(|e| spill_err(path, e))?;
                match r.next() {
                    Some(b) => b.map_err(|e| spill_err(path, e)),
                    None => Err(spill_err(path, format!("no batch {index}"))),
                }
            }
        }
    }

    fn all(&mut self) -> Result<Vec<RecordBatch>> {
        let batches = (0..self.len()).map(|i| self.get(i)).collect();
        self.close();
        batches
    }

    /// Closes the file (it reopens on the next read).
    fn close(&mut self) {
        if let BatchReader::Disk { reader, .. } = self {
            *reader = None;
        }
    }
}

/// Makes rows of derived tables from a bucket's rows: `(table, staged batch)` pairs.
pub type Derive<'a> = dyn Fn(&[Vec<RecordBatch>]) -> Result<Vec<(usize, RecordBatch)>> + 'a;

/// Where the staged rows of one source go between parsing and writing.
pub struct Spill {
    tables: Vec<SpillTable>,
    /// Quarantined rows, as batches of [`crate::write::quarantine_schema`].
    quarantine: BatchStore,
    buckets: usize,
    /// The temporary folder of the spill files (removed on drop); `None`: in memory.
    dir: Option<tempfile::TempDir>,
}

struct SpillTable {
    name: &'static str,
    staged_schema: SchemaRef,
    /// Whether rows of a key collapse to its latest occurrence (else the key only
    /// groups rows in a bucket, for [`crate::formats::Format::derive`]).
    dedup: bool,
    buckets: Vec<BatchStore>,
    /// Keyless rows by `date % DATE_STORES` (on disk only), and the dates each holds.
    by_date: BTreeMap<i32, (BatchStore, BTreeMap<i32, u64>)>,
}

impl Spill {
    /// A spill for the tables of a source whose input is `input_bytes` long: in memory
    /// when it fits one bucket, else one bucket per [`BUCKET_INPUT_BYTES`] in a new
    /// temporary folder under `spill_dir` (the system temp folder when `None`).
    pub fn new(tables: &[TableStage], input_bytes: u64, spill_dir: Option<&Path>) -> Result<Self> {
        let buckets = input_bytes
            .div_ceil(BUCKET_INPUT_BYTES)
            .clamp(1, MAX_BUCKETS) as usize;
        let dir = if buckets > 1 {
            let mut builder = tempfile::Builder::new();
            builder.prefix("crmflow-ingest-");
            let made = match spill_dir {
                Some(d) => {
                    std::fs::create_dir_all(d).map_err(|e| spill_err(d, e))?;
                    builder.tempdir_in(d)
                }
                None => builder.tempdir(),
            };
            Some(made.map_err(|e| spill_err(spill_dir.unwrap_or(Path::new("temp folder")), e))?)
        } else {
            None
        };
        let tables = tables
            .iter()
            .map(|t| SpillTable {
                name: t.name,
                staged_schema: staged_schema(t.schema()),
                dedup: t.dedup,
                buckets: (0..buckets)
                    .map(|b| {
                        BatchStore::new(
                            dir.as_ref().map(|d| d.path()),
                            format!("{}-{b}.arrow", t.name),
                        )
                    })
                    .collect(),
                by_date: BTreeMap::new(),
            })
            .collect();
        let quarantine = BatchStore::new(
            dir.as_ref().map(|d| d.path()),
            "quarantine.arrow".to_string(),
        );
        Ok(Spill {
            tables,
            quarantine,
            buckets,
            dir,
        })
    }

    /// The number of buckets.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// Spills a batch of quarantined rows.
    pub fn add_quarantine(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.quarantine.push(batch)
    }

    /// Spills a staged batch of table `table` ([`TableStage::take_batch`]) into the
    /// buckets of its keys; rows without a key are spread evenly.
    pub fn add(&mut self, table: usize, batch: RecordBatch) -> Result<()> {
        let n = self.buckets;
        let dir = self.dir.as_ref().map(|d| d.path().to_path_buf());
        let Some(t) = self.tables.get_mut(table) else {
            return Ok(());
        };
        if n == 1 {
            return t.buckets[0].push(batch);
        }
        let keys = batch
            .column(batch.num_columns() - 2)
            .as_string_opt::<i32>()
            .ok_or_else(|| IngestError::Write {
                table: t.name.to_string(),
                message: "staged key column is not text".into(),
            })?;
        let dates = batch
            .column(batch.num_columns() - 3)
            .as_primitive::<Date32Type>();
        // Where each row goes: a key bucket, or the date store of a keyless row.
        let mut targets: Vec<(Target, u32)> = (0..batch.num_rows())
            .map(|i| {
                let target = if keys.is_null(i) {
                    Target::DateStore(dates.value(i).rem_euclid(DATE_STORES))
                } else {
                    Target::Bucket((fnv1a(keys.value(i).as_bytes()) % n as u64) as u32)
                };
                (target, i as u32)
            })
            .collect();
        targets.sort_unstable();
        for (target, part) in split_runs(&batch, &targets, t.name)? {
            match target {
                Target::Bucket(bucket) => t.buckets[bucket as usize].push(part)?,
                Target::DateStore(slot) => {
                    let (store, held) = t.by_date.entry(slot).or_insert_with(|| {
                        (
                            BatchStore::new(
                                dir.as_deref(),
                                format!("{}-date-{slot}.arrow", t.name),
                            ),
                            Default::default(),
                        )
                    });
                    let part_dates = part
                        .column(part.num_columns() - 3)
                        .as_primitive::<Date32Type>();
                    for date in part_dates.values() {
                        *held.entry(*date).or_default() += 1;
                    }
                    store.push(part)?;
                }
            }
        }
        Ok(())
    }

    /// Deduplicates every bucket, adds the rows `derive` makes of the bucket's surviving
    /// rows (batches per table; it returns `(table, batch)` pairs of staged batches), and
    /// regroups the rows by business date. Moves the collapsed duplicates (rows of the
    /// first table of earlier occurrences of a key) from `counts.rows_loaded` to
    /// `counts.duplicates_collapsed`.
    pub fn finish(self, counts: &mut SourceCounts, derive: &Derive<'_>) -> Result<Dated> {
        let Spill {
            tables,
            quarantine,
            buckets,
            dir,
        } = self;
        let dir_path = dir.as_ref().map(|d| d.path().to_path_buf());
        let mut readers: Vec<Vec<Option<BatchReader>>> = Vec::with_capacity(tables.len());
        let dedup: Vec<bool> = tables.iter().map(|t| t.dedup).collect();
        let mut out: Vec<DatedTable> = Vec::with_capacity(tables.len());
        for t in tables {
            let mut rs = Vec::with_capacity(buckets);
            for store in t.buckets {
                rs.push(Some(store.into_reader()?));
            }
            readers.push(rs);
            let mut dated = DatedTable {
                name: t.name,
                staged_schema: t.staged_schema,
                dates: BTreeMap::new(),
                stores: vec![],
                rows: 0,
            };
            // Keyless rows need no dedup: their date stores are read as they are.
            for (_, (store, held)) in t.by_date {
                let index = dated.stores.len();
                dated.stores.push(store.into_reader()?);
                for (date, rows) in held {
                    dated
                        .dates
                        .entry(date)
                        .or_default()
                        .push(Part::Filter(index));
                    dated.rows += rows;
                }
            }
            out.push(dated);
        }
        for bucket in 0..buckets {
            let mut loaded: Vec<Vec<RecordBatch>> = vec![];
            for table_readers in &mut readers {
                let batches = match table_readers[bucket].take() {
                    Some(mut r) => r.all()?,
                    None => vec![],
                };
                loaded.push(batches);
            }
            // The latest occurrence of every key, over every deduplicated table.
            let mut latest: HashMap<&str, u64> = HashMap::default();
            for (batches, _) in loaded.iter().zip(&dedup).filter(|(_, d)| **d) {
                for b in batches {
                    let (keys, occurrences) = key_columns(b);
                    for i in 0..b.num_rows() {
                        if keys.is_valid(i) {
                            let o = occurrences.value(i);
                            latest
                                .entry(keys.value(i))
                                .and_modify(|m| *m = (*m).max(o))
                                .or_insert(o);
                        }
                    }
                }
            }
            let mut kept: Vec<Vec<RecordBatch>> = Vec::with_capacity(loaded.len());
            for (table, batches) in loaded.iter().enumerate() {
                if !dedup[table] {
                    kept.push(batches.clone());
                    continue;
                }
                let mut survivors = Vec::with_capacity(batches.len());
                for b in batches {
                    let (keys, occurrences) = key_columns(b);
                    let mut rows = Vec::with_capacity(b.num_rows());
                    for i in 0..b.num_rows() {
                        if keys.is_null(i)
                            || latest.get(keys.value(i)) == Some(&occurrences.value(i))
                        {
                            rows.push(i as u32);
                        } else if table == 0 {
                            counts.rows_loaded = counts.rows_loaded.saturating_sub(1);
                            counts.duplicates_collapsed += 1;
                        }
                    }
                    survivors.push(if rows.len() == b.num_rows() {
                        b.clone()
                    } else {
                        arrow::compute::take_record_batch(b, &UInt32Array::from(rows)).map_err(
                            |e| IngestError::Write {
                                table: out[table].name.to_string(),
                                message: e.to_string(),
                            },
                        )?
                    });
                }
                kept.push(survivors);
            }
            drop(latest);
            drop(loaded);
            for (table, batch) in derive(&kept)? {
                if let Some(batches) = kept.get_mut(table) {
                    batches.push(batch);
                }
            }
            for (table, batches) in kept.iter().enumerate() {
                let dated = &mut out[table];
                let mut store = BatchStore::new(
                    dir_path.as_deref(),
                    format!("{}-{bucket}-dated.arrow", dated.name),
                );
                // The bucket's rows in date order (read order within a date), taken at
                // once, then one slice per date.
                let mut order: Vec<((i32, u32), u32)> = vec![];
                for (index, b) in batches.iter().enumerate() {
                    let dates = b.column(b.num_columns() - 3).as_primitive::<Date32Type>();
                    order.extend(
                        dates
                            .values()
                            .iter()
                            .enumerate()
                            .map(|(row, date)| ((*date, index as u32), row as u32)),
                    );
                }
                order.sort_unstable();
                let sorted = match order.is_empty() {
                    true => RecordBatch::new_empty(dated.staged_schema.clone()),
                    false => interleave_runs(batches, &order, dated.name)?,
                };
                let mut start = 0;
                for (date, rows) in runs(order.iter().map(|((date, _), _)| *date)) {
                    let part = sorted.slice(start, rows);
                    start += rows;
                    dated.rows += rows as u64;
                    let index = match &store {
                        BatchStore::Memory(v) => v.len(),
                        BatchStore::Disk { batches, .. } => *batches,
                    };
                    dated
                        .dates
                        .entry(date)
                        .or_default()
                        .push(Part::Batch(dated.stores.len(), index));
                    store.push(part)?;
                }
                dated.stores.push(store.into_reader()?);
            }
        }
        Ok(Dated {
            tables: out,
            quarantine: quarantine.into_reader()?,
            _dir: dir,
        })
    }
}

/// Where [`Spill::add`] sends a staged row: a key bucket, or the date store of a
/// keyless row (`date % DATE_STORES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Bucket(u32),
    DateStore(i32),
}

/// Splits `batch` by `targets` (`(target, row)` sorted): one `take` of every row in
/// that order, then a zero-copy slice per run of equal targets.
fn split_runs<T: Copy + PartialEq>(
    batch: &RecordBatch,
    targets: &[(T, u32)],
    table: &str,
) -> Result<Vec<(T, RecordBatch)>> {
    let indices = UInt32Array::from_iter_values(targets.iter().map(|(_, row)| *row));
    let sorted =
        arrow::compute::take_record_batch(batch, &indices).map_err(|e| IngestError::Write {
            table: table.to_string(),
            message: e.to_string(),
        })?;
    let mut start = 0;
    Ok(runs(targets.iter().map(|(target, _)| *target))
        .into_iter()
        .map(|(target, len)| {
            let part = (target, sorted.slice(start, len));
            start += len;
            part
        })
        .collect())
}

/// The rows of `batches` in the order of `order` (`((date, batch), row)`), as one batch.
fn interleave_runs(
    batches: &[RecordBatch],
    order: &[((i32, u32), u32)],
    table: &str,
) -> Result<RecordBatch> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let indices: Vec<(usize, usize)> = order
        .iter()
        .map(|((_, batch), row)| (*batch as usize, *row as usize))
        .collect();
    arrow::compute::interleave_record_batch(&refs, &indices).map_err(|e| IngestError::Write {
        table: table.to_string(),
        message: e.to_string(),
    })
}

/// The runs of equal values in `values`: each value and how many times it repeats, in order.
fn runs<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<(T, usize)> {
    let mut out: Vec<(T, usize)> = vec![];
    for value in values {
        match out.last_mut() {
            Some((last, n)) if *last == value => *n += 1,
            _ => out.push((value, 1)),
        }
    }
    out
}

fn key_columns(
    b: &RecordBatch,
) -> (
    &arrow::array::StringArray,
    &arrow::array::PrimitiveArray<UInt64Type>,
) {
    let n = b.num_columns();
    (
        b.column(n - 2).as_string::<i32>(),
        b.column(n - 1).as_primitive::<UInt64Type>(),
    )
}

/// FNV-1a: a stable hash of a key (the same bucket on every run and machine).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The deduplicated rows of a source, table by table, grouped by business date.
pub struct Dated {
    pub tables: Vec<DatedTable>,
    quarantine: BatchReader,
    _dir: Option<tempfile::TempDir>,
}

impl Dated {
    /// The number of quarantine batches (0: nothing quarantined).
    pub fn quarantined_batches(&self) -> usize {
        self.quarantine.len()
    }

    /// The quarantined rows, batch by batch, read as they are consumed.
    pub fn quarantine(&mut self) -> impl Iterator<Item = Result<RecordBatch>> + Send + '_ {
        let n = self.quarantine.len();
        (0..n).map(|i| self.quarantine.get(i))
    }
}

/// One table's deduplicated rows by business date.
pub struct DatedTable {
    pub name: &'static str,
    staged_schema: SchemaRef,
    /// Date32 -> where its rows are.
    dates: BTreeMap<i32, Vec<Part>>,
    stores: Vec<BatchReader>,
    /// Rows kept.
    pub rows: u64,
}

/// Where rows of a date are: a whole batch of a store (deduplicated rows, grouped by
/// date), or the rows of that date in every batch of a store (keyless rows).
#[derive(Debug, Clone, Copy)]
enum Part {
    Batch(usize, usize),
    Filter(usize),
}

impl DatedTable {
    /// The business dates with rows, ascending.
    pub fn dates(&self) -> Vec<i32> {
        self.dates.keys().copied().collect()
    }

    /// The rows of one date as written to the lake (lineage columns, no internal ones),
    /// batch by batch, read as they are consumed.
    pub fn parts(&mut self, date: i32) -> DateParts<'_> {
        let parts = self.dates.get(&date).cloned().unwrap_or_default();
        let keep = (0..self.staged_schema.fields().len() - INTERNAL_COLUMNS).collect();
        DateParts {
            table: self,
            date,
            parts,
            next: 0,
            batch: 0,
            keep,
        }
    }

    /// [`DatedTable::parts`], collected.
    pub fn read(&mut self, date: i32) -> Result<Vec<RecordBatch>> {
        self.parts(date).collect()
    }
}

/// The batches of one date of a [`DatedTable`].
pub struct DateParts<'a> {
    table: &'a mut DatedTable,
    date: i32,
    parts: Vec<Part>,
    next: usize,
    /// The next batch of a `Part::Filter` store.
    batch: usize,
    keep: Vec<usize>,
}

impl DateParts<'_> {
    fn finish(&self, batch: RecordBatch) -> Result<RecordBatch> {
        batch.project(&self.keep).map_err(|e| IngestError::Write {
            table: self.table.name.to_string(),
            message: e.to_string(),
        })
    }

    fn of_date(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let dates = batch
            .column(batch.num_columns() - 3)
            .as_primitive::<Date32Type>();
        let mask: arrow::array::BooleanArray =
            dates.iter().map(|d| Some(d == Some(self.date))).collect();
        arrow::compute::filter_record_batch(batch, &mask).map_err(|e| IngestError::Write {
            table: self.table.name.to_string(),
            message: e.to_string(),
        })
    }
}

impl Iterator for DateParts<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match *self.parts.get(self.next)? {
                Part::Batch(store, index) => {
                    self.next += 1;
                    let batch = self.table.stores[store].get(index);
                    return Some(batch.and_then(|b| self.finish(b)));
                }
                Part::Filter(store) => {
                    if self.batch >= self.table.stores[store].len() {
                        self.table.stores[store].close();
                        self.next += 1;
                        self.batch = 0;
                        continue;
                    }
                    let index = self.batch;
                    self.batch += 1;
                    let batch = match self.table.stores[store].get(index) {
                        Ok(b) => b,
                        Err(e) => return Some(Err(e)),
                    };
                    match self.of_date(&batch) {
                        Ok(b) if b.num_rows() == 0 => continue,
                        Ok(b) => return Some(self.finish(b)),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::TableStage;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn stage() -> TableStage {
        TableStage::new(
            "t",
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)])),
        )
    }

    /// Stages `(date, key, occurrence, value)` rows in batches of `per_batch`, spills
    /// them through `buckets` of input, returns `(date, value)` pairs kept and the counts.
    fn run(
        rows: &[(i32, Option<&str>, u64, i64)],
        input_bytes: u64,
    ) -> (Vec<(i32, i64)>, SourceCounts, usize) {
        let mut st = stage();
        let mut spill = Spill::new(std::slice::from_ref(&st), input_bytes, None).unwrap();
        let mut counts = SourceCounts::default();
        for chunk in rows.chunks(3) {
            for (date, key, occ, v) in chunk {
                st.row(*date, 0, 1, key.map(|k| (k, *occ)))
                    .i64(Some(*v))
                    .end();
                counts.rows_read += 1;
                counts.rows_loaded += 1;
            }
            let batch = st.take_batch(&["f".to_string()]).unwrap().unwrap();
            spill.add(0, batch).unwrap();
        }
        let buckets = spill.buckets();
        let mut dated = spill.finish(&mut counts, &|_| Ok(vec![])).unwrap();
        let t = &mut dated.tables[0];
        let mut out = vec![];
        for d in t.dates() {
            for b in t.read(d).unwrap() {
                assert_eq!(b.num_columns(), 3, "v, _source_file, _source_line");
                let v = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                out.extend(v.values().iter().map(|v| (d, *v)));
            }
        }
        out.sort();
        (out, counts, buckets)
    }

    #[test]
    fn the_latest_occurrence_of_a_key_wins_in_memory_and_on_disk() {
        let rows = [
            (1, Some("a"), 1, 10),
            (1, Some("b"), 2, 20),
            (2, None, 0, 30),
            (1, Some("a"), 3, 11),
            (3, Some("c"), 4, 40),
            (2, Some("b"), 5, 21),
            (2, None, 0, 31),
            (3, Some("a"), 6, 12),
        ];
        for input in [1, 50 * BUCKET_INPUT_BYTES] {
            let (kept, counts, buckets) = run(&rows, input);
            assert_eq!(buckets, if input == 1 { 1 } else { 50 });
            assert_eq!(kept, [(2, 21), (2, 30), (2, 31), (3, 12), (3, 40)]);
            assert_eq!((counts.rows_loaded, counts.duplicates_collapsed), (5, 3));
            assert!(counts.balanced());
        }
    }

    #[test]
    fn every_occurrence_row_of_a_key_goes_together() {
        // Two rows of one occurrence (an order's line items) survive or go together.
        let rows = [
            (1, Some("o1"), 1, 1),
            (1, Some("o1"), 1, 2),
            (1, Some("o1"), 2, 3),
        ];
        let (kept, counts, _) = run(&rows, 1);
        assert_eq!(kept, [(1, 3)]);
        assert_eq!(counts.duplicates_collapsed, 2);
    }
}
