//! Exit codes a scheduler can act on, and the error kinds that choose them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (I/O, object store, a model's SQL failed at run time, a held lease) |
//! | 2 | bad usage or configuration (flags, job file, model files): fix and rerun |
//! | 3 | a data-quality gate failed (quarantine ratio, an error-level data test, an export missing required columns) |

use std::process::ExitCode;

/// A usage or configuration problem (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// A data-quality gate failed (exit 3).
#[derive(Debug)]
pub struct QualityGate(pub String);

impl std::fmt::Display for QualityGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data-quality gate failed: {}", self.0)
    }
}
impl std::error::Error for QualityGate {}

/// The exit code of an error.
pub fn code_of(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if cause.is::<QualityGate>() {
            return ExitCode::from(3);
        }
        if cause.is::<UsageError>() {
            return ExitCode::from(2);
        }
        if let Some(e) = cause.downcast_ref::<crmflow_core::CoreError>()
            && matches!(
                e,
                crmflow_core::CoreError::InvalidJob { .. }
                    | crmflow_core::CoreError::ReadJob { .. }
            )
        {
            return ExitCode::from(2);
        }
        if let Some(e) = cause.downcast_ref::<crmflow_transform::TransformError>()
            && matches!(
                e,
                crmflow_transform::TransformError::Model { .. }
                    | crmflow_transform::TransformError::UnknownSelector(_)
                    | crmflow_transform::TransformError::Setting { .. }
            )
        {
            return ExitCode::from(2);
        }
    }
    ExitCode::from(1)
}
