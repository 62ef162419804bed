//! Running models: plan the rendered SQL, then either register it as a view or write it
//! as one Parquet object `<lake>/marts/<model>/part-0.parquet` through a multipart
//! upload that becomes visible only when complete (a failed run leaves the previous
//! version readable), and register the written table for the models downstream.
//!
//! Written tables are sorted (by `order_by`, else by every non-nested column) and their
//! floats rounded to 9 decimals, so that a rerun over the same data writes the same bytes
//! whatever the parallel plan's summation order was. A model whose floats are the same
//! in every run anyway (row-by-row arithmetic, the exact `sum`) may keep every digit
//! with `round_floats = false`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{SortExpr, col};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crmflow_core::lake::Lake;

use crate::engine::{LakeTable, lake_table, register};
use crate::error::{Result, TransformError};
use crate::hashed_keys::HashedKeyCheck;
use crate::models::{Materialization, Model};
use crate::parent_keys::ParentKeyCheck;
use crate::row_tests::RowTestCheck;
use crate::sorted_keys::SortedKeyCheck;
use crate::vars::VarSet;

/// Key-value metadata key of a written table's sort order: its column names, joined by
/// commas, each ascending; nulls last when [`SORT_NULLS_KEY`] says `last`, else first.
pub const SORTED_BY_KEY: &str = "crmflow.sorted_by";
/// Key-value metadata key of where nulls sort in [`SORTED_BY_KEY`]'s order: `last` in
/// every table written since nulls sort last (DataFusion's own default, so a query's
/// output already sorted by a window or sort upstream is not sorted again); tables
/// written before it, without this key, sorted nulls first and are still read so.
pub const SORT_NULLS_KEY: &str = "crmflow.sort_nulls";

/// Lake folder of a model's table.
pub fn mart_folder(model: &str) -> String {
    format!("marts/{model}")
}

/// Rows per row group of a model's table (parquet's default is 1M). A row group is
/// encoded while the query produces the next one, but the last one only once the query
/// is done: with 256k rows that tail is a quarter as long. At 1M customers
/// `int_purchases` (1.68M rows: two row groups, the last of 631k rows, encoded 0.16-0.18 s
/// after its last row) took 0.94-0.97 s against 1.01-1.04 s with 1M (three interleaved
/// pairs; seven row groups, 0.06 s after the last row), and with `cohort_retention` and
/// `rfm` 1.69-1.76 s and 410-426 MB against 1.74-1.86 s and 490-494 MB (four pairs). The
/// files are within 0.4% of their size with 1M (`attribution_credits`: 258.2 MB against
/// 257.4 MB), and the heuristic attribution models took 33.6 and 35.2 s against 36.0 and
/// 33.6 s.
const ROW_GROUP_ROWS: usize = 1 << 18;

/// Settings of every model's Parquet: zstd level 1, and dictionaries of at most 16 KiB
/// per column chunk, as the raw tables' (parquet's default is 1 MiB): near-unique columns
/// (conversion, touch and customer ids) are written plain after a few hundred values, and
/// zstd compresses their repeats. At 1M customers `attribution_credits` (55M rows) took
/// 246 MB instead of 265 MB, built in 23.2-32.4 s against 26.2-32.2 s (four interleaved
/// pairs on a noisy machine). Row groups of at most [`ROW_GROUP_ROWS`].
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_created_by("crmflow".to_string())
        .set_dictionary_page_size_limit(16 << 10)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Sorts by `order_by` (or every sortable column) and rounds floats unless told not to;
