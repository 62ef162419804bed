//! The external staging of one source, which keeps memory bounded whatever the input
//! size. After every chunk the staged rows are spilled (kept in memory for a small
//! source, spill files in a temporary folder otherwise, [`crate::spill_file`]):
//!
//! - rows of a deduplicated table go to stores by business date (`date % DATE_STORES`),
//!   so each row is written to disk and read back once; the key of every keyed row, with
//!   its occurrence, goes to a key index in hash buckets by key;
//! - keyed rows of a grouped table (GA4 events by session) go to hash buckets by key,
//!   so that a bucket holds every row of its keys for [`crate::formats::Format::derive`].
//!
//! [`Spill::finish`] reads the key index one bucket at a time and marks every occurrence
//! of a key but the latest as a loser (one bit per occurrence); the losers' rows are
//! dropped as the date stores are read for writing. A spill file's batches are Arrow
//! IPC messages, one LZ4 block each unless `ingest.spill_compression = "none"`
//! (figures at [`SpillCompression`]).
//!
//! The rows bound for the date stores wait in memory until they take
//! [`DATE_BUFFER_BYTES`], and each store then writes its rows as one batch: a year of
//! Metrica visits at 1M customers otherwise split every 8 MiB of input into 366
//! batches of about 130 rows, and the per-batch cost of IPC and LZ4 frames, to write
//! and to read back, made up most of the spill's time.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder, UInt32Array};
use arrow::datatypes::{Date32Type, SchemaRef, UInt32Type, UInt64Type};
use crmflow_core::config::SpillCompression;
use crmflow_core::runs::SourceCounts;

use crate::error::{IngestError, Result};
use crate::spill_file::{SpillReader, SpillWriter};
use crate::stage::{TableStage, with_lineage};

/// Input bytes per bucket: the number of key buckets (of the key index, and of a
/// grouped table) is the input size over this; the dedup step holds one bucket at a time.
pub const BUCKET_INPUT_BYTES: u64 = 48 << 20;
/// Date stores per table: a store holds the dates equal modulo this (one date each for
/// a source that spans less than this many days; a store of several dates is read once
/// per date).
const DATE_STORES: i32 = 1024;
/// Rows bound for the date stores of a source wait in memory up to this size (Arrow
/// buffers), then each store writes its waiting rows as one batch. At 1M customers,
/// with the write side's batches coalesced too ([`crate::write`]), Metrica's ingest
/// alone took 38.1-39.5 s and 322 MB peak, against 53.6-61.8 s and 322 MB with every
/// part written to its store at once.
pub const DATE_BUFFER_BYTES: u64 = 64 << 20;
/// Buffer of each spill file: small, as hundreds may be open at once.
const FILE_BUFFER: usize = 64 << 10;
/// Key index entries added to the buckets at once.
const INDEX_BATCH_ROWS: usize = 256 * 1024;
/// At most this many buckets (open spill files per table).
const MAX_BUCKETS: u64 = 512;

/// Record batches appended, then read back by index: in memory, or in a spill file
/// ([`crate::spill_file`], created on the first batch).
enum BatchStore {
    Memory(Vec<RecordBatch>),
    Disk {
        path: PathBuf,
        writer: Option<SpillWriter>,
        compress: bool,
    },
}

fn spill_err(path: &Path, e: impl std::fmt::Display) -> IngestError {
    IngestError::Write {
        table: format!("spill file {}", path.display()),
        message: format!("{e}; check free space in the spill folder (engine.spill_dir)"),
    }
}

impl BatchStore {
    fn new(dir: Option<&Path>, name: String, compress: bool) -> Self {
        match dir {
            None => BatchStore::Memory(vec![]),
            Some(d) => BatchStore::Disk {
                path: d.join(name),
                writer: None,
                compress,
            },
        }
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            BatchStore::Memory(v) => v.push(batch),
            BatchStore::Disk {
                path,
                writer,
                compress,
            } => {
                let w = match writer {
                    Some(w) => w,
                    None => writer.insert(
                        SpillWriter::create(path, batch.schema(), *compress, FILE_BUFFER)
                            .map_err(|e| spill_err(path, e))?,
                    ),
                };
                w.write(&batch).map_err(|e| spill_err(path, e))?;
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
                writer: Some(w),
                ..
            } => Ok(BatchReader::Disk(
                w.finish().map_err(|e| spill_err(&path, e))?,
            )),
        }
    }
}

/// The read side of a [`BatchStore`].
enum BatchReader {
    Memory(Vec<RecordBatch>),
    Disk(SpillReader),
}

impl BatchReader {
    fn len(&self) -> usize {
        match self {
            BatchReader::Memory(v) => v.len(),
            BatchReader::Disk(r) => r.batches(),
        }
    }

    fn get(&mut self, index: usize) -> Result<RecordBatch> {
        match self {
            BatchReader::Memory(v) => v.get(index).cloned().ok_or_else(|| IngestError::Write {
                table: "spill".into(),
                message: format!("no batch {index}"),
            }),
            BatchReader::Disk(r) => r.get(index).map_err(|e| spill_err(r.path(), e)),
        }
    }

    fn all(&mut self) -> Result<Vec<RecordBatch>> {
        let batches = (0..self.len()).map(|i| self.get(i)).collect();
        self.close();
        batches
    }

    /// Closes the file (it reopens on the next read).
    fn close(&mut self) {
        if let BatchReader::Disk(r) = self {
            r.close();
        }
    }
}

