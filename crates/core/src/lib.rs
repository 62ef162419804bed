//! crmflow-core: the pieces every stage shares.
//!
//! - [`config`]: job files (`jobs/*.toml`), parsed strictly, errors name the key and line.
//! - [`normalize`]: the normalisation rules of `spec/sources.md` (placeholders, phones,
//!   emails, booleans, decimals, local times to UTC).
//! - [`lake`]: the lake, an object_store URL (a local directory by default).
//! - [`lease`]: one run of a job at a time, through a create-only object in the lake.
//! - [`runs`]: run records under `<lake>/_runs/`.

pub mod config;
pub mod error;
pub mod lake;
pub mod lease;
pub mod normalize;
pub mod runs;

pub use error::{CoreError, Result};
