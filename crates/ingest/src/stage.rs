//! Staging of one chunk's rows before they are spilled: typed column builders per
//! canonical table, with the business date of every row (its partition) and its primary
//! key occurrence (deduplicated later, bucket by bucket, in [`crate::spill`]), the
//! cut-off, quarantine and the counts.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Array, Date32Builder, Float64Builder,
    Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt64Type};
use arrow::record_batch::RecordBatch;
use crmflow_core::runs::SourceCounts;

use crate::error::{IngestError, Result};

/// A timestamp column type: microseconds, UTC.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A list-of-text column type.
pub fn str_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// A list-of-float column type.
pub fn f64_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

/// The lineage column of a raw table's row: the path of the file it was read from.
pub const SOURCE_FILE_COLUMN: &str = "_source_file";

/// A canonical schema with the lineage columns every raw table carries.
pub fn with_lineage(schema: &SchemaRef) -> SchemaRef {
    extended(
        schema,
        &[
            (SOURCE_FILE_COLUMN, DataType::Utf8, false),
            ("_source_line", DataType::UInt64, false),
        ],
    )
}

/// A canonical schema with lineage and the internal staging columns: after the lineage,
/// the row's business date `_date`, its primary key `_key` and the occurrence of that
/// key `_occurrence` (the latest occurrence wins). The source file is staged as its
/// index in [`Staging::file_names`] (`_file`, ahead of `_source_line`), and written out
/// as the path `_source_file` by [`crate::spill::DatedTable::parts`]: the path,
/// repeated on every row, was 40% of the bytes of a staged message event, each copied
/// and compressed through the spill.
pub fn staged_schema(schema: &SchemaRef) -> SchemaRef {
    extended(
        schema,
        &[
            ("_file", DataType::UInt32, false),
            ("_source_line", DataType::UInt64, false),
            ("_date", DataType::Date32, false),
            ("_key", DataType::Utf8, true),
            ("_occurrence", DataType::UInt64, false),
        ],
    )
}

/// `schema` with the columns `(name, type, nullable)` appended.
fn extended(schema: &SchemaRef, columns: &[(&str, DataType, bool)]) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    for (name, data_type, nullable) in columns {
        fields.push(Arc::new(Field::new(*name, data_type.clone(), *nullable)));
    }
    Arc::new(Schema::new(fields))
}

/// One typed column being built.
enum Col {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    StrList(ListBuilder<StringBuilder>),
    F64List(ListBuilder<Float64Builder>),
}

