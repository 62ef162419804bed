//! The error type of crmflow-publish.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A segment's `[publish]` settings are wrong.
    #[error("{file}: {message}")]
    Settings { file: PathBuf, message: String },
    /// The segment's table does not fit the publisher (missing key, duplicate keys, ...).
    #[error("segment `{segment}`: {message}")]
    Segment { segment: String, message: String },
    /// The removal guard refused a publication (rerun with `--force` to publish anyway).
    #[error(
        "segment `{segment}` ({channel}): the publication would remove {removed} of {previous} contacts ({share:.1}%), more than max_removed_share = {limit}; check the segment, or publish anyway with `--force`"
    )]
    RemovalGuard {
        segment: String,
        channel: String,
        removed: u64,
        previous: u64,
        share: f64,
        limit: f64,
    },
    #[error("destination `{destination}`: {message}")]
    Destination {
        destination: String,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    DataFusion(Box<datafusion::error::DataFusionError>),
    #[error(transparent)]
    Arrow(Box<arrow::error::ArrowError>),
    #[error(transparent)]
    Core(Box<crmflow_core::CoreError>),
}

impl From<crmflow_core::CoreError> for PublishError {
    fn from(e: crmflow_core::CoreError) -> Self {
        PublishError::Core(Box::new(e))
    }
}

impl From<datafusion::error::DataFusionError> for PublishError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        PublishError::DataFusion(Box::new(e))
    }
}

impl From<arrow::error::ArrowError> for PublishError {
    fn from(e: arrow::error::ArrowError) -> Self {
        PublishError::Arrow(Box::new(e))
    }
}

pub type Result<T, E = PublishError> = std::result::Result<T, E>;
