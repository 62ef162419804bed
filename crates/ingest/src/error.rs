//! The error type of crmflow-ingest. Row-level problems are not errors: they are
//! quarantined rows. These are the problems that stop a source.

/// Errors that stop the ingest of a source.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{location}: no input file matches; check the source's `location`")]
    NoFiles { location: String },
    #[error("cannot read {file}: {message}")]
    Read { file: String, message: String },
    /// The file is not an export of the configured kind.
    #[error(
        "{file}: not a {kind} export: missing column(s) {missing}; check the source's `kind` and that the file is the right export"
    )]
    MissingColumns {
        file: String,
        kind: String,
        missing: String,
    },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("writing {table}: {message}")]
    Write { table: String, message: String },
    #[error(transparent)]
    Core(Box<crmflow_core::CoreError>),
}

impl From<crmflow_core::CoreError> for IngestError {
    fn from(e: crmflow_core::CoreError) -> Self {
        IngestError::Core(Box::new(e))
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
