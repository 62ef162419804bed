//! Destinations of segment feeds, all behind one interface ([`Destination::deliver`]):
//! a folder or object_store URL ([`files`]), PostgreSQL ([`postgres`]) and, with the cargo
//! feature `delta`, Delta Lake tables (`delta`). Each delivery is atomic on its own terms
//! and idempotent: delivering the same content for the same `as_of` twice is a no-op.

#[cfg(feature = "delta")]
pub mod delta;
pub mod files;
pub mod postgres;

use crmflow_core::config::{DestinationConfig, DestinationKind, Job};
use crmflow_core::lake::Lake;

use crate::error::{PublishError, Result};
use crate::publication::Publication;

#[cfg(feature = "delta")]
pub use delta::DeltaDestination;
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
    #[cfg(feature = "delta")]
    Delta(DeltaDestination),
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
            #[cfg(feature = "delta")]
            Destination::Delta(d) => &d.name,
        }
    }

    /// Delivers one publication.
    pub async fn deliver(&self, publication: &Publication) -> Result<Delivery> {
        match self {
            Destination::Files(d) => d.deliver(publication).await,
            Destination::Postgres(d) => d.deliver(publication).await,
            #[cfg(feature = "delta")]
            Destination::Delta(d) => d.deliver(publication).await,
        }
    }
}

/// Delta Lake feeds: one table per feed under the destination's folder.
#[cfg(feature = "delta")]
fn open_delta(job: &Job, config: &DestinationConfig) -> Result<Destination> {
    let location = job
        .destination_location(config)
        .ok_or_else(|| PublishError::Destination {
            destination: config.name.clone(),
            message: "key `location` is missing".into(),
        })?;
    Ok(Destination::Delta(DeltaDestination::new(
        &config.name,
        &location,
        &config.storage_options,
    )?))
}

/// Without the `delta` feature the destination is refused with what to do.
#[cfg(not(feature = "delta"))]
fn open_delta(_job: &Job, config: &DestinationConfig) -> Result<Destination> {
    Err(PublishError::Destination {
        destination: config.name.clone(),
        message: "kind `delta` needs crmflow built with the `delta` feature (`cargo build --release --features delta`); or publish to `files` (Parquet snapshots) or `postgres`".into(),
    })
}