/// Makes rows of derived tables from a bucket's rows: `(table, staged batch)` pairs.
pub type Derive<'a> = dyn Fn(&[Vec<RecordBatch>]) -> Result<Vec<(usize, RecordBatch)>> + Sync + 'a;

/// Where the staged rows of one source go between parsing and writing.
pub struct Spill {
    tables: Vec<SpillTable>,
    /// The key index of the deduplicated tables: `(key, occurrence, table, date)` of
    /// every keyed row, in buckets by key ([`index_schema`]).
    index: Vec<BatchStore>,
    /// Key index entries not yet added to the buckets, and their rows.
    pending_index: Vec<RecordBatch>,
    pending_rows: usize,
    /// The memory of the rows waiting for the date stores, and its limit.
    waiting_bytes: u64,
    waiting_limit: u64,
    /// Quarantined rows, as batches of [`crate::write::quarantine_schema`].
    quarantine: BatchStore,
    buckets: usize,
    /// The temporary folder of the spill files (removed on drop); `None`: in memory.
    dir: Option<tempfile::TempDir>,
    /// Compression of the spill files.
    compress: bool,
}

struct SpillTable {
    name: &'static str,
    /// The schema written (with lineage).
    schema: SchemaRef,
    /// Whether rows of a key collapse to its latest occurrence (else the key only
    /// groups rows in a bucket, for [`crate::formats::Format::derive`]).
    dedup: bool,
    /// Keyed rows of a grouped table, by key (empty for a deduplicated table).
    buckets: Vec<BatchStore>,
    /// Rows by `date % DATE_STORES`: every row of a deduplicated table, the keyless
    /// rows of a grouped one.
    by_date: BTreeMap<i32, DateStore>,
}

/// The rows of the dates of one date store.
struct DateStore {
    store: BatchStore,
    /// Rows per date.
    held: BTreeMap<i32, u64>,
    /// Rows not yet written to the store ([`DATE_BUFFER_BYTES`]).
    waiting: Vec<RecordBatch>,
}

impl DateStore {
    /// Writes the waiting rows to the store, as one batch.
    fn flush(&mut self, table: &str) -> Result<()> {
        let batch = match self.waiting.len() {
            0 => return Ok(()),
            1 => self.waiting.remove(0),
            _ => {
                let waiting = std::mem::take(&mut self.waiting);
                arrow::compute::concat_batches(&waiting[0].schema(), &waiting).map_err(|e| {
                    IngestError::Write {
                        table: table.to_string(),
                        message: e.to_string(),
                    }
                })?
            }
        };
        self.store.push(batch)
    }
}

/// Schema of the key index: a keyed row's key, occurrence, table and business date.
fn index_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("occurrence", DataType::UInt64, false),
        Field::new("table", DataType::UInt32, false),
        Field::new("date", DataType::Date32, false),
    ]))
}

/// The occurrences that lost to a later occurrence of their key: one bit per
/// occurrence number (numbers are dense, so this is about one bit per source row).
#[derive(Debug, Default, Clone)]
pub struct Losers(Vec<u64>);

impl Losers {
    fn insert(&mut self, occurrence: u64) {
        let word = (occurrence / 64) as usize;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (occurrence % 64);
    }

    /// Adds the occurrences of `other`.
    fn merge(&mut self, other: &Losers) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (word, theirs) in self.0.iter_mut().zip(&other.0) {
            *word |= theirs;
        }
    }

    /// Whether the rows of this occurrence are dropped (0, no key, never is).
    pub fn contains(&self, occurrence: u64) -> bool {
        self.0
            .get((occurrence / 64) as usize)
            .is_some_and(|w| w & (1 << (occurrence % 64)) != 0)
    }
}