/// returns the sorted frame and the columns it is sorted by (ascending, nulls last).
fn canonical(
    df: DataFrame,
    order_by: &[String],
    round_floats: bool,
) -> Result<(DataFrame, Vec<String>)> {
    let schema = df.schema().clone();
    let mut projections = vec![];
    for field in schema.fields() {
        let c = col(datafusion::common::Column::from_name(field.name()));
        let e = match field.data_type() {
            DataType::Float64 | DataType::Float32 if round_floats => {
                datafusion::functions::math::expr_fn::round(vec![
                    c,
                    datafusion::logical_expr::lit(9_i64),
                ])
                .alias(field.name())
            }
            _ => c,
        };
        projections.push(e);
    }
    let df = df.select(projections)?;
    let sorted_by: Vec<String> = if order_by.is_empty() {
        schema
            .fields()
            .iter()
            .filter(|f| !f.data_type().is_nested())
            .map(|f| f.name().clone())
            .collect()
    } else {
        order_by.to_vec()
    };
    if sorted_by.is_empty() {
        return Ok((df, sorted_by));
    }
    let sort: Vec<SortExpr> = sorted_by
        .iter()
        .map(|c| col(datafusion::common::Column::from_name(c)).sort(true, false))
        .collect();
    Ok((df.sort(sort)?, sorted_by))
}

/// A context for one model with its `[datafusion]` settings on top of the job's. It
/// shares the job context's catalog, so the table it writes is registered for all.
fn model_context(ctx: &SessionContext, model: &Model) -> Result<SessionContext> {
    let mut state = ctx.state();
    crate::engine::apply_options(
        state.config_mut().options_mut(),
        model
            .config
            .datafusion
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        |key| model.datafusion_setting_name(key),
    )?;
    Ok(SessionContext::new_with_state(state))
}

/// What running a model wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Materialized {
    /// Rows written (0 for a view).
    pub rows: u64,
    /// Indices of the model's tests decided as the rows were written, which need no
    /// query: `unique` keys no two rows share ([`crate::sorted_keys`],
    /// [`crate::hashed_keys`]), row tests no row failed ([`crate::row_tests`]) and
    /// `relationships` every value of which a merge found in the parent
    /// ([`crate::parent_keys`]).
    pub passed_tests: Vec<usize>,
}

/// Runs one model with its rendered SQL; `vars` fill in its tests' conditions.
pub async fn run_model(
    ctx: &SessionContext,
    lake: &Lake,
    model: &Model,
    sql: &str,
    vars: &VarSet,
) -> Result<Materialized> {
    let query_err = |source| TransformError::Query {
        model: model.name.clone(),
        source,
    };
    let own_ctx;
    let ctx = if model.config.datafusion.is_empty() {
        ctx
    } else {
        own_ctx = model_context(ctx, model)?;
        &own_ctx
    };
    let df = ctx.sql(sql).await.map_err(query_err)?;
    match model.config.materialized {
        Materialization::View => {
            register(&ctx.state(), &model.name, df.into_view())?;
            Ok(Materialized::default())
        }
        Materialization::Table => {
            let (df, sorted_by) = canonical(df, &model.config.order_by, model.config.round_floats)
                .map_err(|e| match e {
                    TransformError::DataFusion(source) => query_err(source),
                    other => other,
                })?;
            let folder = mart_folder(&model.name);
            let tests = &model.config.tests;
            let mut keys = SortedKeyCheck::new(tests, &sorted_by, df.schema().as_arrow());
            let mut hashed_keys =
                HashedKeyCheck::new(tests, &keys.checked_tests(), df.schema().as_arrow());
            let mut rows_checked = RowTestCheck::new(ctx, &model.name, tests, vars, df.schema());
            let schema = df.schema().as_arrow();
            let mut parents =
                ParentKeyCheck::start(ctx, &model.name, tests, &sorted_by, schema).await;
            let relative = format!("{folder}/part-0.parquet");
            let observe = |batch: &RecordBatch| {
                keys.observe(batch);
                hashed_keys.observe(batch);
                rows_checked.observe(batch);
                parents.observe(batch);
            };
            let rows = write_parquet(lake, &relative, df, &sorted_by, observe)
                .await
                .map_err(|e| match e {
                    TransformError::DataFusion(source) => query_err(source),
                    other => other,
                })?;
            let table = LakeTable {
                name: model.name.clone(),
                folder,
                schema: None,
                partitioned: false,
            };
            let provider = lake_table(&ctx.state(), lake, &table).await?;
            register(&ctx.state(), &model.name, provider)?;
            let mut passed_tests = rows_checked.passed_tests();
            passed_tests.extend(keys.passed_tests());
            if !hashed_keys.is_empty() {
                let sorted = tokio::task::spawn_blocking(move || hashed_keys.passed_tests());
                passed_tests.extend(sorted.await.unwrap_or_default());
            }
            passed_tests.extend(parents.passed_tests().await);
            passed_tests.sort_unstable();
            Ok(Materialized { rows, passed_tests })
        }
    }
}