impl Col {
    fn for_type(dt: &DataType) -> Col {
        match dt {
            DataType::Int64 => Col::I64(Int64Builder::new()),
            DataType::Float64 => Col::F64(Float64Builder::new()),
            DataType::Boolean => Col::Bool(BooleanBuilder::new()),
            DataType::Timestamp(..) => {
                Col::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            DataType::Date32 => Col::Date(Date32Builder::new()),
            DataType::List(f) if f.data_type() == &DataType::Float64 => {
                Col::F64List(ListBuilder::new(Float64Builder::new()))
            }
            DataType::List(_) => Col::StrList(ListBuilder::new(StringBuilder::new())),
            _ => Col::Str(StringBuilder::new()),
        }
    }

    /// An empty builder of this column's type for `rows` values (and `text_bytes` of
    /// text for a text column); a list column keeps growing as it goes.
    fn with_capacity(&self, rows: usize, text_bytes: usize) -> Option<Col> {
        Some(match self {
            Col::Str(_) => Col::Str(StringBuilder::with_capacity(rows, text_bytes)),
            Col::I64(_) => Col::I64(Int64Builder::with_capacity(rows)),
            Col::F64(_) => Col::F64(Float64Builder::with_capacity(rows)),
            Col::Bool(_) => Col::Bool(BooleanBuilder::with_capacity(rows)),
            Col::Ts(_) => {
                Col::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            Col::Date(_) => Col::Date(Date32Builder::with_capacity(rows)),
            Col::StrList(_) | Col::F64List(_) => return None,
        })
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Str(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Ts(b) => Arc::new(b.finish()),
            Col::Date(b) => Arc::new(b.finish()),
            Col::StrList(b) => Arc::new(b.finish()),
            Col::F64List(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Col::Str(b) => b.len(),
            Col::I64(b) => b.len(),
            Col::F64(b) => b.len(),
            Col::Bool(b) => b.len(),
            Col::Ts(b) => b.len(),
            Col::Date(b) => b.len(),
            Col::StrList(b) => b.len(),
            Col::F64List(b) => b.len(),
        }
    }
}

/// A canonical table being staged.
pub struct TableStage {
    pub name: &'static str,
    /// Whether rows of a key collapse to the key's latest occurrence (see [`crate::spill`]);
    /// when false, keys only group rows (events of a session) for derived tables.
    pub dedup: bool,
    schema: SchemaRef,
    cols: Vec<Col>,
    /// Business date (Date32) of each row: its partition.
    dates: Vec<i32>,
    files: Vec<u32>,
    lines: Vec<u64>,
    /// Primary key of each row (NULL: not deduplicated) and its occurrence number.
    keys: StringBuilder,
    occurrences: Vec<u64>,
}

impl TableStage {
    pub fn new(name: &'static str, schema: SchemaRef) -> Self {
        let cols = schema
            .fields()
            .iter()
            .map(|f| Col::for_type(f.data_type()))
            .collect();
        Self {
            name,
            dedup: true,
            schema,
            cols,
            dates: vec![],
            files: vec![],
            lines: vec![],
            keys: StringBuilder::new(),
            occurrences: vec![],
        }
    }

    /// Starts a row of business date `date` from `file` at `line`; `key` is its primary
    /// key and the occurrence of that key it belongs to ([`Staging::occurrence`]): of all
    /// occurrences of a key, only the latest one's rows are kept. Fill every column in
    /// schema order with the returned writer.
    pub fn row(
        &mut self,
        date: i32,
        file: u32,
        line: u64,
        key: Option<(&str, u64)>,
    ) -> RowWriter<'_> {
        self.dates.push(date);
        self.files.push(file);
        self.lines.push(line);
        self.keys.append_option(key.map(|k| k.0));
        self.occurrences.push(key.map_or(0, |k| k.1));
        RowWriter {
            stage: self,
            col: 0,
        }
    }

    /// Makes the empty builders big enough for `size` at once (a chunk's builders
    /// otherwise grow by doubling, and each growth copies what they hold: 3.3% of the
    /// message events' ingest CPU at 1M customers). Does nothing once rows are staged.
    pub fn reserve(&mut self, size: &StageSize) {
        if self.rows() > 0 || size.rows == 0 {
            return;
        }
        let rows = size.rows + size.rows / 16;
        let text = |i: usize| size.text_bytes.get(i).map_or(0, |b| b + b / 16);
        for (i, col) in self.cols.iter_mut().enumerate() {
            if let Some(sized) = col.with_capacity(rows, text(i)) {
                *col = sized;
            }
        }
        self.dates.reserve(rows);
        self.files.reserve(rows);
        self.lines.reserve(rows);
        self.occurrences.reserve(rows);
        // The staged key column is the second to last ([`staged_schema`]).
        let key_bytes = text(size.text_bytes.len().saturating_sub(2));
        self.keys = StringBuilder::with_capacity(rows, key_bytes);
    }

    /// A table whose keys group rows without collapsing them.
    pub fn grouped(name: &'static str, schema: SchemaRef) -> Self {
        Self {
            dedup: false,
            ..Self::new(name, schema)
        }
    }

    pub fn rows(&self) -> usize {
        self.dates.len()
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Takes the staged rows as one batch of [`staged_schema`] (lineage and internal
    /// columns included) and empties the stage; `None` when no row is staged.
    pub fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows() == 0 {
            return Ok(None);
        }
        let schema = staged_schema(&self.schema);
        let mut arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        arrays.push(Arc::new(UInt32Array::from(std::mem::take(&mut self.files))));
        arrays.push(Arc::new(UInt64Array::from(std::mem::take(&mut self.lines))));
        arrays.push(Arc::new(Date32Array::from(std::mem::take(&mut self.dates))));
        arrays.push(Arc::new(self.keys.finish()));
        arrays.push(Arc::new(UInt64Array::from(std::mem::take(
            &mut self.occurrences,
        ))));
        RecordBatch::try_new(schema, arrays)
            .map(Some)
            .map_err(|e| IngestError::Write {
                table: self.name.to_string(),
                message: e.to_string(),
            })
    }
}

/// Fills one staged row, column by column in schema order.
pub struct RowWriter<'a> {
    stage: &'a mut TableStage,
    col: usize,
}

macro_rules! typed_append {
    ($name:ident, $variant:ident, $ty:ty) => {
        pub fn $name(mut self, value: Option<$ty>) -> Self {
            match self.stage.cols.get_mut(self.col) {
                Some(Col::$variant(b)) => b.append_option(value),
                _ => debug_assert!(
                    false,
                    "{}: column {} is not {}",
                    self.stage.name,
                    self.col,
                    stringify!($variant)
                ),
            }
            self.col += 1;
            self
        }
    };
}

impl RowWriter<'_> {
    typed_append!(i64, I64, i64);
    typed_append!(f64, F64, f64);
    typed_append!(boolean, Bool, bool);
    typed_append!(ts, Ts, i64);
    typed_append!(date, Date, i32);

    pub fn str(mut self, value: Option<&str>) -> Self {
        match self.stage.cols.get_mut(self.col) {
            Some(Col::Str(b)) => b.append_option(value),
            _ => debug_assert!(
                false,
                "{}: column {} is not text",
                self.stage.name, self.col
            ),
        }
        self.col += 1;
        self
    }

    pub fn str_list<S: AsRef<str>>(mut self, values: Option<&[S]>) -> Self {
        match self.stage.cols.get_mut(self.col) {
            Some(Col::StrList(b)) => match values {
                Some(vs) => {
                    for v in vs {
                        b.values().append_value(v.as_ref());
                    }
                    b.append(true);
                }
                None => b.append(false),
            },
            _ => debug_assert!(
                false,
                "{}: column {} is not a text list",
                self.stage.name, self.col
            ),
        }
        self.col += 1;
        self
    }

    pub fn f64_list(mut self, values: Option<&[f64]>) -> Self {
        match self.stage.cols.get_mut(self.col) {
            Some(Col::F64List(b)) => match values {
                Some(vs) => {
                    for v in vs {
                        b.values().append_value(*v);
                    }
                    b.append(true);
                }
                None => b.append(false),
            },
            _ => debug_assert!(
                false,
                "{}: column {} is not a float list",
                self.stage.name, self.col
            ),
        }
        self.col += 1;
        self
    }

    /// Ends the row; checks in debug builds that every column was filled.
    pub fn end(self) {
        debug_assert_eq!(
            self.col,
            self.stage.cols.len(),
            "{}: row not complete",
            self.stage.name
        );
        debug_assert!(self.stage.cols.iter().all(|c| c.len() == self.stage.rows()));
    }
}

/// Why a row was quarantined (`spec/sources.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    WrongColumnCount,
    UnparseableTimestamp,
    MissingPrimaryKey,
    UnparseableRecord,
    OrphanLineItem,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WrongColumnCount => "wrong_column_count",
            Reason::UnparseableTimestamp => "unparseable_timestamp",
            Reason::MissingPrimaryKey => "missing_primary_key",
            Reason::UnparseableRecord => "unparseable_record",
            Reason::OrphanLineItem => "orphan_line_item",
        }
    }
}

