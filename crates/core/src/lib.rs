//! crmflow-core: the pieces every stage shares.
//!
//! - [`config`]: job files (`jobs/*.toml`), parsed strictly, errors name the key and line.
//! - [`normalize`]: the normalisation rules of `spec/sources.md` (placeholders, phones,
//!   emails, booleans, decimals, local times to UTC).
//! - [`lake`]: the lake, an object_store URL (a local directory by default).
//! - [`parquet_writer`]: one Parquet object of the lake from a stream of batches, its
//!   columns encoded in parallel, visible only when complete.
//! - [`lease`]: one run of a job at a time, through a create-only object in the lake.
//! - [`runs`]: run records under `<lake>/_runs/`.
//! - [`zone`]: time-zone conversions asked of the tz database once per day.

pub mod config;
pub mod error;
pub mod lake;
pub mod lease;
pub mod normalize;
pub mod parquet_writer;
pub mod runs;
pub mod zone;

pub use error::{CoreError, Result};