/// Streams a DataFrame into one Parquet object; visible only once complete
/// ([`crmflow_core::parquet_writer`]). `sorted_by` (the columns the frame is sorted by,
/// ascending, nulls last) is recorded in the file's key-value metadata under
/// [`SORTED_BY_KEY`], so that readers can declare the order to DataFusion and skip
/// sorts the file already satisfies. `observe` sees every batch written.
pub async fn write_parquet(
    lake: &Lake,
    relative: &str,
    df: DataFrame,
    sorted_by: &[String],
    mut observe: impl FnMut(&RecordBatch),
) -> Result<u64> {
    // Only our own key: metadata that came along from the tables read is dropped, so a
    // sort order is never inherited from an input.
    let mut metadata = std::collections::HashMap::new();
    if !sorted_by.is_empty() {
        metadata.insert(SORTED_BY_KEY.to_string(), sorted_by.join(","));
        metadata.insert(SORT_NULLS_KEY.to_string(), "last".to_string());
    }
    let schema = Arc::new(df.schema().as_arrow().clone().with_metadata(metadata));
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await?;
    let stream = execute_stream(Arc::clone(&plan), Arc::new(task))?.map(|batch| {
        if let Ok(batch) = &batch {
            observe(batch);
        }
        batch.map_err(TransformError::from)
    });
    let rows = crmflow_core::parquet_writer::write_parquet(
        lake,
        relative,
        schema,
        writer_properties(),
        stream,
    )
    .await?;
    log_profile(relative, plan.as_ref());
    Ok(rows)
}

/// Logs the operators of the plan a table was written by, each with its metrics (rows,
/// compute time, spills, bytes scanned), under the target `crmflow::profile` at debug
/// level: `--log info,crmflow::profile=debug` profiles every model of a run.
///
/// Operator names and metrics only, never the plan's expressions: those carry the
/// query's literals and, in DataFusion's dynamic filters, values read from the data
/// (join keys such as emails), which a log must not. `crmflow query "EXPLAIN ..."` shows
/// the expressions of a model's query (`crmflow models compile`).
fn log_profile(relative: &str, plan: &dyn ExecutionPlan) {
    if tracing::enabled!(target: "crmflow::profile", tracing::Level::DEBUG) {
        let mut shown = String::new();
        operator_metrics(plan, 0, &mut shown);
        tracing::debug!(target: "crmflow::profile", object = relative, "operators with metrics\n{shown}");
    }
}

