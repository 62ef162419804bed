//! Running a job: for each date, under the job's lease, the stages in order
//! (ingest -> models), with a run record in the lake and the gates that end a run
//! with exit code 3.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use crmflow_core::config::Job;
use crmflow_core::lake::Lake;
use crmflow_core::lease::Lease;
use crmflow_core::runs::{RunRecord, RunStatus, SourceCounts, StageRecord};
use crmflow_transform::engine::{EngineConfig, LakeTable, build_context};
use crmflow_transform::materialize::mart_folder;
use crmflow_transform::models::{Materialization, Project};
use crmflow_transform::vars::VarSet;
use datafusion::prelude::SessionContext;

use crate::cli::Stage;
use crate::exit::{QualityGate, UsageError};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub dates: Vec<NaiveDate>,
    pub stages: Vec<Stage>,
    pub select: Vec<String>,
    pub lake_override: Option<String>,
    pub publish: crate::publish::PublishFlags,
}

/// Opens the lake of a job (or the override).
pub fn open_lake(job: &Job, lake_override: Option<&str>) -> Result<Lake> {
    let location = match lake_override {
        Some(l) => crmflow_core::config::resolve_location(&std::env::current_dir()?, l),
        None => job.lake_location(),
    };
    Ok(Lake::open(&location, &job.file.job.storage_options)?)
}

/// Runs a plan; returns the records of the runs made. Stops at the first date that fails.
pub async fn run(job: &Job, plan: &RunPlan) -> Result<Vec<RunRecord>> {
    if plan.stages.is_empty() || plan.stages.contains(&Stage::Models) {
        check_models(job, plan)?;
    }
    let lake = open_lake(job, plan.lake_override.as_deref())?;
    let mut records = vec![];
    for as_of in &plan.dates {
        let record = run_date(job, &lake, *as_of, plan).await?;
        let status = record.status;
        let error = record.error.clone();
        records.push(record);
        match status {
            RunStatus::Ok => {}
            RunStatus::QualityGateFailed => {
                let message = error.unwrap_or_default();
                let inner = message
                    .strip_prefix("data-quality gate failed: ")
                    .unwrap_or(&message);
                return Err(QualityGate(inner.to_string()).into());
            }
            _ => anyhow::bail!(error.unwrap_or_else(|| "the run failed".into())),
        }
    }
    Ok(records)
}

/// Loads the models and resolves the selectors before anything runs: a model file
/// or selector error is a configuration error (exit 2), not a failed run.
fn check_models(job: &Job, plan: &RunPlan) -> Result<()> {
    let as_of = plan
        .dates
        .first()
        .copied()
        .unwrap_or_else(|| default_as_of(job));
    let vars = VarSet::new(&job.file.vars, as_of, job.business_tz);
    let sources: Vec<String> = crmflow_ingest::canonical_tables()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let project =
        Project::load(&job.models_dir(), &vars, &sources).map_err(|e| UsageError(e.to_string()))?;
    let select = if plan.select.is_empty() {
        &job.file.models.select
    } else {
        &plan.select
    };
    project
        .select(select)
        .map_err(|e| UsageError(e.to_string()))?;
    Ok(())
}

fn versions() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("crmflow".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (
            "datafusion".to_string(),
            datafusion::DATAFUSION_VERSION.to_string(),
        ),
    ])
}

async fn run_date(job: &Job, lake: &Lake, as_of: NaiveDate, plan: &RunPlan) -> Result<RunRecord> {
    let name = &job.file.job.name;
    let run_id = crmflow_core::runs::new_run_id(name);
    let stale = Duration::from_secs(job.file.lease.stale_after_minutes * 60);
    let lease = Lease::acquire(lake, name, &run_id, stale).await?;
    let mut record = RunRecord::new(
        &run_id,
        name,
        &job.path.display().to_string(),
        &as_of.to_string(),
    );
    record.versions = versions();
    record.save(lake).await?;
    tracing::info!(job = %name, run_id = %run_id, as_of = %as_of, lake = %lake.display(), "run started");

    let outcome = run_stages(job, lake, as_of, plan, &mut record).await;
    record.finished_at = Some(chrono::Utc::now());
    match outcome {
        Ok(()) => {
            if record.status == RunStatus::Running {
                record.status = RunStatus::Ok;
            }
        }
        Err(e) => {
            record.status = if e.downcast_ref::<QualityGate>().is_some() {
                RunStatus::QualityGateFailed
            } else {
                RunStatus::Failed
            };
            record.error = Some(format!("{e:#}"));
        }
    }
    record.exit_code = Some(match record.status {
        RunStatus::Ok | RunStatus::Running => 0,
        RunStatus::QualityGateFailed => 3,
        RunStatus::Failed => 1,
    });
    record.save(lake).await?;
    lease.release().await?;
    tracing::info!(run_id = %run_id, status = ?record.status, "run finished");
    Ok(record)
}