/// The rows and text bytes (per staged column, 0 for a column not text) of the biggest
/// batch a table has staged from one chunk: the next chunks' builders are made that big
/// ([`TableStage::reserve`]).
#[derive(Debug, Clone, Default)]
pub struct StageSize {
    rows: usize,
    text_bytes: Vec<usize>,
}

impl StageSize {
    /// Grows to hold `batch` too (a staged batch).
    fn include(&mut self, batch: &RecordBatch) {
        self.rows = self.rows.max(batch.num_rows());
        self.text_bytes.resize(batch.num_columns(), 0);
        for (bytes, column) in self.text_bytes.iter_mut().zip(batch.columns()) {
            if let Some(text) = column.as_string_opt::<i32>() {
                *bytes = (*bytes).max(text.values().len());
            }
        }
    }
}

/// A quarantined row.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub file: u32,
    pub line: u64,
    pub raw: String,
    pub column: Option<String>,
    pub reason: Reason,
    pub message: String,
}

/// Everything staged for one source between two spills, and its running counts.
pub struct Staging {
    pub tables: Vec<TableStage>,
    /// Quarantined rows not yet spilled.
    pub quarantine: Vec<Quarantined>,
    pub counts: SourceCounts,
    pub file_names: Vec<String>,
    /// Quarantined rows per file index (for the worst files of the quarantine gate).
    pub quarantined_per_file: Vec<u64>,
    /// Input bytes parsed since the staged rows were last spilled.
    pub staged_bytes: usize,
    /// The last occurrence number handed out.
    last_occurrence: u64,
    /// The run's cut-off, microseconds UTC: rows after it are skipped.
    pub cutoff: i64,
    pub tz: chrono_tz::Tz,
    /// Business dates of instants, the tz database asked once per day.
    local_days: crmflow_core::zone::LocalDays,
    /// Per table, the biggest batch one chunk staged ([`Staging::absorb`]).
    chunk_sizes: Vec<StageSize>,
}