/// `plan` and its children, one operator a line, indented by depth: the operator's name
/// and its metrics summed over partitions (as `EXPLAIN ANALYZE` shows them).
fn operator_metrics(plan: &dyn ExecutionPlan, depth: usize, out: &mut String) {
    let metrics = plan
        .metrics()
        .map(|m| {
            m.aggregate_by_name()
                .sorted_for_display()
                .timestamps_removed()
                .to_string()
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "{:width$}{}: [{metrics}]\n",
        "",
        plan.name(),
        width = depth * 2
    ));
    for child in plan.children() {
        operator_metrics(child.as_ref(), depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use datafusion::physical_plan::ExecutionPlanProperties;

    use super::*;
    use crate::engine::{EngineConfig, build_context};
    use crate::models::ModelConfig;

    fn model(name: &str, config: ModelConfig) -> Model {
        Model {
            name: name.into(),
            path: PathBuf::from(format!("sql/marts/{name}.sql")),
            layer: "marts".into(),
            sql: String::new(),
            config,
            depends_on: vec![],
        }
    }

    async fn context(dir: &std::path::Path) -> (SessionContext, Lake) {
        let lake = Lake::open(dir.to_str().unwrap(), &BTreeMap::new()).unwrap();
        let config = EngineConfig::default_for(chrono_tz::UTC);
        (build_context(&config, &lake, &[], &[]).await.unwrap(), lake)
    }

    const SQL: &str = "SELECT * FROM (VALUES (2, 'b'), (1, 'a'), (3, 'c')) AS t(k, v)";

    /// Spill files written by `plan` and its children, from their metrics.
    fn spills(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
        let own = plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0);
        own + plan
            .children()
            .iter()
            .map(|c| spills(c.as_ref()))
            .sum::<usize>()
    }

    /// A query's result as a pretty-printed table.
    async fn table_text(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn a_model_over_more_data_than_the_pool_spills_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        let spill_dir = dir.path().join("spill");
        let config = EngineConfig {
            memory_limit: Some(32 << 20),
            spill_dir: Some(spill_dir.clone()),
            target_partitions: 2,
            ..EngineConfig::default_for(chrono_tz::UTC)
        };
        let ctx = build_context(&config, &lake, &[], &[]).await.unwrap();
        // 3M input rows and 1M groups with 40-byte strings (~100 MB): well over the 32 MB
        // pool for the aggregation and again for the sort of the written table.
        let sql = "SELECT value % 1000000 AS k, count(*) AS n, \
                   max(concat('customer-', CAST(value AS VARCHAR), '-with-some-padding')) AS v \
                   FROM generate_series(1, 3000000) GROUP BY value % 1000000";
        let m = model(
            "big",
            ModelConfig {
                order_by: vec!["k".into()],
                ..ModelConfig::default()
            },
        );
        assert_eq!(
            run_model(&ctx, &lake, &m, sql, &VarSet::default())
                .await
                .unwrap()
                .rows,
            1_000_000
        );

        // Every group once, complete, in the written order.
        let text = table_text(
            &ctx,
            "SELECT count(*) AS rows, sum(n) AS total, min(k) AS lo, max(k) AS hi FROM big",
        )
        .await;
        assert!(
            text.contains("| 1000000 | 3000000 | 0  | 999999 |"),
            "{text}"
        );
        // Read on one partition: the file's row groups, read as two byte ranges at once,
        // would come back in either order.
        ctx.sql("SET datafusion.execution.target_partitions = 1")
            .await
            .unwrap();
        let text = table_text(
            &ctx,
            "SELECT count(*) FROM (SELECT k, lag(k) OVER () AS prev FROM big) WHERE k <= prev",
        )
        .await;
        assert!(text.contains("| 0 "), "rows out of order: {text}");
        ctx.sql("SET datafusion.execution.target_partitions = 2")
            .await
            .unwrap();

        // The same query did spill, into the configured folder.
        let df = ctx.sql(sql).await.unwrap();
        let df = df.sort(vec![col("k").sort(true, true)]).unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .unwrap();
        assert!(spills(plan.as_ref()) > 0, "nothing spilled");
        let dirs = ctx.runtime_env().disk_manager.temp_dir_paths();
        assert!(
            !dirs.is_empty() && dirs.iter().all(|d| d.starts_with(&spill_dir)),
            "{dirs:?}"
        );
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_profile_log_shows_the_plan_a_table_was_written_by_with_its_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let config = ModelConfig {
            order_by: vec!["k".into()],
            ..ModelConfig::default()
        };
        let capture_logs = |filter: &str| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            let guard = tracing::subscriber::set_default(subscriber);
            (captured, guard)
        };

        let (captured, guard) = capture_logs("crmflow::profile=debug");
        // A literal in the query (as an email would be) stays out of the log.
        let sql = format!("{SQL} WHERE v <> 'someone@example.com'");
        run_model(
            &ctx,
            &lake,
            &model("m", config.clone()),
            &sql,
            &VarSet::default(),
        )
        .await
        .unwrap();
        drop(guard);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("marts/m/part-0.parquet"), "{text}");
        // The executed plan's sort, with the rows it put out; not its expressions.
        assert!(text.contains("SortExec: [output_rows=3"), "{text}");
        assert!(text.contains("FilterExec: [output_rows=3"), "{text}");
        assert!(!text.contains("example.com"), "{text}");
        assert!(!text.contains("column1"), "{text}");

        // Not logged unless asked for.
        let (captured, guard) = capture_logs("info");
        run_model(&ctx, &lake, &model("m", config), SQL, &VarSet::default())
            .await
            .unwrap();
        drop(guard);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("operators with metrics"), "{text}");
        assert!(!text.contains("output_rows="), "{text}");
    }

    #[tokio::test]
    async fn a_written_table_declares_the_order_it_was_written_in() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let config = ModelConfig {
            order_by: vec!["k".into()],
            ..ModelConfig::default()
        };
        assert_eq!(
            run_model(&ctx, &lake, &model("m", config), SQL, &VarSet::default())
                .await
                .unwrap()
                .rows,
            3
        );
        let plan = ctx.sql("SELECT k, v FROM m").await.unwrap();
        let plan = plan.create_physical_plan().await.unwrap();
        let ordering = plan.output_ordering().map(|o| o.to_string());
        assert_eq!(ordering.as_deref(), Some("k@0 ASC NULLS LAST"));
        // A query in that order (DataFusion's default ascending order) needs no sort.
        let sorted = ctx.sql("SELECT k, v FROM m ORDER BY k").await.unwrap();
        let sorted = sorted.create_physical_plan().await.unwrap();
        let text = datafusion::physical_plan::displayable(sorted.as_ref())
            .indent(false)
            .to_string();
        assert!(!text.contains("SortExec"), "{text}");
        // The order comes from the file's key-value metadata, which stays out of the
        // table's schema: a union of the table with a query of the same shape plans and
        // runs (with the metadata in the scan's schema only, DataFusion refused it as an
        // internal error, "schema metadata differs").
        assert!(ctx.table("m").await.unwrap().schema().metadata().is_empty());
        let union = table_text(
            &ctx,
            "SELECT k FROM m UNION ALL SELECT k FROM (SELECT 9 AS k) ORDER BY k",
        )
        .await;
        assert!(union.contains("| 9 |"), "{union}");
    }

    #[tokio::test]
    async fn a_table_written_before_nulls_sorted_last_is_read_nulls_first() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        // As the previous version wrote it: the sort key without `crmflow.sort_nulls`.
        let legacy = ctx
            .sql("SELECT * FROM (VALUES (NULL), (1), (2)) AS t(k)")
            .await
            .unwrap();
        let metadata = [(SORTED_BY_KEY.to_string(), "k".to_string())];
        let schema = Arc::new(
            legacy
                .schema()
                .as_arrow()
                .clone()
                .with_metadata(metadata.into_iter().collect()),
        );
        let batches = legacy.collect().await.unwrap();
        let batches = batches.into_iter().map(|b| {
            b.with_schema(schema.clone())
                .map_err(|e| TransformError::from(datafusion::error::DataFusionError::from(e)))
        });
        crmflow_core::parquet_writer::write_parquet(
            &lake,
            "marts/old/part-0.parquet",
            schema.clone(),
            writer_properties(),
            futures::stream::iter(batches),
        )
        .await
        .unwrap();
        let table = LakeTable {
            name: "old".into(),
            folder: "marts/old".into(),
            schema: None,
            partitioned: false,
        };
        let provider = lake_table(&ctx.state(), &lake, &table).await.unwrap();
        register(&ctx.state(), "old", provider).unwrap();
        let plan = ctx.sql("SELECT k FROM old").await.unwrap();
        let plan = plan.create_physical_plan().await.unwrap();
        let ordering = plan.output_ordering().map(|o| o.to_string());
        assert_eq!(ordering.as_deref(), Some("k@0 ASC"));
    }

    #[tokio::test]
    async fn unique_tests_on_the_sort_key_and_row_tests_are_decided_as_the_table_is_written() {
        use crate::datatests::{DataTest, run_tests};
        use crate::sorted_keys::tests::unique;
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let config = ModelConfig {
            order_by: vec!["k".into(), "v".into()],
            tests: vec![
                unique(&["v", "k"]),
                unique(&["k"]),
                unique(&["v"]),
                DataTest {
                    not_null: Some(vec!["v".into()]),
                    ..DataTest::default()
                },
                DataTest {
                    expression: Some("k > 1".into()),
                    ..DataTest::default()
                },
                DataTest {
                    accepted_values: Some(crate::datatests::AcceptedValues {
                        column: "v".into(),
                        values: vec!["a".into(), "b".into(), "c".into()],
                    }),
                    ..DataTest::default()
                },
            ],
            ..ModelConfig::default()
        };
        let vars = crate::vars::VarSet::default();
        // Keys repeat across the sort order (k = 1 twice), never as (k, v); `v` is not a
        // prefix of the order, its hashes repeat ('a' twice), and it is left to its
        // query. No `v` is NULL or unaccepted;
        // two rows fail `k > 1`, and their test runs its query.
        let sql = "SELECT * FROM (VALUES (2, 'b'), (1, 'a'), (1, 'c'), (3, 'a')) AS t(k, v)";
        let m = model("keys", config);
        let written = run_model(&ctx, &lake, &m, sql, &vars).await.unwrap();
        assert_eq!(written.passed_tests, [0, 3, 5]);
        let outcomes = run_tests(&ctx, "keys", &m.config.tests, &vars, &written.passed_tests).await;
        let failing: Vec<(&str, u64)> = outcomes
            .iter()
            .map(|t| (t.test.as_str(), t.failing_rows))
            .collect();
        assert_eq!(
            failing,
            [
                ("unique(v, k)", 0),
                ("unique(k)", 1),
                ("unique(v)", 1),
                ("not_null(v)", 0),
                ("expression(k > 1)", 2),
                ("accepted_values(v)", 0)
            ]
        );
        assert!(
            outcomes[1].sample.contains("| 1 | 2           |"),
            "{}",
            outcomes[1].sample
        );
        // Without the proof every query runs, and agrees.
        let queried = run_tests(&ctx, "keys", &m.config.tests, &vars, &[]).await;
        assert!(queried[0].passed() && queried[3].passed() && queried[5].passed());
    }

    #[tokio::test]
    async fn unique_tests_off_the_sort_key_are_decided_by_the_hashes_of_the_keys_written() {
        use crate::datatests::run_tests;
        use crate::sorted_keys::tests::unique;
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let config = ModelConfig {
            order_by: vec!["k".into()],
            tests: vec![unique(&["id"]), unique(&["v"]), unique(&["v", "id"])],
            ..ModelConfig::default()
        };
        let vars = crate::vars::VarSet::default();
        // `id` is unique, NULL once; `v` repeats ('a' twice); (v, id) does not repeat.
        let sql = "SELECT * FROM (VALUES (2, 'x1', 'a'), (1, NULL, 'b'), (1, 'x3', 'a'), \
                   (3, 'x4', 'c')) AS t(k, id, v)";
        let m = model("hashed", config);
        let written = run_model(&ctx, &lake, &m, sql, &vars).await.unwrap();
        assert_eq!(written.passed_tests, [0, 2]);
        let outcomes = run_tests(
            &ctx,
            "hashed",
            &m.config.tests,
            &vars,
            &written.passed_tests,
        )
        .await;
        let failing: Vec<u64> = outcomes.iter().map(|t| t.failing_rows).collect();
        assert_eq!(failing, [0, 1, 0]);
        // Without the proof every query runs, and agrees.
        let queried = run_tests(&ctx, "hashed", &m.config.tests, &vars, &[]).await;
        let failing: Vec<u64> = queried.iter().map(|t| t.failing_rows).collect();
        assert_eq!(failing, [0, 1, 0]);
    }

    #[tokio::test]
    async fn relationships_to_a_table_written_in_order_are_decided_as_the_table_is_written() {
        use crate::datatests::{DataTest, Relationship, run_tests};
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let vars = crate::vars::VarSet::default();
        let ordered = |order_by: &[&str], tests| ModelConfig {
            order_by: order_by.iter().map(|c| c.to_string()).collect(),
            tests,
            ..ModelConfig::default()
        };
        let parents = model("parents", ordered(&["id"], vec![]));
        let sql = "SELECT * FROM (VALUES ('d'), ('b'), ('a'), ('c')) AS t(id)";
        run_model(&ctx, &lake, &parents, sql, &vars).await.unwrap();
        let to_parents = |column: &str| DataTest {
            relationships: Some(Relationship {
                column: column.into(),
                to: "parents".into(),
                field: "id".into(),
            }),
            ..DataTest::default()
        };
        // `p` (first in the order) is merged with the parents; `q` is not in order and
        // is left to its query.
        let children = model(
            "children",
            ordered(&["p", "q"], vec![to_parents("p"), to_parents("q")]),
        );
        let sql =
            "SELECT * FROM (VALUES ('c', 'a'), (NULL, 'b'), ('a', 'd'), ('a', NULL)) AS t(p, q)";
        let written = run_model(&ctx, &lake, &children, sql, &vars).await.unwrap();
        assert_eq!(written.passed_tests, [0]);
        // A value missing from the parents leaves the test to its query, which finds it.
        let orphans = model("orphans", ordered(&["p"], vec![to_parents("p")]));
        let sql = "SELECT * FROM (VALUES ('a'), ('x'), ('b')) AS t(p)";
        let written = run_model(&ctx, &lake, &orphans, sql, &vars).await.unwrap();
        assert!(written.passed_tests.is_empty());
        let outcomes = run_tests(&ctx, "orphans", &orphans.config.tests, &vars, &[]).await;
        assert_eq!(outcomes[0].failing_rows, 1);
        // Without the proof the query runs, and agrees.
        let queried = run_tests(&ctx, "children", &children.config.tests, &vars, &[]).await;
        assert!(queried.iter().all(|t| t.passed()), "{queried:?}");
    }

    #[tokio::test]
    async fn a_models_datafusion_settings_apply_to_its_query_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, lake) = context(dir.path()).await;
        let mut settings = BTreeMap::new();
        settings.insert(
            "datafusion.execution.target_partitions".to_string(),
            "1".to_string(),
        );
        let config = ModelConfig {
            datafusion: settings,
            ..ModelConfig::default()
        };
        let one = model("one", config);
        let own = model_context(&ctx, &one).unwrap();
        assert_eq!(own.state().config().target_partitions(), 1);
        let written = run_model(&ctx, &lake, &one, SQL, &VarSet::default()).await;
        assert_eq!(written.unwrap().rows, 3);
        // The job's own context keeps its settings and sees the table written.
        let job = EngineConfig::default_for(chrono_tz::UTC).target_partitions;
        assert_eq!(ctx.state().config().target_partitions(), job);
        let rows = ctx
            .sql("SELECT count(*) FROM one")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }
}
