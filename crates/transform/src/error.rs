//! The error type of crmflow-transform.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A problem in a model file, with the place to fix it.
    #[error("{file}:{line}: {message}")]
    Model {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("model `{model}` failed: {source}")]
    Query {
        model: String,
        source: datafusion::error::DataFusionError,
    },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("engine setting `{setting}`: {message}")]
    Setting { setting: String, message: String },
    #[error("no model matches selector `{0}`; see `crmflow models list`")]
    UnknownSelector(String),
    #[error(transparent)]
    Core(Box<crmflow_core::CoreError>),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
}

impl From<crmflow_core::CoreError> for TransformError {
    fn from(e: crmflow_core::CoreError) -> Self {
        TransformError::Core(Box::new(e))
    }
}

pub type Result<T, E = TransformError> = std::result::Result<T, E>;