impl Staging {
    pub fn new(tables: Vec<TableStage>, cutoff: i64, tz: chrono_tz::Tz) -> Self {
        Self {
            tables,
            quarantine: vec![],
            counts: SourceCounts::default(),
            file_names: vec![],
            quarantined_per_file: vec![],
            staged_bytes: 0,
            last_occurrence: 0,
            cutoff,
            tz,
            local_days: crmflow_core::zone::LocalDays::new(tz),
            chunk_sizes: vec![],
        }
    }

    /// An empty staging area for parsing one chunk on its own ([`crate::parallel`]):
    /// the same files, cut-off and time zone, no rows, counts or occurrences. Its builders
    /// are as big as the biggest chunk absorbed so far needed.
    pub fn for_chunk(&self, mut tables: Vec<TableStage>) -> Self {
        for (stage, size) in tables.iter_mut().zip(&self.chunk_sizes) {
            stage.reserve(size);
        }
        Self {
            file_names: self.file_names.clone(),
            quarantined_per_file: vec![0; self.quarantined_per_file.len()],
            ..Self::new(tables, self.cutoff, self.tz)
        }
    }

    /// Takes every table's staged rows as `(table, batch)` ([`TableStage::take_batch`]).
    pub fn take_batches(&mut self) -> Result<Vec<(usize, RecordBatch)>> {
        let mut out = vec![];
        for (table, stage) in self.tables.iter_mut().enumerate() {
            if let Some(batch) = stage.take_batch()? {
                out.push((table, batch));
            }
        }
        Ok(out)
    }

    /// Merges a chunk's staging area ([`Staging::for_chunk`]) parsed after everything
    /// staged here, and its staged batches ([`Staging::take_batches`]): adds its counts
    /// and quarantined rows, keeps the size of its batches for the next chunks' builders
    /// ([`Staging::for_chunk`]), and returns the batches with their occurrences
    /// renumbered after this area's.
    pub fn absorb(
        &mut self,
        mut chunk: Staging,
        batches: Vec<(usize, RecordBatch)>,
    ) -> Result<Vec<(usize, RecordBatch)>> {
        let base = self.last_occurrence;
        self.last_occurrence += chunk.last_occurrence;
        self.staged_bytes += chunk.staged_bytes;
        let (c, mine) = (&chunk.counts, &mut self.counts);
        mine.rows_read += c.rows_read;
        mine.rows_loaded += c.rows_loaded;
        mine.rows_quarantined += c.rows_quarantined;
        mine.duplicates_collapsed += c.duplicates_collapsed;
        mine.rows_after_cutoff += c.rows_after_cutoff;
        mine.invalid_phones += c.invalid_phones;
        mine.invalid_emails += c.invalid_emails;
        for (mine, theirs) in self
            .quarantined_per_file
            .iter_mut()
            .zip(&chunk.quarantined_per_file)
        {
            *mine += theirs;
        }
        self.quarantine.append(&mut chunk.quarantine);
        let mut out = vec![];
        for (table, batch) in batches {
            if self.chunk_sizes.len() <= table {
                self.chunk_sizes.resize(table + 1, StageSize::default());
            }
            self.chunk_sizes[table].include(&batch);
            let n = batch.num_columns();
            let occurrences = batch.column(n - 1).as_primitive::<UInt64Type>();
            // 0 is no key: it stays 0.
            let renumbered: UInt64Array = occurrences.unary(|o| if o == 0 { 0 } else { o + base });
            let mut columns = batch.columns().to_vec();
            columns[n - 1] = Arc::new(renumbered);
            let batch =
                RecordBatch::try_new(batch.schema(), columns).map_err(|e| IngestError::Write {
                    table: format!("table {table}"),
                    message: e.to_string(),
                })?;
            out.push((table, batch));
        }
        Ok(out)
    }

