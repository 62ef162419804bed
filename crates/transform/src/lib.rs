//! crmflow-transform: analysts' SQL models run as a DAG on Apache DataFusion.
//!
//! - [`engine`]: the one place that builds the DataFusion session (functions, lake
//!   tables, object stores, memory pool, spill folder).
//! - [`compact`]: copies sliced batches before sorts and hash-join builds, so the
//!   memory pool charges them for their rows, not for the buffers they point into.
//! - [`row_number`]: numbers rows of sorted `row_number()` windows in one pass, in place of
//!   DataFusion's per-partition window state.
//! - [`prefix_merge`]: merges hash-partitioned sorted partitions by their partition keys
//!   alone, not by the whole sort key.
//! - [`stand_in`]: what the engine's operators that stand in for DataFusion's share.
//! - [`functions`]: native SQL functions (business time, hashing, identity graph, Markov).
//! - [`models`]: discovering models under `sql/`, their settings, dependencies and order.
//! - [`vars`]: run variables in SQL (`{{ var('lookback_days') }}`).
//! - [`materialize`]: running models and writing them atomically into the lake.
//! - [`datatests`]: data tests beside each model.
//! - [`sorted_keys`]: `unique` tests decided while a table is written in key order.
//! - [`hashed_keys`]: the other `unique` tests, decided by the hashes of the keys written.
//! - [`parent_keys`]: `relationships` tests decided while a table is written in key
//!   order, by a merge with the parent table.
//! - [`row_tests`]: `not_null`, `accepted_values` and `expression` tests decided while a
//!   table is written.

pub mod compact;
pub mod datatests;
pub mod engine;
pub mod error;
pub mod functions;
pub mod hashed_keys;
pub mod materialize;
pub mod models;
pub mod parent_keys;
pub mod prefix_merge;
pub mod row_number;
pub mod row_tests;
pub mod sorted_keys;
pub mod stand_in;
pub mod vars;

pub use error::{Result, TransformError};
