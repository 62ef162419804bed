//! Run records: one JSON document per run at `<lake>/_runs/<run_id>.json`.
//!
//! A record is written when the run starts (status `running`) and rewritten when it ends,
//! so a crashed run is visible as one that never finished.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::lake::Lake;

/// How a run ended; the exit code a scheduler sees follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    /// A data-quality gate failed: quarantine ratio or an error-level data test.
    QualityGateFailed,
}

/// Counts of one ingested source: `rows_read = rows_loaded + rows_quarantined +
/// duplicates_collapsed` always holds. Rows after the run's cut-off are not read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceCounts {
    pub source: String,
    pub kind: String,
    pub files: u64,
    pub bytes: u64,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_quarantined: u64,
    pub duplicates_collapsed: u64,
    /// Rows skipped because their timestamp is after the end of `as_of`.
    pub rows_after_cutoff: u64,
    pub invalid_phones: u64,
    pub invalid_emails: u64,
    /// Rows written per canonical table.
    pub tables: BTreeMap<String, u64>,
    /// Quarantined rows per file, worst first (at most 5).
    pub worst_files: Vec<(String, u64)>,
    /// Wall time of the source's ingest, from its first read to its last write
    /// (sources run concurrently up to `ingest.parallel_sources`).
    #[serde(default)]
    pub seconds: f64,
}

impl SourceCounts {
    pub fn quarantine_ratio(&self) -> f64 {
        if self.rows_read == 0 {
            0.0
        } else {
            self.rows_quarantined as f64 / self.rows_read as f64
        }
    }

    pub fn balanced(&self) -> bool {
        self.rows_read == self.rows_loaded + self.rows_quarantined + self.duplicates_collapsed
    }
}

/// One stage of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    pub stage: String,
    pub seconds: f64,
    pub status: RunStatus,
    /// Rows written by the stage.
    pub rows: u64,
}

/// What happened to one feed (a segment on one channel) in a publish stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PublicationRecord {
    pub segment: String,
    pub channel: String,
    /// `published`, `unchanged` (same content already published for this as_of),
    /// `below_minimum`, `dry_run`, `refused` (removal guard) or `failed`.
    pub status: String,
    /// Rows of the segment table; `candidates = rows + sum(dropped)`.
    pub candidates: u64,
    pub rows: u64,
    pub dropped: BTreeMap<String, u64>,
    pub rejected_identifiers: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub previous_run_id: Option<String>,
    /// Destinations the feed was delivered to (the lake's history included).
    pub destinations: Vec<String>,
    pub error: Option<String>,
}

/// Outcome of one data test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestRecord {
    pub model: String,
    pub test: String,
    pub severity: String,
    pub passed: bool,
    pub failing_rows: u64,
}

/// The record of one run of one job for one `as_of`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    pub job: String,
    pub job_file: String,
    pub as_of: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub stages: Vec<StageRecord>,
    pub sources: Vec<SourceCounts>,
    /// Rows per table written in this run (raw tables, quarantine, marts).
    pub tables: BTreeMap<String, u64>,
    pub quarantined_rows: u64,
    pub tests: Vec<TestRecord>,
    /// Feeds of the publish stage.
    #[serde(default)]
    pub publications: Vec<PublicationRecord>,
    pub error: Option<String>,
    /// Versions of crmflow and its engine.
    pub versions: BTreeMap<String, String>,
}

impl RunRecord {
    pub fn new(run_id: &str, job: &str, job_file: &str, as_of: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            job: job.to_string(),
            job_file: job_file.to_string(),
            as_of: as_of.to_string(),
            started_at: Utc::now(),
            finished_at: None,
            status: RunStatus::Running,
            exit_code: None,
            stages: vec![],
            sources: vec![],
            tables: BTreeMap::new(),
            quarantined_rows: 0,
            tests: vec![],
            publications: vec![],
            error: None,
            versions: BTreeMap::new(),
        }
    }

    fn path(run_id: &str) -> String {
        format!("_runs/{run_id}.json")
    }

    /// Writes (or rewrites) the record into the lake.
    pub async fn save(&self, lake: &Lake) -> Result<()> {
        lake.put(
            &Self::path(&self.run_id),
            Bytes::from(serde_json::to_vec_pretty(self)?),
        )
        .await
    }

    /// Every run record in the lake, oldest first; unreadable ones are skipped with a warning.
    pub async fn list(lake: &Lake) -> Result<Vec<RunRecord>> {
        let mut out = vec![];
        for (path, _) in lake.list("_runs").await? {
            if !path.ends_with(".json") {
                continue;
            }
            let Some(bytes) = lake.get(&path).await? else {
                continue;
            };
            match serde_json::from_slice::<RunRecord>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(path, error = %e, "skipping an unreadable run record"),
            }
        }
        out.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.run_id.cmp(&b.run_id))
        });
        Ok(out)
    }
}

/// A new run id: UTC start time plus the pid, sortable and unique per host.
pub fn new_run_id(job: &str) -> String {
    format!(
        "{}-{}-{}",
        job,
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}
