//! The PostgreSQL destination: one table per feed (`<schema>.<segment>__<channel>`),
//! replaced in one transaction: binary COPY into a staging table, drop the old table,
//! rename the staging table, and record the publication in
//! `<schema>.crmflow_publications`. Readers see the old table or the new one, never a
//! partial load; a failure rolls everything back.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, NaiveDate, Utc};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use crate::error::{PublishError, Result};
use crate::publication::Publication;

use super::Delivery;

/// A PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresDestination {
    pub name: String,
    /// Connection string (never logged).
    connection: String,
    schema: String,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The Postgres type of an Arrow column, and the Arrow type it is cast to for COPY.
fn column_type(data_type: &DataType) -> (Type, DataType) {
    match data_type {
        DataType::Boolean => (Type::BOOL, DataType::Boolean),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => (Type::INT8, DataType::Int64),
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            (Type::FLOAT8, DataType::Float64)
        }
        DataType::Date32 | DataType::Date64 => (Type::DATE, DataType::Date32),
        DataType::Timestamp(_, _) => (
            Type::TIMESTAMPTZ,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        _ => (Type::TEXT, DataType::Utf8),
    }
}

impl PostgresDestination {
    pub fn new(name: &str, connection: String, schema: &str) -> Self {
        Self {
            name: name.to_string(),
            connection,
            schema: schema.to_string(),
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> PublishError {
        PublishError::Destination {
            destination: self.name.clone(),
            message: format!("{what}: {e}"),
        }
    }

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.connection, NoTls)
            .await
            .map_err(|e| {
                self.err(
                    "cannot connect (check the connection string's host, port, user and database)",
                    e,
                )
            })?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(destination = %name, error = %e, "postgres connection closed with an error");
            }
        });
        Ok(client)
    }

    /// Loads a publication as the feed's table, in one transaction.
    pub async fn deliver(&self, publication: &Publication) -> Result<Delivery> {
        let m = &publication.manifest;
        let mut client = self.connect().await?;
        let schema = ident(&self.schema);
        let table = publication.table_name();
        let incoming = format!("{table}__incoming");
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.err("begin", e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.crmflow_publications (
                 segment text NOT NULL, channel text NOT NULL, run_id text NOT NULL,
                 as_of date NOT NULL, rows bigint NOT NULL, content_sha256 text NOT NULL,
                 committed_at timestamptz NOT NULL DEFAULT now(), manifest jsonb NOT NULL,
                 PRIMARY KEY (segment, channel, run_id));
             LOCK TABLE {schema}.crmflow_publications IN SHARE ROW EXCLUSIVE MODE;"
        ))
        .await
        .map_err(|e| self.err("preparing the schema", e))?;
        let last = tx
            .query_opt(
                &format!(
                    "SELECT as_of::text, content_sha256 FROM {schema}.crmflow_publications
                     WHERE segment = $1 AND channel = $2 ORDER BY as_of DESC, committed_at DESC LIMIT 1"
                ),
                &[&m.segment, &m.channel],
            )
            .await
            .map_err(|e| self.err("reading crmflow_publications", e))?;
        if let Some(row) = last {
            let (as_of, digest): (String, String) = (row.get(0), row.get(1));
            if as_of == m.as_of && digest == m.content_sha256 {
                tx.rollback().await.map_err(|e| self.err("rollback", e))?;
                return Ok(Delivery::AlreadyPresent);
            }
        }

        let batch = &publication.snapshot;
        let mut types = vec![];
        let mut columns: Vec<ArrayRef> = vec![];
        let mut defs = vec![];
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let (pg, arrow_type) = column_type(field.data_type());
            defs.push(format!("{} {}", ident(field.name()), pg.name()));
            columns.push(cast(column, &arrow_type)?);
            types.push(pg);
        }
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {schema}.{inc}; CREATE TABLE {schema}.{inc} ({defs});",
            inc = ident(&incoming),
            defs = defs.join(", ")
        ))
        .await
        .map_err(|e| self.err("creating the staging table", e))?;
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| ident(f.name()))
            .collect();
        let sink = tx
            .copy_in(&format!(
                "COPY {schema}.{} ({}) FROM STDIN (FORMAT binary)",
                ident(&incoming),
                names.join(", ")
            ))
            .await
            .map_err(|e| self.err("starting COPY", e))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for i in 0..batch.num_rows() {
            let row = row_values(&columns, i);
            let refs: Vec<&(dyn ToSql + Sync)> = row
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            writer
                .as_mut()
                .write(&refs)
                .await
                .map_err(|e| self.err("COPY", e))?;
        }
        writer
            .finish()
            .await
            .map_err(|e| self.err("finishing COPY", e))?;
        let manifest_json = serde_json::to_string(m).map_err(|e| self.err("manifest", e))?;
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {schema}.{t}; ALTER TABLE {schema}.{inc} RENAME TO {t};",
            t = ident(&table),
            inc = ident(&incoming)
        ))
        .await
        .map_err(|e| self.err("swapping the table", e))?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.crmflow_publications
                 (segment, channel, run_id, as_of, rows, content_sha256, manifest)
                 VALUES ($1, $2, $3, ($4::text)::date, $5, $6, ($7::text)::jsonb)
                 ON CONFLICT (segment, channel, run_id) DO UPDATE SET
                 as_of = excluded.as_of, rows = excluded.rows, content_sha256 = excluded.content_sha256,
                 committed_at = now(), manifest = excluded.manifest"
            ),
            &[
                &m.segment,
                &m.channel,
                &m.run_id,
                &m.as_of,
                &(m.rows as i64),
                &m.content_sha256,
                &manifest_json,
            ],
        )
        .await
        .map_err(|e| self.err("recording the publication", e))?;
        tx.commit().await.map_err(|e| self.err("commit", e))?;
        Ok(Delivery::Written)
    }
}

type Cell = Box<dyn ToSql + Sync + Send>;

fn row_values(columns: &[ArrayRef], i: usize) -> Vec<Cell> {
    columns
        .iter()
        .map(|c| -> Cell {
            let null = c.is_null(i);
            match c.data_type() {
                DataType::Boolean => Box::new((!null).then(|| c.as_boolean().value(i))),
                DataType::Int64 => {
                    Box::new((!null).then(|| c.as_primitive::<Int64Type>().value(i)))
                }
                DataType::Float64 => {
                    Box::new((!null).then(|| c.as_primitive::<Float64Type>().value(i)))
                }
                DataType::Date32 => Box::new((!null).then(|| {
                    let days = c.as_primitive::<Date32Type>().value(i);
                    NaiveDate::from_num_days_from_ce_opt(days + 719_163).unwrap_or_default()
                })),
                DataType::Timestamp(_, _) => Box::new((!null).then(|| {
                    let micros = c.as_primitive::<TimestampMicrosecondType>().value(i);
                    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default()
                })),
                _ => Box::new((!null).then(|| c.as_string::<i32>().value(i).to_string())),
            }
        })
        .collect()
}