impl Spill {
    /// A spill for the tables of a source whose input is `input_bytes` long: in memory
    /// when it fits one bucket, else one bucket per [`BUCKET_INPUT_BYTES`] in a new
    /// temporary folder under `spill_dir` (the system temp folder when `None`), its files
    /// compressed as `compression` says.
    pub fn new(
        tables: &[TableStage],
        input_bytes: u64,
        spill_dir: Option<&Path>,
        compression: SpillCompression,
    ) -> Result<Self> {
        let compress = compression == SpillCompression::Lz4;
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
        let store = |name: String| BatchStore::new(dir.as_ref().map(|d| d.path()), name, compress);
        let tables = tables
            .iter()
            .map(|t| SpillTable {
                name: t.name,
                schema: with_lineage(t.schema()),
                dedup: t.dedup,
                buckets: match t.dedup {
                    true => vec![],
                    false => (0..buckets)
                        .map(|b| store(format!("{}-{b}.spill", t.name)))
                        .collect(),
                },
                by_date: BTreeMap::new(),
            })
            .collect();
        let index = (0..buckets)
            .map(|b| store(format!("index-{b}.spill")))
            .collect();
        let quarantine = store("quarantine.spill".to_string());
        Ok(Spill {
            tables,
            index,
            pending_index: vec![],
            pending_rows: 0,
            waiting_bytes: 0,
            waiting_limit: DATE_BUFFER_BYTES,
            quarantine,
            buckets,
            dir,
            compress,
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

    /// Spills a staged batch of table `table` ([`TableStage::take_batch`]). Rows of a
    /// deduplicated table go to the stores of their business dates, and their keys to
    /// the key index; keyed rows of a grouped table go to the bucket of their key.
    pub fn add(&mut self, table: usize, batch: RecordBatch) -> Result<()> {
        self.add_all(table, &[batch])
    }

    /// [`Spill::add`] for several staged batches of one table at once: their rows are
    /// routed with one copy (an interleave), without concatenating them first.
    pub fn add_all(&mut self, table: usize, batches: &[RecordBatch]) -> Result<()> {
        let n = self.buckets;
        let compress = self.compress;
        let dir = self.dir.as_ref().map(|d| d.path().to_path_buf());
        let Some(t) = self.tables.get_mut(table) else {
            return Ok(());
        };
        let mut entries = vec![];
        // Where each row goes, `(target, (batch, row))`: a key bucket (keyed rows of a
        // grouped table), or the store of its date.
        let mut targets: Vec<(Target, (u32, u32))> = vec![];
        for (index, batch) in batches.iter().enumerate() {
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
            if t.dedup && keys.null_count() < keys.len() {
                entries.push(index_entries(table, batch, t.name)?);
            }
            targets.extend((0..batch.num_rows()).map(|i| {
                let target = if t.dedup || keys.is_null(i) {
                    Target::DateStore(dates.value(i).rem_euclid(DATE_STORES))
                } else {
                    Target::Bucket((fnv1a(keys.value(i).as_bytes()) % n as u64) as u32)
                };
                (target, (index as u32, i as u32))
            }));
        }
        // A deduplicated table's keys are in the key index: its rows go to the date
        // stores without them (a Metrica visit id is 19 of about 340 bytes of a visit).
        let keyless: Vec<RecordBatch>;
        let batches = match t.dedup {
            true => {
                keyless = batches
                    .iter()
                    .map(without_keys)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| IngestError::Write {
                        table: t.name.to_string(),
                        message: e.to_string(),
                    })?;
                &keyless[..]
            }
            false => batches,
        };
        let parts = match (batches, targets.first()) {
            ([batch], Some((first, _))) if targets.iter().all(|(target, _)| target == first) => {
                vec![(*first, batch.clone())]
            }
            _ => {
                let slots = n + DATE_STORES as usize;
                let targets = sorted_by_slot(targets, slots, |target| target.slot(n));
                split_runs(batches, &targets, t.name)?
            }
        };
        for (target, part) in parts {
            match target {
                Target::Bucket(bucket) => t.buckets[bucket as usize].push(part)?,
                Target::DateStore(slot) => {
                    let to = t.by_date.entry(slot).or_insert_with(|| DateStore {
                        store: BatchStore::new(
                            dir.as_deref(),
                            format!("{}-date-{slot}.spill", t.name),
                            compress,
                        ),
                        held: BTreeMap::new(),
                        waiting: vec![],
                    });
                    let part_dates = part
                        .column(part.num_columns() - 3)
                        .as_primitive::<Date32Type>();
                    for (date, rows) in runs(part_dates.values().iter().copied()) {
                        *to.held.entry(date).or_default() += rows as u64;
                    }
                    match to.store {
                        BatchStore::Memory(_) => to.store.push(part)?,
                        BatchStore::Disk { .. } => {
                            self.waiting_bytes += slice_bytes(&part);
                            to.waiting.push(part);
                        }
                    }
                }
            }
        }
        if self.waiting_bytes >= self.waiting_limit {
            self.flush_waiting()?;
        }
        for entries in entries {
            self.pending_rows += entries.num_rows();
            self.pending_index.push(entries);
        }
        if self.pending_rows >= INDEX_BATCH_ROWS {
            self.flush_index()?;
        }
        Ok(())
    }

    /// Writes the rows waiting for every date store.
    fn flush_waiting(&mut self) -> Result<()> {
        for t in &mut self.tables {
            for store in t.by_date.values_mut() {
                store.flush(t.name)?;
            }
        }
        self.waiting_bytes = 0;
        Ok(())
    }

    /// Adds the pending key index entries to the buckets of their keys.
    fn flush_index(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending_index);
        self.pending_rows = 0;
        if pending.is_empty() {
            return Ok(());
        }
        let entries = arrow::compute::concat_batches(&index_schema(), &pending).map_err(|e| {
            IngestError::Write {
                table: "key index".into(),
                message: e.to_string(),
            }
        })?;
        drop(pending);
        let n = self.index.len();
        if n == 1 {
            return self.index[0].push(entries);
        }
        let keys = entries.column(0).as_string::<i32>();
        let targets: Vec<(u32, (u32, u32))> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let bucket = fnv1a(key.unwrap_or_default().as_bytes()) % n as u64;
                (bucket as u32, (0, i as u32))
            })
            .collect();
        let targets = sorted_by_slot(targets, n, |bucket| bucket as usize);
        for (bucket, part) in split_runs(&[entries], &targets, "key index")? {
            self.index[bucket as usize].push(part)?;
        }
        Ok(())
    }

    /// Finds the rows to drop (of all occurrences of a key, across every deduplicated
    /// table, only the latest one's rows are kept), adds the rows `derive` makes of each
    /// bucket of grouped rows (batches per table; it returns `(table, batch)` pairs of
    /// staged batches), and regroups those by business date. Moves the collapsed
    /// duplicates (rows of the first table of earlier occurrences of a key) from
    /// `counts.rows_loaded` to `counts.duplicates_collapsed`. `file_names` are the
    /// source's files by index (the staged `_file`), for the `_source_file` written out.
    pub fn finish(
        mut self,
        counts: &mut SourceCounts,
        derive: &Derive<'_>,
        file_names: &[String],
    ) -> Result<Dated> {
        self.flush_index()?;
        self.flush_waiting()?;
        let Spill {
            tables,
            index,
            pending_index: _,
            pending_rows: _,
            waiting_bytes: _,
            waiting_limit: _,
            quarantine,
            buckets,
            dir,
            compress,
        } = self;
        let dir_path = dir.as_ref().map(|d| d.path().to_path_buf());
        let verdict = Verdict::of_index(index)?;
        let (losers, dropped) = (verdict.losers, verdict.dropped);
        counts.rows_loaded = counts.rows_loaded.saturating_sub(verdict.duplicates);
        counts.duplicates_collapsed += verdict.duplicates;
        let losers = std::sync::Arc::new(losers);
        let file_names: std::sync::Arc<[String]> = file_names.into();
        let mut bucket_readers: Vec<Vec<BatchReader>> = Vec::with_capacity(tables.len());
        let mut out: Vec<DatedTable> = Vec::with_capacity(tables.len());
        for (table, t) in tables.into_iter().enumerate() {
            bucket_readers.push(
                t.buckets
                    .into_iter()
                    .map(BatchStore::into_reader)
                    .collect::<Result<_>>()?,
            );
            let mut dated = DatedTable {
                name: t.name,
                schema: t.schema,
                dedup: t.dedup,
                losers: losers.clone(),
                file_names: file_names.clone(),
                dates: BTreeMap::new(),
                stores: vec![],
            };
            // Date stores are read as they are, dropping the losers' rows.
            for (_, DateStore { store, held, .. }) in t.by_date {
                let index = dated.stores.len();
                dated
                    .stores
                    .push(std::sync::Mutex::new(store.into_reader()?));
                for (date, rows) in held {
                    if dropped.get(&(table as u32, date)) != Some(&rows) {
                        let parts = dated.dates.entry(date).or_default();
                        parts.push(Part::Filter(index));
                    }
                }
            }
            out.push(dated);
        }
        if out.iter().any(|t| !t.dedup) {
            let names: Vec<&'static str> = out.iter().map(|t| t.name).collect();
            let grouped = GroupedBuckets {
                names: &names,
                dir: dir_path.as_deref(),
                compress,
                derive,
            };
            for (table, regrouped) in grouped.regroup(bucket_readers, buckets)? {
                out[table].add_regrouped(regrouped);
            }
        }
        Ok(Dated {
            tables: out,
            quarantine: quarantine.into_reader()?,
            _dir: dir,
        })
    }
}