    /// The name of a registered file.
    pub fn file_name(&self, file: u32) -> String {
        self.file_names
            .get(file as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Registers a file; returns its index.
    pub fn add_file(&mut self, name: &str, bytes: u64) -> u32 {
        self.file_names.push(name.to_string());
        self.quarantined_per_file.push(0);
        self.counts.files += 1;
        self.counts.bytes += bytes;
        (self.file_names.len() - 1) as u32
    }

    /// A new occurrence number: rows staged under one key with the same number form one
    /// occurrence of that key (an order and its line items); numbers grow in read order,
    /// so the latest file's occurrence has the highest.
    pub fn occurrence(&mut self) -> u64 {
        self.last_occurrence += 1;
        self.last_occurrence
    }

    /// The business date of an instant, as Date32; `None` outside chrono's range.
    pub fn date_of(&mut self, micros: i64) -> Option<i32> {
        self.local_days.of(micros)
    }

    /// Whether an instant is after the cut-off; counts it when it is.
    pub fn after_cutoff(&mut self, micros: i64, rows: u64) -> bool {
        let after = micros > self.cutoff;
        if after {
            self.counts.rows_after_cutoff += rows;
        }
        after
    }

    /// Quarantines a row (it counts as read).
    pub fn quarantine(
        &mut self,
        file: u32,
        line: u64,
        raw: &str,
        column: Option<&str>,
        reason: Reason,
        message: String,
    ) {
        self.counts.rows_read += 1;
        self.counts.rows_quarantined += 1;
        if let Some(n) = self.quarantined_per_file.get_mut(file as usize) {
            *n += 1;
        }
        self.quarantine.push(Quarantined {
            file,
            line,
            raw: raw.to_string(),
            column: column.map(str::to_string),
            reason,
            message,
        });
    }

    /// Records that `rows` source rows were read and staged (duplicates among them are
    /// collapsed, and counted, when the spill is deduplicated).
    pub fn loaded(&mut self, rows: u64) {
        self.counts.rows_read += rows;
        self.counts.rows_loaded += rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableStage {
        TableStage::new(
            "t",
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
            ])),
        )
    }

    /// A chunk's staging area with `rows` rows, parsed and absorbed into `staging`.
    fn stage_chunk(staging: &mut Staging, rows: usize) -> (usize, Vec<(usize, RecordBatch)>) {
        let mut chunk = staging.for_chunk(vec![table()]);
        let reserved = chunk.tables[0].dates.capacity();
        for i in 0..rows {
            let key = format!("key-{i}");
            chunk.tables[0]
                .row(20_000, 0, i as u64 + 2, Some((&key, i as u64 + 1)))
                .str(Some(&format!("name {i}")))
                .i64(Some(i as i64));
        }
        let batches = chunk.take_batches().unwrap();
        (reserved, staging.absorb(chunk, batches).unwrap())
    }

    #[test]
    fn a_chunks_builders_are_as_big_as_the_biggest_chunk_before() {
        let mut staging = Staging::new(vec![table()], i64::MAX, chrono_tz::UTC);
        let (reserved, first) = stage_chunk(&mut staging, 1000);
        assert_eq!(reserved, 0, "the first chunk has nothing to go by");
        let (reserved, second) = stage_chunk(&mut staging, 10);
        assert!(reserved >= 1000, "{reserved}");
        // A chunk bigger than the reservation grows as before.
        let (reserved, third) = stage_chunk(&mut staging, 3000);
        assert!((1000..3000).contains(&reserved), "{reserved}");
        let (reserved, _) = stage_chunk(&mut staging, 1);
        assert!(reserved >= 3000, "{reserved}");
        // The rows are the same whatever the builders' size.
        let sizes: Vec<usize> = [first, second, third]
            .iter()
            .map(|b| b[0].1.num_rows())
            .collect();
        assert_eq!(sizes, [1000, 10, 3000]);
        let names =
            |b: &[(usize, RecordBatch)]| b[0].1.column(0).as_string::<i32>().value(7).to_string();
        assert_eq!(names(&stage_chunk(&mut staging, 8).1), "name 7");
        let size = &staging.chunk_sizes[0];
        assert_eq!(size.rows, 3000);
        let text: usize = (0..3000).map(|i| format!("name {i}").len()).sum();
        assert_eq!(size.text_bytes[0], text, "the name column's bytes");
        let keys: usize = (0..3000).map(|i| format!("key-{i}").len()).sum();
        assert_eq!(
            size.text_bytes[size.text_bytes.len() - 2],
            keys,
            "the keys' bytes"
        );
    }
}
