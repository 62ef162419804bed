//! crmflow-publish: the last stage. Turns segment tables (SQL models under
//! `sql/segments/`) into feeds that email/SMS services, ad platforms and warehouses
//! load, following `spec/publishing.md`:
//!
//! - [`settings`]: a segment's `[publish]` settings (channels, key, fields, limits);
//! - [`audience`]: addresses, suppression and the contact pressure cap, counted by reason;
//! - [`identifiers`]: validation and the SHA-256 / MD5 digests of ad audiences;
//! - [`diff`]: `added` / `removed` / `changed` against the previous publication;
//! - [`encode`]: Parquet and CSV bytes; [`publication`]: one publication in memory;
//! - [`manifest`]: `_manifest.json`, the commit record;
//! - [`destinations`]: folders and object stores, PostgreSQL, Delta Lake;
//! - [`publisher`]: one feed start to end.

pub mod audience;
pub mod destinations;
pub mod diff;
pub mod encode;
pub mod error;
pub mod identifiers;
pub mod manifest;
pub mod publication;
pub mod publisher;
pub mod settings;

/// The `deltalake` crate this build delivers with (for tests and tools that read the tables).
#[cfg(feature = "delta")]
pub use deltalake;

pub use error::{PublishError, Result};
