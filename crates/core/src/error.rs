//! The error type of crmflow-core.

use std::path::PathBuf;

/// Errors of job files, the lake, leases and run records.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read job file {path}: {source}")]
    ReadJob {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A job file that does not parse or validate; `message` names the key and line.
    #[error("{path}: {message}")]
    InvalidJob { path: PathBuf, message: String },
    #[error("lake {url}: {message}")]
    Lake { url: String, message: String },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error(
        "job `{job}` is already running: lease held by host {host}, pid {pid}, since {started_at} \
         (run {run_id}); wait for it, or remove {lease_path} if that process is gone"
    )]
    LeaseHeld {
        job: String,
        host: String,
        pid: u32,
        started_at: String,
        run_id: String,
        lease_path: String,
    },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
