//! The one place that builds the DataFusion session: configuration (UTC session time
//! zone, parallelism, batch size), the runtime (a bounded memory pool and a spill
//! folder), the lake's object store, every crmflow SQL function, and every table (raw
//! lake tables, seeds, materialised models). A distributed executor (Ballista 55, on
//! the same DataFusion) is not built yet; when it is, it is to start from the same
//! [`build_session_state`], so that the choice of executor is a setting.

use std::path::PathBuf;
use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{SortExpr, col};
use datafusion::prelude::{SessionConfig, SessionContext};

use crmflow_core::config::{EngineSettings, MemoryPoolKind};
use crmflow_core::lake::Lake;
use datafusion::execution::memory_pool::{
    FairSpillPool, GreedyMemoryPool, MemoryPool, TrackConsumersPool,
};
use std::num::NonZeroUsize;

use crate::error::{Result, TransformError};

/// What the engine is built from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub business_tz: Tz,
    /// Memory pool in bytes (`None`: unbounded).
    pub memory_limit: Option<usize>,
    pub memory_pool: MemoryPoolKind,
    pub spill_dir: Option<PathBuf>,
    pub target_partitions: usize,
    pub batch_size: usize,
    /// DataFusion options by full key, applied last (`[engine.datafusion]`).
    pub options: Vec<(String, String)>,
}

impl EngineConfig {
    pub fn from_settings(
        settings: &EngineSettings,
        business_tz: Tz,
        base_dir: &std::path::Path,
    ) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            business_tz,
            memory_limit: (settings.memory_limit_mb > 0)
                .then_some((settings.memory_limit_mb as usize) << 20),
            memory_pool: settings.memory_pool,
            spill_dir: settings.spill_dir.as_ref().map(|d| base_dir.join(d)),
            target_partitions: settings.target_partitions.unwrap_or(cores).max(1),
            batch_size: settings.batch_size.max(1024),
            options: settings
                .datafusion
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Defaults for tests and `crmflow query` without a job.
    pub fn default_for(business_tz: Tz) -> Self {
        Self::from_settings(
            &EngineSettings::default(),
            business_tz,
            std::path::Path::new("."),
        )
    }
}

/// A table to register from the lake: its name, lake folder and schema.
#[derive(Debug, Clone)]
pub struct LakeTable {
    pub name: String,
    /// Lake-relative folder (`raw/calls`, `marts/rfm`).
    pub folder: String,
    pub schema: Option<SchemaRef>,
    /// Hive-partitioned by `dt=YYYY-MM-DD`.
    pub partitioned: bool,
}

/// A CSV seed table (header row, types inferred).
#[derive(Debug, Clone)]
pub struct SeedTable {
    pub name: String,
    pub path: PathBuf,
}

/// Sets DataFusion options by full key (`datafusion.execution.batch_size`, ...); a bad
/// key or value is a [`TransformError::Setting`] named by `setting_name(key)`, so the
/// message points at the job or model file the setting came from.
pub(crate) fn apply_options<'a>(
    options: &mut datafusion::config::ConfigOptions,
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    setting_name: impl Fn(&str) -> String,
) -> Result<()> {
    for (key, value) in settings {
        options
            .set(key, value)
            .map_err(|e| TransformError::Setting {
                setting: setting_name(key),
                message: format!("{e}; see DataFusion's configuration reference for the keys"),
            })?;
    }
    Ok(())
}