/// Works through `items` on every core: item `i` goes to thread `i % threads`, which
/// folds its items, in order, into an accumulator of its own (`step(acc, i, item)`);
/// returns the threads' accumulators. `panicked` is the error of a thread that panics.
fn on_every_core<T: Send, A: Send>(
    items: Vec<T>,
    panicked: &str,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, usize, T) -> Result<()> + Sync,
) -> Result<Vec<A>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| vec![]).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let (init, step) = (&init, &step);
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    let mut acc = init();
                    for (i, item) in share {
                        step(&mut acc, i, item)?;
                    }
                    Ok(acc)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| {
                thread.join().unwrap_or_else(|_| {
                    Err(IngestError::Write {
                        table: "spill".into(),
                        message: panicked.to_string(),
                    })
                })
            })
            .collect()
    })
}

/// What the key index says: the occurrences that lost to a later one of their key,
/// the rows dropped per `(table, date)` (to know which dates keep rows), and the
/// collapsed duplicates (losing rows of the first table).
#[derive(Default)]
struct Verdict {
    losers: Losers,
    dropped: HashMap<(u32, i32), u64>,
    duplicates: u64,
}

impl Verdict {
    /// Judges the buckets of the key index on every core, each thread one bucket at a
    /// time (at 1M customers Metrica's 36 buckets took 3.3 s on one core).
    fn of_index(index: Vec<BatchStore>) -> Result<Self> {
        let judged = on_every_core(
            index,
            "a deduplicating thread panicked",
            Verdict::default,
            |verdict, _, store| verdict.judge(store),
        )?;
        let mut all = Verdict::default();
        for verdict in judged {
            all.losers.merge(&verdict.losers);
            for (at, rows) in verdict.dropped {
                *all.dropped.entry(at).or_default() += rows;
            }
            all.duplicates += verdict.duplicates;
        }
        Ok(all)
    }

    /// Adds one bucket of the key index: of all occurrences of a key, the latest wins.
    fn judge(&mut self, store: BatchStore) -> Result<()> {
        let batches = store.into_reader()?.all()?;
        let columns: Vec<_> = batches.iter().map(index_columns).collect();
        let mut latest: HashMap<&str, u64> = HashMap::default();
        for (keys, occurrences, _, _) in &columns {
            for (key, o) in keys.iter().zip(occurrences.values()) {
                let key = key.unwrap_or_default();
                latest
                    .entry(key)
                    .and_modify(|m| *m = (*m).max(*o))
                    .or_insert(*o);
            }
        }
        for (keys, occurrences, tables, dates) in &columns {
            for i in 0..keys.len() {
                let o = occurrences.value(i);
                if latest.get(keys.value(i)) == Some(&o) {
                    continue;
                }
                self.losers.insert(o);
                *self
                    .dropped
                    .entry((tables.value(i), dates.value(i)))
                    .or_default() += 1;
                if tables.value(i) == 0 {
                    self.duplicates += 1;
                }
            }
        }
        Ok(())
    }
}

/// A staged batch with every `_key` NULL.
fn without_keys(batch: &RecordBatch) -> arrow::error::Result<RecordBatch> {
    let key = batch.num_columns() - 2;
    let mut columns = batch.columns().to_vec();
    columns[key] = arrow::array::new_null_array(columns[key].data_type(), batch.num_rows());
    RecordBatch::try_new(batch.schema(), columns)
}

