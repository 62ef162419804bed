//! Destinations of segment feeds, all behind one interface ([`Destination::deliver`]):
//! a folder or object_store URL ([`files`]) and PostgreSQL ([`postgres`]). Delta Lake
//! is configured but not delivered yet (see `open_delta`). Each delivery is atomic on its own
//! terms and idempotent: delivering the same content for the same `as_of` twice is a
//! no-op.

pub mod files;
pub mod postgres;

use crmflow_core::config::{DestinationConfig, DestinationKind, Job};
use crmflow_core::lake::Lake;

use crate::error::{PublishError, Result};
use crate::publication::Publication;

pub use files::FilesDestination;
pub use postgres::PostgresDestination;

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Written,
    /// The same content for the same `as_of` was already there.
    AlreadyPresent,
}

/// A configured destination.
#[derive(Debug)]
pub enum Destination {
    Files(FilesDestination),
    Postgres(PostgresDestination),
}

/// A destination and the segments it takes.
#[derive(Debug)]
pub struct Configured {
    pub destination: Destination,
    /// Empty: every segment.
    pub segments: Vec<String>,
}

impl Configured {
    pub fn wants(&self, segment: &str) -> bool {
        self.segments.is_empty() || self.segments.iter().any(|s| s == segment)
    }
}

impl Destination {
    /// Opens a destination of the job file.
    pub fn open(job: &Job, config: &DestinationConfig) -> Result<Configured> {
        let err = |message: String| PublishError::Destination {
            destination: config.name.clone(),
            message,
        };
        let destination = match config.kind {
            DestinationKind::Files => {
                let location = job
                    .destination_location(config)
                    .ok_or_else(|| err("key `location` is missing".into()))?;
                Destination::Files(FilesDestination::new(
                    &config.name,
                    Lake::open(&location, &config.storage_options)?,
                    "",
                ))
            }
            DestinationKind::Postgres => {
                let var = config.url_env.clone().unwrap_or_default();
                let connection = std::env::var(&var).map_err(|_| {
                    err(format!(
                        "the environment variable `{var}` (key `url_env`) is not set; export the connection string in it"
                    ))
                })?;
                Destination::Postgres(PostgresDestination::new(
                    &config.name,
                    connection,
                    &config.schema,
                ))
            }
            DestinationKind::Delta => open_delta(job, config)?,
        };
        Ok(Configured {
            destination,
            segments: config.segments.clone(),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Destination::Files(d) => &d.name,
            Destination::Postgres(d) => &d.name,
        }
    }

    /// Delivers one publication.
    pub async fn deliver(&self, publication: &Publication) -> Result<Delivery> {
        match self {
            Destination::Files(d) => d.deliver(publication).await,
            Destination::Postgres(d) => d.deliver(publication).await,
        }
    }
}

/// Delta Lake feeds: the `deltalake` crate (1.1) is built on Arrow 57 and writes only
/// with its DataFusion 52 feature, a second engine next to ours (DataFusion 55, Arrow
/// 59); until it moves to our Arrow this destination is refused with a clear error.
fn open_delta(_job: &Job, config: &DestinationConfig) -> Result<Destination> {
    Err(PublishError::Destination {
        destination: config.name.clone(),
        message: "kind `delta` is not available in this version of crmflow (deltalake 1.1 needs Arrow 57 and its own DataFusion); publish to `files` (Parquet snapshots) or `postgres` instead".into(),
    })
}
