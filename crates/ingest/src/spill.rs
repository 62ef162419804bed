//! The external staging of one source, which keeps memory bounded whatever the input
//! size. After every chunk the staged rows are spilled into hash buckets by primary key
//! (kept in memory for a small source, Arrow IPC files in a temporary folder otherwise);
//! then each bucket is loaded alone, deduplicated (of all occurrences of a key, across
//! every table of the source, only the latest one's rows are kept) and its survivors
//! regrouped by business date, so that each date can be written as one object.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Date32Type, SchemaRef, UInt64Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use crmflow_core::runs::SourceCounts;

use crate::error::{IngestError, Result};
use crate::stage::{INTERNAL_COLUMNS, TableStage, staged_schema};

/// Input bytes per bucket: a bucket holds about this much text once staged, and the
/// dedup step holds one bucket in memory at a time.
pub const BUCKET_INPUT_BYTES: u64 = 48 << 20;
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
                    *writer = Some(Box::new(
                        FileWriter::try_new(
                            BufWriter::with_capacity(256 << 10, file),
                            &batch.schema(),
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
                let file = File::open(&path).map_err(|e| spill_err(&path, e))?;
                let reader = FileReader::try_new(BufReader::with_capacity(1 << 20, file), None)
                    .map_err(|e| spill_err(&path, e))?;
                debug_assert_eq!(reader.num_batches(), batches);
                Ok(BatchReader::Disk(path, Box::new(reader)))
            }
        }
    }
}

/// The read side of a [`BatchStore`].
enum BatchReader {
    Memory(Vec<RecordBatch>),
    Disk(PathBuf, Box<FileReader<BufReader<File>>>),
}

impl BatchReader {
    fn len(&self) -> usize {
        match self {
            BatchReader::Memory(v) => v.len(),
            BatchReader::Disk(_, r) => r.num_batches(),
        }
    }

    fn get(&mut self, index: usize) -> Result<RecordBatch> {
        match self {
            BatchReader::Memory(v) => v.get(index).cloned().ok_or_else(|| IngestError::Write {
                table: "spill".into(),
                message: format!("no batch {index}"),
            }),
            BatchReader::Disk(path, r) => {
                r.set_index(index).map_err(|e| spill_err(path, e))?;
                match r.next() {
                    Some(b) => b.map_err(|e| spill_err(path, e)),
                    None => Err(spill_err(path, format!("no batch {index}"))),
                }
            }
        }
    }

    fn all(&mut self) -> Result<Vec<RecordBatch>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

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
    buckets: Vec<BatchStore>,
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
                buckets: (0..buckets)
                    .map(|b| {
                        BatchStore::new(
                            dir.as_ref().map(|d| d.path()),
                            format!("{}-{b}.arrow", t.name),
                        )
                    })
                    .collect(),
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
        let mut rows: Vec<Vec<u32>> = vec![vec![]; n];
        for i in 0..batch.num_rows() {
            let bucket = if keys.is_null(i) {
                i % n
            } else {
                (fnv1a(keys.value(i).as_bytes()) % n as u64) as usize
            };
            rows[bucket].push(i as u32);
        }
        for (bucket, indices) in rows.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let part = arrow::compute::take_record_batch(&batch, &UInt32Array::from(indices))
                .map_err(|e| IngestError::Write {
                    table: t.name.to_string(),
                    message: e.to_string(),
                })?;
            t.buckets[bucket].push(part)?;
        }
        Ok(())
    }

    /// Deduplicates every bucket and regroups the survivors by business date. Moves
    /// the collapsed duplicates (rows of the first table of earlier occurrences of a
    /// key) from `counts.rows_loaded` to `counts.duplicates_collapsed`.
    pub fn finish(self, counts: &mut SourceCounts) -> Result<Dated> {
        let Spill {
            tables,
            quarantine,
            buckets,
            dir,
        } = self;
        let dir_path = dir.as_ref().map(|d| d.path().to_path_buf());
        let mut readers: Vec<Vec<Option<BatchReader>>> = Vec::with_capacity(tables.len());
        let mut out: Vec<DatedTable> = Vec::with_capacity(tables.len());
        for t in tables {
            let mut rs = Vec::with_capacity(buckets);
            for store in t.buckets {
                rs.push(Some(store.into_reader()?));
            }
            readers.push(rs);
            out.push(DatedTable {
                name: t.name,
                staged_schema: t.staged_schema,
                dates: BTreeMap::new(),
                stores: vec![],
                rows: 0,
            });
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
            // The latest occurrence of every key, over every table of the source.
            let mut latest: HashMap<&str, u64> = HashMap::new();
            for batches in &loaded {
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
            for (table, batches) in loaded.iter().enumerate() {
                let dated = &mut out[table];
                let mut store = BatchStore::new(
                    dir_path.as_deref(),
                    format!("{}-{bucket}-dated.arrow", dated.name),
                );
                let mut by_date: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
                for b in batches {
                    let (keys, occurrences) = key_columns(b);
                    let dates = b.column(b.num_columns() - 3).as_primitive::<Date32Type>();
                    let mut rows_by_date: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
                    for i in 0..b.num_rows() {
                        let keep = keys.is_null(i)
                            || latest.get(keys.value(i)) == Some(&occurrences.value(i));
                        if keep {
                            rows_by_date
                                .entry(dates.value(i))
                                .or_default()
                                .push(i as u32);
                        } else if table == 0 {
                            counts.rows_loaded = counts.rows_loaded.saturating_sub(1);
                            counts.duplicates_collapsed += 1;
                        }
                    }
                    for (date, rows) in rows_by_date {
                        let part = arrow::compute::take_record_batch(b, &UInt32Array::from(rows))
                            .map_err(|e| IngestError::Write {
                            table: dated.name.to_string(),
                            message: e.to_string(),
                        })?;
                        by_date.entry(date).or_default().push(part);
                    }
                }
                for (date, parts) in by_date {
                    let part = arrow::compute::concat_batches(&dated.staged_schema, &parts)
                        .map_err(|e| IngestError::Write {
                            table: dated.name.to_string(),
                            message: e.to_string(),
                        })?;
                    dated.rows += part.num_rows() as u64;
                    let index = match &store {
                        BatchStore::Memory(v) => v.len(),
                        BatchStore::Disk { batches, .. } => *batches,
                    };
                    dated
                        .dates
                        .entry(date)
                        .or_default()
                        .push((dated.stores.len(), index));
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
    /// Date32 -> (store, batch index) of its parts.
    dates: BTreeMap<i32, Vec<(usize, usize)>>,
    stores: Vec<BatchReader>,
    /// Rows kept.
    pub rows: u64,
}

impl DatedTable {
    /// The business dates with rows, ascending.
    pub fn dates(&self) -> Vec<i32> {
        self.dates.keys().copied().collect()
    }

    /// The rows of one date as written to the lake (lineage columns, no internal ones),
    /// in parts.
    pub fn read(&mut self, date: i32) -> Result<Vec<RecordBatch>> {
        let parts = self.dates.get(&date).cloned().unwrap_or_default();
        let keep: Vec<usize> = (0..self.staged_schema.fields().len() - INTERNAL_COLUMNS).collect();
        let mut out = Vec::with_capacity(parts.len());
        for (store, index) in parts {
            let batch = self.stores[store].get(index)?;
            out.push(batch.project(&keep).map_err(|e| IngestError::Write {
                table: self.name.to_string(),
                message: e.to_string(),
            })?);
        }
        Ok(out)
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
        let mut dated = spill.finish(&mut counts).unwrap();
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