/// The key index entries of the keyed rows of a staged batch of a deduplicated table.
fn index_entries(table: usize, batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let err = |e: arrow::error::ArrowError| IngestError::Write {
        table: name.to_string(),
        message: e.to_string(),
    };
    let n = batch.num_columns();
    let keyed = arrow::compute::is_not_null(batch.column(n - 2)).map_err(err)?;
    let tables = UInt32Array::from_value(table as u32, batch.num_rows());
    RecordBatch::try_new(
        index_schema(),
        vec![
            batch.column(n - 2).clone(),
            batch.column(n - 1).clone(),
            std::sync::Arc::new(tables),
            batch.column(n - 3).clone(),
        ],
    )
    .and_then(|b| arrow::compute::filter_record_batch(&b, &keyed))
    .map_err(err)
}

/// The columns of a key index batch.
fn index_columns(
    b: &RecordBatch,
) -> (
    &arrow::array::StringArray,
    &arrow::array::PrimitiveArray<UInt64Type>,
    &arrow::array::UInt32Array,
    &arrow::array::Date32Array,
) {
    (
        b.column(0).as_string::<i32>(),
        b.column(1).as_primitive::<UInt64Type>(),
        b.column(2).as_primitive(),
        b.column(3).as_primitive::<Date32Type>(),
    )
}

/// Where [`Spill::add`] sends a staged row: a key bucket, or the date store of a
/// keyless row (`date % DATE_STORES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Bucket(u32),
    DateStore(i32),
}

impl Target {
    /// The target's place in `(target, ...)` order among `buckets` key buckets and the
    /// date stores after them: the slot of [`sorted_by_slot`].
    fn slot(self, buckets: usize) -> usize {
        match self {
            Target::Bucket(bucket) => bucket as usize,
            Target::DateStore(store) => buckets + store as usize,
        }
    }
}

/// `targets` (`(target, (batch, row))`, in `(batch, row)` order) sorted as
/// `sort_unstable` would sort them, in linear time: a counting sort by `slot(target)`,
/// a number below `slots` in the order of the targets. It is stable, so rows keep
/// their order within a target. A comparison sort of every staged row took 4% of
/// the message events' ingest.
fn sorted_by_slot<T: Copy>(
    targets: Vec<(T, (u32, u32))>,
    slots: usize,
    slot: impl Fn(T) -> usize,
) -> Vec<(T, (u32, u32))> {
    let mut starts = vec![0usize; slots + 1];
    for (target, _) in &targets {
        starts[slot(*target) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut sorted = targets.clone();
    for item in targets {
        let at = &mut starts[slot(item.0)];
        sorted[*at] = item;
        *at += 1;
    }
    sorted
}

/// Splits `batches` by `targets` (`(target, (batch, row))` sorted): one interleave of
/// every row in that order (a `take` when there is one batch), then a zero-copy slice
/// per run of equal targets.
///
/// A row is copied twice on its way to a date store: here, and when its store writes
/// its waiting parts as one batch. Copying it once, the stores keeping the places of
/// their rows in the staged batches and interleaving them out when they write, made the
/// same output slower: the message events at 1M customers took 36.6-38.7 s (53-56 s
/// of user CPU) against 25.7-33.9 s (44-47 s) this way (three interleaved pairs);
/// not profiled, but each store's interleave takes every waiting batch where the split
/// takes those of one spill.
fn split_runs<T: Copy + PartialEq>(
    batches: &[RecordBatch],
    targets: &[(T, (u32, u32))],
    table: &str,
) -> Result<Vec<(T, RecordBatch)>> {
    let err = |e: arrow::error::ArrowError| IngestError::Write {
        table: table.to_string(),
        message: e.to_string(),
    };
    let sorted = match batches {
        [batch] => {
            let indices = UInt32Array::from_iter_values(targets.iter().map(|(_, (_, row))| *row));
            arrow::compute::take_record_batch(batch, &indices).map_err(err)?
        }
        _ => {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let indices: Vec<(usize, usize)> = targets
                .iter()
                .map(|(_, (batch, row))| (*batch as usize, *row as usize))
                .collect();
            arrow::compute::interleave_record_batch(&refs, &indices).map_err(err)?
        }
    };
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

/// The memory of a batch's rows (of a slice: its share of the buffers only).
fn slice_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
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
    /// The schema written (with lineage).
    schema: SchemaRef,
    /// Whether the rows of [`Losers`] are dropped as its date stores are read.
    dedup: bool,
    losers: std::sync::Arc<Losers>,
    /// The source's files by index, for `_source_file`.
    file_names: std::sync::Arc<[String]>,
    /// Date32 -> where its rows are.
    dates: BTreeMap<i32, Vec<Part>>,
    /// Each store locked on its own, so that several threads read dates at once.
    stores: Vec<std::sync::Mutex<BatchReader>>,
}

/// Where rows of a date are: a whole batch of a store (grouped and derived rows,
/// regrouped by date), or the rows of that date, losers dropped, in every batch of a
/// date store.
#[derive(Debug, Clone, Copy)]
enum Part {
    Batch(usize, usize),
    Filter(usize),
}

/// The buckets of the grouped tables of a source (GA4 events by session), turned into
/// date stores: each bucket read whole, its derived rows (sessions) made, and every
/// table's rows of the bucket regrouped by date into a store of their own.
struct GroupedBuckets<'a> {
    /// The source's tables, by index.
    names: &'a [&'static str],
    dir: Option<&'a Path>,
    compress: bool,
    derive: &'a Derive<'a>,
}