async fn run_stages(
    job: &Job,
    lake: &Lake,
    as_of: NaiveDate,
    plan: &RunPlan,
    record: &mut RunRecord,
) -> Result<()> {
    let all = [Stage::Ingest, Stage::Models, Stage::Publish];
    for stage in all {
        if !plan.stages.is_empty() && !plan.stages.contains(&stage) {
            continue;
        }
        let started = Instant::now();
        let result = match stage {
            Stage::Ingest => ingest(job, lake, as_of, record).await,
            Stage::Models => {
                let select = if plan.select.is_empty() {
                    job.file.models.select.clone()
                } else {
                    plan.select.clone()
                };
                crate::models_stage::models(job, lake, as_of, &select, record)
                    .await
                    .map(|_| ())
            }
            Stage::Publish => {
                crate::publish::publish(job, lake, as_of, &plan.publish, record).await
            }
        };
        let rows = match stage {
            Stage::Ingest => record.sources.iter().map(|s| s.rows_loaded).sum(),
            Stage::Models => record
                .tables
                .iter()
                .filter(|(k, _)| k.starts_with("marts."))
                .map(|(_, v)| v)
                .sum(),
            Stage::Publish => record.publications.iter().map(|p| p.rows).sum(),
        };
        let status = match &result {
            Ok(()) => RunStatus::Ok,
            Err(e) if e.downcast_ref::<QualityGate>().is_some() => RunStatus::QualityGateFailed,
            Err(_) => RunStatus::Failed,
        };
        record.stages.push(StageRecord {
            stage: stage.as_str().to_string(),
            seconds: started.elapsed().as_secs_f64(),
            status,
            rows,
        });
        tracing::info!(
            stage = stage.as_str(),
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            rows,
            "stage finished"
        );
        result?;
    }
    Ok(())
}

