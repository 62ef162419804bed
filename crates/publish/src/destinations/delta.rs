//! The Delta Lake destination (cargo feature `delta`, the `deltalake` crate): one Delta
//! table per feed at `<location>/<segment>__<channel>`, replaced in one commit that
//! removes every current file and adds the new snapshot. Any Delta reader (Spark,
//! DuckDB, polars, delta-rs) sees the previous version or the new one, never a mix, and
//! older versions stay readable by time travel until the table is vacuumed.
//!
//! The commit's info carries `crmflow.run_id`, `crmflow.as_of`, `crmflow.rows` and
//! `crmflow.content_sha256`; delivering the same content for the same `as_of` again is a
//! no-op. A feed whose columns changed gets its table metadata replaced first (one
//! extra commit, in which the table is empty).

use std::collections::HashMap;

use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, StructType};
use deltalake::operations::create::CreateBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use serde_json::Value;

use crate::error::{PublishError, Result};
use crate::publication::Publication;

use super::Delivery;

/// A folder of Delta tables, one per feed.
#[derive(Debug, Clone)]
pub struct DeltaDestination {
    pub name: String,
    /// The folder (a local path or `file://` URL).
    location: String,
    storage_options: HashMap<String, String>,
}

impl DeltaDestination {
    pub fn new(
        name: &str,
        location: &str,
        storage_options: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        if location.contains("://") && !location.starts_with("file://") {
            return Err(PublishError::Destination {
                destination: name.to_string(),
                message: format!(
                    "`location = \"{location}\"`: this build writes Delta tables to local folders only; publish to object stores with kind `files`"
                ),
            });
        }
        Ok(Self {
            name: name.to_string(),
            location: location.trim_end_matches('/').to_string(),
            storage_options: storage_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    fn err(&self, doing: &str, e: impl std::fmt::Display) -> PublishError {
        PublishError::Destination {
            destination: self.name.clone(),
            message: format!("{doing}: {e}"),
        }
    }

    /// Where a feed's table lives.
    pub fn table_location(&self, publication: &Publication) -> String {
        format!("{}/{}", self.location, publication.table_name())
    }

    async fn open(&self, location: &str) -> Result<Option<DeltaTable>> {
        let url = deltalake::ensure_table_uri(location)
            .map_err(|e| self.err(&format!("table location {location}"), e))?;
        let builder = DeltaTableBuilder::from_url(url)
            .map_err(|e| self.err("opening the table", e))?
            .with_storage_options(self.storage_options.clone());
        match builder.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(self.err(&format!("reading the Delta log of {location}"), e)),
        }
    }

    /// The `crmflow.*` info of the table's last commit.
    async fn last_commit_info(&self, table: &DeltaTable) -> Result<HashMap<String, Value>> {
        let mut history: Vec<_> = table
            .history(Some(1))
            .try_collect()
            .await
            .map_err(|e| self.err("reading the table history", e))?;
        Ok(history.pop().map(|c| c.info).unwrap_or_default())
    }

    /// Replaces the feed's table with the publication's snapshot in one commit.
    pub async fn deliver(&self, publication: &Publication) -> Result<Delivery> {
        let m = &publication.manifest;
        let location = self.table_location(publication);
        let batch = &publication.snapshot;
        let schema: StructType = batch
            .schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| self.err("mapping the feed's columns to Delta types", e))?;

        let existing = self.open(&location).await?;
        if let Some(table) = &existing {
            let info = self.last_commit_info(table).await?;
            let same =
                |key: &str, value: &str| info.get(key).and_then(Value::as_str) == Some(value);
            if same("crmflow.as_of", &m.as_of) && same("crmflow.content_sha256", &m.content_sha256)
            {
                return Ok(Delivery::AlreadyPresent);
            }
        }
        let same_columns = match &existing {
            Some(table) => {
                let current = table
                    .snapshot()
                    .map_err(|e| self.err("reading the table snapshot", e))?
                    .schema();
                current.as_ref() == &schema
            }
            None => false,
        };
        let mut table = match existing {
            Some(table) if same_columns => table,
            existing => CreateBuilder::new()
                .with_location(location.clone())
                .with_storage_options(self.storage_options.clone())
                .with_table_name(publication.table_name())
                .with_columns(schema.fields().cloned())
                .with_save_mode(if existing.is_some() {
                    SaveMode::Overwrite
                } else {
                    SaveMode::ErrorIfExists
                })
                .await
                .map_err(|e| self.err(&format!("creating the Delta table {location}"), e))?,
        };

        let mut writer =
            RecordBatchWriter::for_table(&table).map_err(|e| self.err("opening a writer", e))?;
        if batch.num_rows() > 0 {
            writer
                .write(batch.clone())
                .await
                .map_err(|e| self.err("writing the snapshot", e))?;
        }
        let adds = writer
            .flush()
            .await
            .map_err(|e| self.err("writing the snapshot", e))?;

        let state = table
            .snapshot()
            .map_err(|e| self.err("reading the table snapshot", e))?;
        let log_store = table.log_store();
        let mut actions: Vec<Action> = state
            .snapshot()
            .file_views(log_store.as_ref(), None)
            .map_ok(|file| Action::Remove(file.remove_action(true)))
            .try_collect()
            .await
            .map_err(|e| self.err("listing the table's current files", e))?;
        actions.extend(adds.into_iter().map(Action::Add));
        let properties = CommitProperties::default().with_metadata([
            ("crmflow.run_id".to_string(), Value::from(m.run_id.clone())),
            ("crmflow.as_of".to_string(), Value::from(m.as_of.clone())),
            ("crmflow.rows".to_string(), Value::from(m.rows)),
            (
                "crmflow.content_sha256".to_string(),
                Value::from(m.content_sha256.clone()),
            ),
        ]);
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: None,
        };
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(state), log_store, operation)
            .await
            .map_err(|e| self.err(&format!("committing to {location}"), e))?;
        table.state = Some(finalized.snapshot());
        tracing::debug!(destination = %self.name, table = %location, version = finalized.version(), "delta commit");
        Ok(Delivery::Written)
    }
}