/// A bucket's rows of one table regrouped by date: the store, and the date of each of
/// its batches.
struct Regrouped {
    store: BatchReader,
    dates: Vec<i32>,
}

impl GroupedBuckets<'_> {
    /// Regroups every bucket (`readers[table][bucket]`) on every core, each thread one
    /// bucket at a time (at 1M customers GA4's 109 buckets were one core's work); returns
    /// `(table, regrouped)` in bucket order, so that a date's parts keep the read order.
    fn regroup(
        &self,
        readers: Vec<Vec<BatchReader>>,
        buckets: usize,
    ) -> Result<Vec<(usize, Regrouped)>> {
        let mut by_bucket: Vec<Vec<Option<BatchReader>>> = (0..buckets).map(|_| vec![]).collect();
        for table_readers in readers {
            let mut table_readers = table_readers.into_iter();
            for bucket in &mut by_bucket {
                bucket.push(table_readers.next());
            }
        }
        let done = on_every_core(
            by_bucket,
            "a thread regrouping the spill's buckets panicked",
            Vec::new,
            |done, bucket, bucket_readers| {
                for (table, regrouped) in self.bucket(bucket, bucket_readers)? {
                    done.push((bucket, table, regrouped));
                }
                Ok(())
            },
        )?;
        let mut all: Vec<(usize, usize, Regrouped)> = done.into_iter().flatten().collect();
        all.sort_by_key(|(bucket, table, _)| (*bucket, *table));
        Ok(all.into_iter().map(|(_, table, r)| (table, r)).collect())
    }

    /// One bucket: its rows of every table, the derived rows added, regrouped by date.
    fn bucket(
        &self,
        bucket: usize,
        readers: Vec<Option<BatchReader>>,
    ) -> Result<Vec<(usize, Regrouped)>> {
        let mut loaded: Vec<Vec<RecordBatch>> = vec![];
        for reader in readers {
            loaded.push(match reader {
                Some(mut r) => r.all()?,
                None => vec![],
            });
        }
        for (table, batch) in (self.derive)(&loaded)? {
            if let Some(batches) = loaded.get_mut(table) {
                batches.push(batch);
            }
        }
        let mut regrouped = vec![];
        for ((table, batches), name) in loaded.iter().enumerate().zip(self.names) {
            let store = BatchStore::new(
                self.dir,
                format!("{name}-{bucket}-dated.spill"),
                self.compress,
            );
            if let Some(r) = regroup_by_date(name, store, batches)? {
                regrouped.push((table, r));
            }
        }
        Ok(regrouped)
    }
}

/// Rows (staged batches) regrouped by date into a new store: the rows in date order
/// (read order within a date), taken at once, then one batch per date. `None` when
/// there is no row.
fn regroup_by_date(
    name: &'static str,
    mut store: BatchStore,
    batches: &[RecordBatch],
) -> Result<Option<Regrouped>> {
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
    if order.is_empty() {
        return Ok(None);
    }
    order.sort_unstable();
    let sorted = interleave_runs(batches, &order, name)?;
    let mut start = 0;
    let mut dates = vec![];
    for (date, rows) in runs(order.iter().map(|((date, _), _)| *date)) {
        store.push(sorted.slice(start, rows))?;
        dates.push(date);
        start += rows;
    }
    Ok(Some(Regrouped {
        store: store.into_reader()?,
        dates,
    }))
}

impl DatedTable {
    /// Adds a bucket's rows regrouped by date: each batch of its store a part of its date.
    fn add_regrouped(&mut self, regrouped: Regrouped) {
        let store = self.stores.len();
        for (index, date) in regrouped.dates.into_iter().enumerate() {
            self.dates
                .entry(date)
                .or_default()
                .push(Part::Batch(store, index));
        }
        self.stores.push(std::sync::Mutex::new(regrouped.store));
    }

    /// The business dates with rows, ascending.
    pub fn dates(&self) -> Vec<i32> {
        self.dates.keys().copied().collect()
    }

    /// The rows of one date as written to the lake (lineage columns, no internal ones),
    /// batch by batch, read as they are consumed. Threads may read different dates at
    /// once.
    pub fn parts(&self, date: i32) -> DateParts<'_> {
        let parts = self.dates.get(&date).cloned().unwrap_or_default();
        DateParts {
            table: self,
            date,
            parts,
            next: 0,
            batch: 0,
        }
    }

    /// Store `index`, locked while a batch is read.
    fn store(&self, index: usize) -> Result<std::sync::MutexGuard<'_, BatchReader>> {
        self.stores[index].lock().map_err(|_| IngestError::Write {
            table: self.name.to_string(),
            message: "a thread reading the spill panicked".into(),
        })
    }

    /// [`DatedTable::parts`], collected.
    pub fn read(&self, date: i32) -> Result<Vec<RecordBatch>> {
        self.parts(date).collect()
    }
}

/// The batches of one date of a [`DatedTable`].
pub struct DateParts<'a> {
    table: &'a DatedTable,
    date: i32,
    parts: Vec<Part>,
    next: usize,
    /// The next batch of a `Part::Filter` store.
    batch: usize,
}