/// The ingest stage: every source of the job, then the quarantine gate.
pub async fn ingest(
    job: &Job,
    lake: &Lake,
    as_of: NaiveDate,
    record: &mut RunRecord,
) -> Result<()> {
    let bar = crate::logging::progress(job.file.sources.len() as u64, "ingest");
    // Sources are independent (own files, tables and spill): up to `parallel_sources`
    // run at once, each a task on its own worker thread. Dropping the set on an error
    // aborts the others; their partitions are replaced whole, so a rerun completes them.
    // The largest sources start first, so that the last one to finish is a small one.
    let parallel = job.file.ingest.parallelism().max(1);
    let mut queue = Vec::with_capacity(job.file.sources.len());
    for (index, source) in job.file.sources.iter().enumerate() {
        let files = crmflow_ingest::list_source(job, source)
            .await
            .with_context(|| format!("source `{}`", source.name))?;
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        queue.push((bytes, index, files));
    }
    queue.sort_by_key(|(bytes, index, _)| (std::cmp::Reverse(*bytes), *index));
    let mut queue = queue.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut done: Vec<Option<SourceCounts>> = vec![None; job.file.sources.len()];
    loop {
        while running.len() < parallel {
            let Some((_, index, files)) = queue.next() else {
                break;
            };
            let (job, lake) = (job.clone(), lake.clone());
            running.spawn(async move {
                let source = &job.file.sources[index];
                let result = crmflow_ingest::ingest_files(&lake, &job, source, as_of, files).await;
                (index, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, result) = joined.context("an ingest task panicked")?;
        let source = &job.file.sources[index];
        let counts = result.map_err(|e| match e {
            crmflow_ingest::IngestError::MissingColumns { .. } => {
                anyhow::Error::new(QualityGate(e.to_string()))
            }
            other => anyhow::Error::new(other).context(format!("source `{}`", source.name)),
        })?;
        tracing::info!(
            source = %counts.source,
            files = counts.files,
            rows_read = counts.rows_read,
            loaded = counts.rows_loaded,
            quarantined = counts.rows_quarantined,
            duplicates = counts.duplicates_collapsed,
            after_cutoff = counts.rows_after_cutoff,
            seconds = format!("{:.2}", counts.seconds),
            "source ingested"
        );
        if let Some(b) = &bar {
            b.set_message(source.name.clone());
            b.inc(1);
        }
        done[index] = Some(counts);
    }
    // The run record lists sources in the job's order, whatever order they ended in.
    for counts in done.into_iter().flatten() {
        for (table, rows) in &counts.tables {
            *record.tables.entry(format!("raw.{table}")).or_default() += rows;
        }
        record.quarantined_rows += counts.rows_quarantined;
        record.sources.push(counts);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let limit = job.file.ingest.max_quarantine_ratio;
    let failing: Vec<&SourceCounts> = record
        .sources
        .iter()
        .filter(|s| s.quarantine_ratio() > limit)
        .collect();
    if !failing.is_empty() {
        let detail: Vec<String> = failing
            .iter()
            .map(|s| {
                let worst: Vec<String> = s
                    .worst_files
                    .iter()
                    .map(|(f, n)| format!("{f} ({n})"))
                    .collect();
                format!(
                    "source `{}` quarantined {} of {} rows ({:.2}%); worst files: {}",
                    s.source,
                    s.rows_quarantined,
                    s.rows_read,
                    s.quarantine_ratio() * 100.0,
                    worst.join(", ")
                )
            })
            .collect();
        return Err(QualityGate(format!(
            "quarantine ratio above ingest.max_quarantine_ratio = {limit}: {}; see <lake>/quarantine/",
            detail.join("; ")
        ))
        .into());
    }
    Ok(())
}

/// Everything needed to plan and run models for a job.
pub struct ModelEnv {
    pub project: Project,
    pub vars: VarSet,
    pub ctx: SessionContext,
}

/// Loads the job's models and builds the engine over the lake's tables.
pub async fn model_env(job: &Job, lake: &Lake, as_of: NaiveDate) -> Result<ModelEnv> {
    let vars = VarSet::new(&job.file.vars, as_of, job.business_tz);
    let raw = crmflow_ingest::canonical_tables();
    let source_names: Vec<String> = raw.iter().map(|(n, _)| n.to_string()).collect();
    let project = Project::load(&job.models_dir(), &vars, &source_names)
        .map_err(|e| UsageError(e.to_string()))?;
    let mut tables: Vec<LakeTable> = raw
        .iter()
        .map(|(name, schema)| LakeTable {
            name: name.to_string(),
            folder: format!("raw/{name}"),
            schema: Some(schema.clone()),
            partitioned: true,
        })
        .collect();
    let existing: BTreeSet<String> = lake
        .list("marts")
        .await?
        .into_iter()
        .filter_map(|(p, _)| {
            p.strip_prefix("marts/")
                .and_then(|r| r.split('/').next())
                .map(str::to_string)
        })
        .collect();
    for m in project.models.values() {
        if m.config.materialized == Materialization::Table && existing.contains(&m.name) {
            tables.push(LakeTable {
                name: m.name.clone(),
                folder: mart_folder(&m.name),
                schema: None,
                partitioned: false,
            });
        }
    }
    let seeds = project.seed_tables();
    let config = EngineConfig::from_settings(&job.file.engine, job.business_tz, job.base_dir());
    let ctx = build_context(&config, lake, &tables, &seeds).await?;
    Ok(ModelEnv { project, vars, ctx })
}

/// Loads a job file; errors are usage errors (exit 2).
pub fn load_job(path: &std::path::Path) -> Result<Job> {
    Job::load(path).map_err(|e| UsageError(e.to_string()).into())
}

/// The default `as_of`: yesterday in the business time zone.
pub fn default_as_of(job: &Job) -> NaiveDate {
    let today = chrono::Utc::now()
        .with_timezone(&job.business_tz)
        .date_naive();
    today.pred_opt().unwrap_or(today)
}

/// Dates of `--from .. --to`, inclusive.
pub fn date_range(from: NaiveDate, to: NaiveDate) -> Result<Vec<NaiveDate>> {
    if to < from {
        return Err(UsageError(format!("--to {to} is before --from {from}")).into());
    }
    Ok(from.iter_days().take_while(|d| *d <= to).collect())
}
