//! The sqllogictest harness: runs every `tests/slt/**/*.slt` file, each in a fresh
//! crmflow session (every crmflow function registered, business time zone
//! Europe/Moscow, the seeds of `sql/seeds/` as tables), and prints a libtest-style
//! summary line.
//!
//! Besides plain SQL, two statements let a file test a model of `sql/`:
//! - `SET VAR <name> = <SQL literal>`: overrides a run variable (default `as_of` is
//!   `DATE '2026-11-20'`, the other variables are the job defaults);
//! - `CREATE MODEL <name>`: renders `sql/**/<name>.sql` with the variables and creates
//!   a table from it, over whatever fixture tables the file created before.
//!
//! Filter by a path substring: `cargo test --release --test sqllogictests -- rfm`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use crmflow_core::config::Vars;
use crmflow_core::lake::Lake;
use crmflow_transform::engine::{EngineConfig, build_context};
use crmflow_transform::models::Project;
use crmflow_transform::vars::VarSet;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug)]
struct SltError(String);
impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

struct CrmflowDb {
    ctx: SessionContext,
    vars: VarSet,
    project: Arc<Project>,
    _lake_dir: tempfile::TempDir,
}

fn format_value(array: &dyn Array, row: usize, formatter: &ArrayFormatter) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    match array.data_type() {
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            let rounded = (v * 1e9).round() / 1e9;
            let s = format!("{rounded}");
            if s == "-0" { "0".into() } else { s }
        }
        _ => {
            let text = formatter.value(row).to_string();
            if text.is_empty() {
                "(empty)".into()
            } else {
                text
            }
        }
    }
}

fn column_type(dt: &DataType) -> DefaultColumnType {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for CrmflowDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let trimmed = sql.trim().trim_end_matches(';').trim();
        let upper = trimmed.to_uppercase();
        if let Some(rest) = upper.strip_prefix("SET VAR ") {
            let (name, _) = rest
                .split_once('=')
                .ok_or_else(|| SltError("SET VAR <name> = <literal>".into()))?;
            let literal = trimmed[trimmed.find('=').unwrap_or(0) + 1..].trim();
            self.vars.set(&name.trim().to_lowercase(), literal);
            return Ok(DBOutput::StatementComplete(0));
        }
        let sql_text = if let Some(name) = upper.strip_prefix("CREATE MODEL ") {
            let name = name.trim().to_lowercase();
            let model = self
                .project
                .models
                .get(&name)
                .ok_or_else(|| SltError(format!("no model `{name}` under sql/")))?;
            let body = self
                .vars
                .render(&model.sql, &model.path)
                .map_err(|e| SltError(e.to_string()))?;
            format!("CREATE TABLE {name} AS {body}")
        } else {
            trimmed.to_string()
        };
        let df = self
            .ctx
            .sql(&sql_text)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let is_query =
            upper.starts_with("SELECT") || upper.starts_with("WITH") || upper.starts_with("VALUES");
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await.map_err(|e| SltError(e.to_string()))?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = vec![];
        for batch in &batches {
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<_, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(c, f)| format_value(c.as_ref(), row, f))
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "crmflow"
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

async fn new_db(project: Arc<Project>) -> Result<CrmflowDb, SltError> {
    let tz = chrono_tz::Europe::Moscow;
    let lake_dir = tempfile::tempdir().map_err(|e| SltError(e.to_string()))?;
    let lake = Lake::open(lake_dir.path().to_str().unwrap_or("."), &Default::default())
        .map_err(|e| SltError(e.to_string()))?;
    // The seeds of sql/seeds are tables, as in a run.
    let seeds = project.seed_tables();
    let ctx = build_context(&EngineConfig::default_for(tz), &lake, &[], &seeds)
        .await
        .map_err(|e| SltError(e.to_string()))?;
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default();
    Ok(CrmflowDb {
        ctx,
        vars: VarSet::new(&Vars::default(), as_of, tz),
        project,
        _lake_dir: lake_dir,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut files = vec![];
    slt_files(&root.join("tests/slt"), &mut files);
    files.retain(|f| {
        filter.is_empty()
            || filter
                .iter()
                .any(|x| f.to_string_lossy().contains(x.as_str()))
    });
    // Every model is known by name; table references are not checked here.
    let project = {
        let vars = VarSet::new(
            &Vars::default(),
            NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default(),
            chrono_tz::Europe::Moscow,
        );
        let sources: Vec<String> = crmflow_ingest::canonical_tables()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        match Project::load(&root.join("sql"), &vars, &sources) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                eprintln!("cannot load sql/: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let project = project.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let project = project.clone();
            async move { new_db(project).await }
        });
        match runner.run_file_async(file).await {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n{e}\n");
            }
        }
    }
    println!("\nsqllogictest: {passed} passed, {failed} failed");
    if failed > 0 || files.is_empty() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