impl DateParts<'_> {
    /// A staged batch as written: without the internal columns, the file index `_file`
    /// as the file's path `_source_file`.
    fn finish(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let err = |message: String| IngestError::Write {
            table: self.table.name.to_string(),
            message,
        };
        // The written schema's columns lead the staged ones: lineage last, `_file` first.
        let written = self.table.schema.fields().len();
        let mut columns: Vec<ArrayRef> = batch.columns()[..written].to_vec();
        let file = written - 2;
        let indices = columns[file].as_primitive::<UInt32Type>();
        let mut paths = StringBuilder::with_capacity(indices.len(), 0);
        for index in indices.values() {
            let path = self.table.file_names.get(*index as usize);
            paths.append_value(path.ok_or_else(|| err(format!("no source file {index}")))?);
        }
        columns[file] = std::sync::Arc::new(paths.finish());
        RecordBatch::try_new(self.table.schema.clone(), columns).map_err(|e| err(e.to_string()))
    }

    fn of_date(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_columns();
        let dates = batch.column(n - 3).as_primitive::<Date32Type>();
        let occurrences = batch.column(n - 1).as_primitive::<UInt64Type>();
        let losers = &self.table.losers;
        let dedup = self.table.dedup;
        let mask: arrow::array::BooleanArray = dates
            .values()
            .iter()
            .zip(occurrences.values())
            .map(|(d, o)| Some(*d == self.date && !(dedup && losers.contains(*o))))
            .collect();
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
            let table = self.table;
            match *self.parts.get(self.next)? {
                Part::Batch(store, index) => {
                    self.next += 1;
                    let batch = table.store(store).and_then(|mut s| s.get(index));
                    return Some(batch.and_then(|b| self.finish(b)));
                }
                Part::Filter(store) => {
                    let index = self.batch;
                    let batch = match table.store(store) {
                        Ok(mut s) if index >= s.len() => {
                            s.close();
                            self.next += 1;
                            self.batch = 0;
                            continue;
                        }
                        Ok(mut s) => s.get(index),
                        Err(e) => Err(e),
                    };
                    self.batch += 1;
                    match batch.and_then(|b| self.of_date(&b)) {
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
        run_with(
            rows,
            input_bytes,
            DATE_BUFFER_BYTES,
            SpillCompression::default(),
        )
    }

    /// [`run`] with rows waiting for the date stores up to `waiting_limit` bytes, and
    /// spill files compressed as `compression` says.
    fn run_with(
        rows: &[(i32, Option<&str>, u64, i64)],
        input_bytes: u64,
        waiting_limit: u64,
        compression: SpillCompression,
    ) -> (Vec<(i32, i64)>, SourceCounts, usize) {
        let mut st = stage();
        let mut spill =
            Spill::new(std::slice::from_ref(&st), input_bytes, None, compression).unwrap();
        spill.waiting_limit = waiting_limit;
        let mut counts = SourceCounts::default();
        let mut batches = vec![];
        for chunk in rows.chunks(3) {
            for (date, key, occ, v) in chunk {
                st.row(*date, 0, 1, key.map(|k| (k, *occ)))
                    .i64(Some(*v))
                    .end();
                counts.rows_read += 1;
                counts.rows_loaded += 1;
            }
            batches.push(st.take_batch().unwrap().unwrap());
        }
        // Added two batches at a time (as parallel parsing does), the last one alone
        // when their number is odd.
        for pair in batches.chunks(2) {
            spill.add_all(0, pair).unwrap();
        }
        let buckets = spill.buckets();
        let files = ["f.csv".to_string()];
        let mut dated = spill.finish(&mut counts, &|_| Ok(vec![]), &files).unwrap();
        let t = &mut dated.tables[0];
        let mut out = vec![];
        for d in t.dates() {
            for b in t.read(d).unwrap() {
                assert_eq!(b.num_columns(), 3, "v, _source_file, _source_line");
                let paths = b.column(1).as_string::<i32>();
                assert!(paths.iter().all(|p| p == Some("f.csv")), "file 0's path");
                let v = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                out.extend(v.values().iter().map(|v| (d, *v)));
            }
        }
        out.sort_by_key(|(date, _)| *date);
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
            // Read order within a date.
            assert_eq!(kept, [(2, 30), (2, 21), (2, 31), (3, 40), (3, 12)]);
            assert_eq!((counts.rows_loaded, counts.duplicates_collapsed), (5, 3));
            assert!(counts.balanced());
        }
    }

    /// Spills `(date, key, value)` rows of a grouped table through `input_bytes` of
    /// input, deriving per bucket one row per key (its rows' count, on its earliest
    /// date); returns both tables as `(date, value)` in the order they are written.
    fn run_grouped(rows: &[(i32, Option<&str>, i64)], input_bytes: u64) -> [Vec<(i32, i64)>; 2] {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut grouped = TableStage::grouped("g", schema.clone());
        let tables = [
            TableStage::grouped("g", schema.clone()),
            TableStage::new("d", schema),
        ];
        let mut spill = Spill::new(&tables, input_bytes, None, SpillCompression::Lz4).unwrap();
        let mut counts = SourceCounts::default();
        for chunk in rows.chunks(7) {
            for (date, key, v) in chunk {
                grouped
                    .row(*date, 0, 1, key.map(|k| (k, 0)))
                    .i64(Some(*v))
                    .end();
            }
            spill
                .add(0, grouped.take_batch().unwrap().unwrap())
                .unwrap();
        }
        let derive = |bucket: &[Vec<RecordBatch>]| {
            let mut per_key: BTreeMap<String, (i32, i64)> = BTreeMap::new();
            for b in &bucket[0] {
                let keys = b.column(b.num_columns() - 2).as_string::<i32>();
                let dates = b.column(b.num_columns() - 3).as_primitive::<Date32Type>();
                for (key, date) in keys.iter().zip(dates.values()) {
                    if let Some(key) = key {
                        let e = per_key.entry(key.to_string()).or_insert((*date, 0));
                        e.0 = e.0.min(*date);
                        e.1 += 1;
                    }
                }
            }
            let mut d = TableStage::new(
                "d",
                Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)])),
            );
            for (date, n) in per_key.values() {
                d.row(*date, 0, 1, None).i64(Some(*n)).end();
            }
            Ok(d.take_batch()?.map(|b| vec![(1, b)]).unwrap_or_default())
        };
        let files = ["f.csv".to_string()];
        let mut dated = spill.finish(&mut counts, &derive, &files).unwrap();
        dated
            .tables
            .iter_mut()
            .map(|t| {
                let mut out = vec![];
                for d in t.dates() {
                    for b in t.read(d).unwrap() {
                        let v = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                        out.extend(v.values().iter().map(|v| (d, *v)));
                    }
                }
                out
            })
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }

    #[test]
    fn grouped_buckets_regroup_on_every_core_in_a_fixed_order() {
        let keys: Vec<String> = (0..40).map(|k| format!("session{k}")).collect();
        let rows: Vec<(i32, Option<&str>, i64)> = (0..500i64)
            .map(|i| {
                let key = (i % 5 != 0).then(|| keys[(i * 7 % 40) as usize].as_str());
                ((i * 11 % 13) as i32, key, i)
            })
            .collect();
        let mut expected_rows: Vec<(i32, i64)> = rows.iter().map(|r| (r.0, r.2)).collect();
        expected_rows.sort();
        let mut expected_derived: Vec<(i32, i64)> = keys
            .iter()
            .filter_map(|k| {
                let of_key = rows.iter().filter(|r| r.1 == Some(k.as_str()));
                let first = of_key.clone().map(|r| r.0).min()?;
                Some((first, of_key.count() as i64))
            })
            .collect();
        expected_derived.sort();
        let on_disk = run_grouped(&rows, 7 * BUCKET_INPUT_BYTES);
        for ([grouped, derived], buckets) in [(run_grouped(&rows, 1), 1), (on_disk.clone(), 7)] {
            let mut grouped = grouped.clone();
            grouped.sort();
            assert_eq!(grouped, expected_rows, "every row once, {buckets} buckets");
            let mut derived = derived.clone();
            derived.sort();
            assert_eq!(
                derived, expected_derived,
                "one row per key, {buckets} buckets"
            );
        }
        // The threads' schedule does not show in the written order.
        for _ in 0..3 {
            assert_eq!(run_grouped(&rows, 7 * BUCKET_INPUT_BYTES), on_disk);
        }
    }

    proptest::proptest! {
        /// The counting sort orders rows as a comparison sort of `(target, (batch, row))`
        /// does, for key buckets and date stores mixed, over several batches.
        #[test]
        fn sorted_by_slot_equals_sort_unstable(
            rows in proptest::collection::vec((proptest::bool::ANY, 0u32..7, 0i32..DATE_STORES), 0..300),
            batch_rows in 1usize..50,
        ) {
            let buckets = 7;
            let targets: Vec<(Target, (u32, u32))> = rows
                .iter()
                .enumerate()
                .map(|(i, (keyed, bucket, store))| {
                    let target = match keyed {
                        true => Target::Bucket(*bucket),
                        false => Target::DateStore(*store),
                    };
                    (target, ((i / batch_rows) as u32, (i % batch_rows) as u32))
                })
                .collect();
            let mut expected = targets.clone();
            expected.sort_unstable();
            let sorted = sorted_by_slot(targets, buckets + DATE_STORES as usize, |t| t.slot(buckets));
            proptest::prop_assert_eq!(sorted, expected);
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

    #[test]
    fn rows_waiting_for_the_date_stores_come_back_whole_and_in_order() {
        // 40 dates, 5 rows each, keys repeating across dates and batches, on disk.
        let keys: Vec<String> = (0..60).map(|k| format!("k{k}")).collect();
        let rows: Vec<(i32, Option<&str>, u64, i64)> = (0..200u64)
            .map(|i| {
                let key = (i % 3 != 0).then(|| keys[(i * 7 % 60) as usize].as_str());
                (
                    (i * 13 % 40) as i32,
                    key,
                    if key.is_some() { i + 1 } else { 0 },
                    i as i64,
                )
            })
            .collect();
        // Each key keeps its latest occurrence only; keyless rows all stay; read order.
        let latest: std::collections::HashSet<i64> = keys
            .iter()
            .filter_map(|k| {
                rows.iter()
                    .filter(|r| r.1 == Some(k.as_str()))
                    .map(|r| r.3)
                    .max()
            })
            .collect();
        let mut expected: Vec<(i32, i64)> = rows
            .iter()
            .filter(|r| r.1.is_none() || latest.contains(&r.3))
            .map(|r| (r.0, r.3))
            .collect();
        expected.sort_by_key(|(date, _)| *date);
        // Written on every spill (1 byte), every few spills (64), and at the end; to
        // uncompressed and to LZ4 spill files.
        let settings = [1, 64, DATE_BUFFER_BYTES].into_iter().flat_map(|limit| {
            [SpillCompression::None, SpillCompression::Lz4].map(|compression| (limit, compression))
        });
        for (limit, compression) in settings {
            let (kept, counts, buckets) =
                run_with(&rows, 5 * BUCKET_INPUT_BYTES, limit, compression);
            assert_eq!(buckets, 5);
            assert_eq!(kept, expected, "limit {limit}");
            assert_eq!(
                counts.duplicates_collapsed as usize,
                rows.len() - expected.len()
            );
            assert!(counts.balanced());
        }
    }
}
