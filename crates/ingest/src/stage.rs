//! Staging of one source's rows before they are written: typed column builders per
//! canonical table, the business date of every row (its partition), last-occurrence-wins
//! deduplication on the primary key, the cut-off, quarantine and the counts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
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

/// A canonical schema with the lineage columns every raw table carries.
pub fn with_lineage(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("_source_file", DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(
        "_source_line",
        DataType::UInt64,
        false,
    )));
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
    schema: SchemaRef,
    cols: Vec<Col>,
    /// Business date (Date32) of each row: its partition.
    pub(crate) dates: Vec<i32>,
    pub(crate) files: Vec<u32>,
    pub(crate) lines: Vec<u64>,
    pub(crate) alive: Vec<bool>,
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
            schema,
            cols,
            dates: vec![],
            files: vec![],
            lines: vec![],
            alive: vec![],
        }
    }

    /// Starts a row; fill every column in schema order with the returned writer.
    pub fn row(&mut self, date: i32, file: u32, line: u64) -> RowWriter<'_> {
        self.dates.push(date);
        self.files.push(file);
        self.lines.push(line);
        self.alive.push(true);
        RowWriter {
            stage: self,
            col: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.alive.len()
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Builds the table with its lineage columns `_source_file` and `_source_line`,
    /// keeping only the live rows; returns it with the live rows' dates.
    pub fn finish(&mut self, file_names: &[String]) -> Result<(RecordBatch, Vec<i32>)> {
        let schema = with_lineage(&self.schema);
        let mut arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let mut file_col = StringBuilder::new();
        let mut line_col = UInt64Builder::new();
        for (f, l) in self.files.iter().zip(&self.lines) {
            file_col.append_value(
                file_names
                    .get(*f as usize)
                    .map(String::as_str)
                    .unwrap_or(""),
            );
            line_col.append_value(*l);
        }
        arrays.push(Arc::new(file_col.finish()));
        arrays.push(Arc::new(line_col.finish()));
        let write_err = |e: arrow::error::ArrowError| IngestError::Write {
            table: self.name.to_string(),
            message: e.to_string(),
        };
        let batch = RecordBatch::try_new(schema, arrays).map_err(write_err)?;
        let mask = arrow::array::BooleanArray::from(self.alive.clone());
        let batch = arrow::compute::filter_record_batch(&batch, &mask).map_err(write_err)?;
        let dates = self
            .dates
            .iter()
            .zip(&self.alive)
            .filter(|(_, a)| **a)
            .map(|(d, _)| *d)
            .collect();
        Ok((batch, dates))
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

    pub fn str_list(mut self, values: Option<&[String]>) -> Self {
        match self.stage.cols.get_mut(self.col) {
            Some(Col::StrList(b)) => match values {
                Some(vs) => {
                    for v in vs {
                        b.values().append_value(v);
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
    pub fn end(self) -> u32 {
        debug_assert_eq!(
            self.col,
            self.stage.cols.len(),
            "{}: row not complete",
            self.stage.name
        );
        debug_assert!(
            self.stage
                .cols
                .iter()
                .all(|c| c.len() == self.stage.alive.len())
        );
        (self.stage.alive.len() - 1) as u32
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

/// Everything staged for one source.
pub struct Staging {
    pub tables: Vec<TableStage>,
    pub quarantine: Vec<Quarantined>,
    pub counts: SourceCounts,
    pub file_names: Vec<String>,
    /// Primary key -> the staged rows (table index, row) of its latest occurrence.
    keys: HashMap<String, Vec<(u8, u32)>>,
    /// The run's cut-off, microseconds UTC: rows after it are skipped.
    pub cutoff: i64,
    pub tz: chrono_tz::Tz,
}

impl Staging {
    pub fn new(tables: Vec<TableStage>, cutoff: i64, tz: chrono_tz::Tz) -> Self {
        Self {
            tables,
            quarantine: vec![],
            counts: SourceCounts::default(),
            file_names: vec![],
            keys: HashMap::new(),
            cutoff,
            tz,
        }
    }

    /// Registers a file; returns its index.
    pub fn add_file(&mut self, name: &str, bytes: u64) -> u32 {
        self.file_names.push(name.to_string());
        self.counts.files += 1;
        self.counts.bytes += bytes;
        (self.file_names.len() - 1) as u32
    }

    /// The business date of an instant, as Date32; `None` outside chrono's range.
    pub fn date_of(&self, micros: i64) -> Option<i32> {
        crmflow_core::normalize::business_date(micros, self.tz).map(crmflow_core::normalize::date32)
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
        self.quarantine.push(Quarantined {
            file,
            line,
            raw: raw.to_string(),
            column: column.map(str::to_string),
            reason,
            message,
        });
    }

    /// Records that `rows` source rows were read and staged as `staged` under `key`
    /// (or with no key); a previous occurrence of the key is dropped as a duplicate.
    pub fn loaded(&mut self, key: Option<String>, staged: Vec<(u8, u32)>, rows: u64) {
        self.counts.rows_read += rows;
        self.counts.rows_loaded += rows;
        let Some(key) = key else { return };
        if let Some(previous) = self.keys.insert(key, staged) {
            let mut collapsed = 0;
            for (table, row) in previous {
                let stage = &mut self.tables[table as usize];
                if stage.alive[row as usize] {
                    stage.alive[row as usize] = false;
                    // Only rows of the counted (first) table are source rows.
                    if table == 0 {
                        collapsed += 1;
                    }
                }
            }
            self.counts.rows_loaded -= collapsed;
            self.counts.duplicates_collapsed += collapsed;
        }
    }
}