/// Builds the session state: functions, object store, the given lake tables and seeds.
pub async fn build_session_state(
    config: &EngineConfig,
    lake: &Lake,
    tables: &[LakeTable],
    seeds: &[SeedTable],
) -> Result<SessionState> {
    let mut session_config = SessionConfig::new()
        .with_target_partitions(config.target_partitions)
        .with_batch_size(config.batch_size)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true);
    session_config.options_mut().execution.time_zone = Some("UTC".to_string());
    session_config
        .options_mut()
        .execution
        .parquet
        .pushdown_filters = true;
    session_config
        .options_mut()
        .sql_parser
        .enable_ident_normalization = true;
    // Lake Parquet is read as plain Utf8, not Utf8View: view arrays keep whole decoded
    // pages alive and the memory pool counts each page once per batch that points into
    // it, so a sort over many small view batches asked for several times the memory it
    // used (100k-customer benchmark: a 5.9 GB request for ~1 GB of rows).
    session_config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    // A model's output is sorted once, on one core, instead of sorted per partition and
    // merged: the merge step could not spill and failed when the per-partition sorts had
    // filled the pool (100k-customer benchmark, `attribution_credits`, 5.4M rows). Window
    // and join sorts stay parallel.
    session_config.options_mut().optimizer.repartition_sorts = false;
    apply_options(
        session_config.options_mut(),
        config.options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        |key| format!("engine.datafusion.\"{key}\""),
    )?;

    // No listing or statistics caches: the lake's objects are replaced in place
    // (`part-0.parquet` of a rebuilt model), and a cached listing would describe the
    // old object (wrong size: "Out of range of file" / "Corrupt footer"). The footer
    // cache stays; it is checked against each fresh listing.
    let caches = CacheManagerConfig::default()
        .with_list_files_cache_limit(0)
        .with_file_statistics_cache_limit(0);
    let mut runtime = RuntimeEnvBuilder::new().with_cache_manager(caches);
    if let Some(limit) = config.memory_limit {
        let top_consumers = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        let pool: Arc<dyn MemoryPool> = match config.memory_pool {
            MemoryPoolKind::Fair => Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(limit),
                top_consumers,
            )),
            MemoryPoolKind::Greedy => Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(limit),
                top_consumers,
            )),
        };
        runtime = runtime.with_memory_pool(pool);
    }
    if let Some(dir) = &config.spill_dir {
        std::fs::create_dir_all(dir).map_err(|e| TransformError::Setting {
            setting: "engine.spill_dir".into(),
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        runtime = runtime.with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
        );
    }
    let runtime = Arc::new(runtime.build()?);
    runtime.register_object_store(lake.store_url(), lake.store());

    let mut state = SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::compact::CompactSlicedInputs))
        .with_physical_optimizer_rule(Arc::new(crate::row_number::FastRowNumber))
        .with_physical_optimizer_rule(Arc::new(crate::prefix_merge::MergeByPartitionKeys))
        .build();
    crate::functions::register_all(&mut state, config.business_tz)?;
    for table in tables {
        let provider = lake_table(&state, lake, table).await?;
        register(&state, &table.name, provider)?;
    }
    for seed in seeds {
        let provider = seed_table(&state, seed).await?;
        register(&state, &seed.name, provider)?;
    }
    Ok(state)
}

/// A context over a freshly built state.
pub async fn build_context(
    config: &EngineConfig,
    lake: &Lake,
    tables: &[LakeTable],
    seeds: &[SeedTable],
) -> Result<SessionContext> {
    Ok(SessionContext::new_with_state(
        build_session_state(config, lake, tables, seeds).await?,
    ))
}

/// A CSV listing table over one seed file.
pub async fn seed_table(state: &SessionState, seed: &SeedTable) -> Result<Arc<dyn TableProvider>> {
    let absolute = std::fs::canonicalize(&seed.path).map_err(|e| TransformError::Setting {
        setting: format!("seed {}", seed.path.display()),
        message: e.to_string(),
    })?;
    let url = ListingTableUrl::parse(absolute.to_string_lossy())?;
    let format =
        datafusion::datasource::file_format::csv::CsvFormat::default().with_has_header(true);
    let options = ListingOptions::new(Arc::new(format)).with_file_extension(".csv");
    let schema = options.infer_schema(state, &url).await?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Registers (or replaces) a table in the default schema.
pub fn register(state: &SessionState, name: &str, provider: Arc<dyn TableProvider>) -> Result<()> {
    let catalog = state
        .catalog_list()
        .catalog("datafusion")
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("no default catalog".into()))?;
    let schema = catalog
        .schema("public")
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("no default schema".into()))?;
    schema.deregister_table(name)?;
    schema.register_table(name.to_string(), provider)?;
    Ok(())
}

/// The sort order a model's table was written in (`SORTED_BY_KEY` in its Parquet
/// metadata), when every column it names is in the schema. Declared to DataFusion, it
/// lets windows, sorts and merges downstream reuse the order instead of sorting again.
fn recorded_sort_order(schema: &SchemaRef) -> Option<Vec<SortExpr>> {
    let columns = schema.metadata().get(crate::materialize::SORTED_BY_KEY)?;
    let nulls_first = schema
        .metadata()
        .get(crate::materialize::SORT_NULLS_KEY)
        .is_none_or(|nulls| nulls != "last");
    columns
        .split(',')
        .map(|name| {
            schema.field_with_name(name).ok()?;
            Some(col(datafusion::common::Column::from_name(name)).sort(true, nulls_first))
        })
        .collect()
}

/// A Parquet listing table over a lake folder.
pub async fn lake_table(
    state: &SessionState,
    lake: &Lake,
    table: &LakeTable,
) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(lake.url_of(&table.folder))?;
    // A model's table keeps its Parquet metadata: it records the order it was written in.
    let format = ParquetFormat::default().with_skip_metadata(table.schema.is_some());
    let mut options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    if table.partitioned {
        options = options.with_table_partition_cols(vec![("dt".to_string(), DataType::Utf8)]);
    }
    let schema = match &table.schema {
        Some(s) => s.clone(),
        None => options.infer_schema(state, &url).await?,
    };
    if let Some(order) = recorded_sort_order(&schema) {
        options = options.with_file_sort_order(vec![order]);
    }
    // The order is declared; the files' other metadata stays out of the table's schema,
    // so plans that combine tables (a union) agree on it, and a model written from this
    // table does not inherit it.
    let schema = Arc::new(schema.as_ref().clone().with_metadata(Default::default()));
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
