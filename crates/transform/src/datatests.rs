//! Data tests beside each model (`[[tests]]` in `<model>.toml`), as dbt users know them:
//! `unique`, `not_null`, `accepted_values`, `relationships`, `expression` (rows where
//! the expression is not true fail) and `query` (a query returning the offending rows). Severity `error` (default) or `warn`. A failing test
//! reports its count of offending rows and shows the first few.
//!
//! ```toml
//! [[tests]]
//! unique = ["customer_id"]
//! [[tests]]
//! accepted_values = { column = "stage", values = ["new", "active"] }
//! severity = "warn"
//! ```

use datafusion::prelude::SessionContext;
use serde::Deserialize;

use crate::error::Result;
use crate::vars::VarSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValues {
    pub column: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relationship {
    pub column: String,
    /// The table the values must exist in.
    pub to: String,
    pub field: String,
}

/// One data test; exactly one kind is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataTest {
    /// A name for reports (default: derived from the test).
    pub name: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    pub unique: Option<Vec<String>>,
    pub not_null: Option<Vec<String>>,
    pub accepted_values: Option<AcceptedValues>,
    pub relationships: Option<Relationship>,
    pub expression: Option<String>,
    /// A query returning the offending rows (a "singular" test), for checks over groups.
    pub query: Option<String>,
}

fn quote_ident(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

impl DataTest {
    /// The test's name and the SQL that returns the offending rows of `model`.
    pub fn compile(&self, model: &str) -> Result<(String, String), String> {
        let m = quote_ident(model);
        let mut kinds = vec![];
        if let Some(cols) = &self.unique {
            let list = cols
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            kinds.push((
                format!("unique({})", cols.join(", ")),
                format!("SELECT {list}, count(*) AS occurrences FROM {m} GROUP BY {list} HAVING count(*) > 1"),
            ));
        }
        if let Some(cols) = &self.not_null {
            let cond = cols
                .iter()
                .map(|c| format!("{} IS NULL", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" OR ");
            kinds.push((
                format!("not_null({})", cols.join(", ")),
                format!("SELECT * FROM {m} WHERE {cond}"),
            ));
        }
        if let Some(a) = &self.accepted_values {
            let values = a
                .values
                .iter()
                .map(|v| crate::vars::quote(v))
                .collect::<Vec<_>>()
                .join(", ");
            let c = quote_ident(&a.column);
            kinds.push((
                format!("accepted_values({})", a.column),
                format!("SELECT * FROM {m} WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({values})"),
            ));
        }
        if let Some(r) = &self.relationships {
            let c = quote_ident(&r.column);
            kinds.push((
                format!("relationships({} -> {}.{})", r.column, r.to, r.field),
                format!(
                    "SELECT * FROM {m} WHERE {c} IS NOT NULL AND {c} NOT IN (SELECT {} FROM {} WHERE {} IS NOT NULL)",
                    quote_ident(&r.field),
                    quote_ident(&r.to),
                    quote_ident(&r.field)
                ),
            ));
        }
        if let Some(e) = &self.expression {
            kinds.push((
                format!("expression({e})"),
                format!("SELECT * FROM {m} WHERE NOT COALESCE(({e}), false)"),
            ));
        }
        if let Some(q) = &self.query {
            kinds.push((
                "query".to_string(),
                q.trim().trim_end_matches(';').to_string(),
            ));
        }
        match kinds.len() {
            1 => {
                let (name, sql) = kinds.remove(0);
                Ok((self.name.clone().unwrap_or(name), sql))
            }
            0 => Err("a test needs one of unique, not_null, accepted_values, relationships, expression, query".into()),
            _ => Err("a test has exactly one of unique, not_null, accepted_values, relationships, expression, query".into()),
        }
    }
}

/// The outcome of one data test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub model: String,
    pub test: String,
    pub severity: Severity,
    pub failing_rows: u64,
    /// The first offending rows, as a table (empty when the test passed).
    pub sample: String,
    /// Set when the test could not run at all (counts as failed).
    pub error: Option<String>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.failing_rows == 0 && self.error.is_none()
    }
}

/// Runs the tests of a model; run variables (`{{ var('...') }}`) in their SQL are filled in.
/// A `unique` test of a key in `proven_unique` (keys no two rows share, checked as the
/// table was written: [`crate::materialize::Materialized::unique_keys`]) passes without
/// its query.
pub async fn run_tests(
    ctx: &SessionContext,
    model: &str,
    tests: &[DataTest],
    vars: &VarSet,
    proven_unique: &[Vec<String>],
) -> Vec<TestOutcome> {
    let mut out = vec![];
    for t in tests {
        let compiled = t.compile(model).and_then(|(name, sql)| {
            vars.render(&sql, std::path::Path::new(&format!("{model}.toml")))
                .map(|sql| (name, sql))
                .map_err(|e| e.to_string())
        });
        let (name, sql) = match compiled {
            Ok(x) => x,
            Err(e) => {
                out.push(TestOutcome {
                    model: model.to_string(),
                    test: t.name.clone().unwrap_or_else(|| "invalid test".into()),
                    severity: t.severity,
                    failing_rows: 0,
                    sample: String::new(),
                    error: Some(e),
                });
                continue;
            }
        };
        let proven = t
            .unique
            .as_ref()
            .is_some_and(|key| proven_unique.contains(key));
        let outcome = match proven {
            true => {
                tracing::debug!(model, test = %name, "passed: no key repeated as the table was written");
                Ok((0, String::new()))
            }
            false => run_one(ctx, &sql).await,
        };
        out.push(match outcome {
            Ok((failing_rows, sample)) => TestOutcome {
                model: model.to_string(),
                test: name,
                severity: t.severity,
                failing_rows,
                sample,
                error: None,
            },
            Err(e) => TestOutcome {
                model: model.to_string(),
                test: name,
                severity: t.severity,
                failing_rows: 0,
                sample: String::new(),
                error: Some(e.to_string()),
            },
        });
    }
    out
}

async fn run_one(ctx: &SessionContext, sql: &str) -> Result<(u64, String)> {
    let failing = ctx
        .sql(&format!("SELECT count(*) FROM ({sql})"))
        .await?
        .collect()
        .await?;
    let n = failing
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
        })
        .map(|a| a.value(0) as u64)
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("count(*) returned no Int64".into())
        })?;
    if n == 0 {
        return Ok((0, String::new()));
    }
    let sample = ctx.sql(&format!("{sql} LIMIT 5")).await?.collect().await?;
    let table = datafusion::arrow::util::pretty::pretty_format_batches(&sample)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok((n, table))
}
