//! Encoding feed rows into the bytes of a publication's files (Parquet snapshot, CSV
//! feeds, ad-audience CSVs) and reading a snapshot back. Encodings are deterministic:
//! the same rows give the same bytes, so a rerun publishes the same content.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::error::{PublishError, Result};
use crate::settings::Format;

fn file_err(path: &str) -> impl Fn(String) -> PublishError + '_ {
    move |message| PublishError::File {
        path: path.to_string(),
        message,
    }
}

/// The rows as one Parquet file (zstd).
pub fn parquet_bytes(rows: &RecordBatch) -> Result<Bytes> {
    let err = file_err("snapshot.parquet");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("crmflow".to_string())
        .build();
    let mut out = vec![];
    let mut writer = ArrowWriter::try_new(&mut out, rows.schema(), Some(props))
        .map_err(|e| err(e.to_string()))?;
    writer.write(rows).map_err(|e| err(e.to_string()))?;
    writer.close().map_err(|e| err(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// Reads a Parquet snapshot back as one batch.
pub fn read_parquet(bytes: Bytes, path: &str) -> Result<RecordBatch> {
    let err = file_err(path);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(e.to_string()))?;
    let schema: Arc<Schema> = builder.schema().clone();
    let reader = builder.build().map_err(|e| err(e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// The rows as UTF-8 CSV with a header.
pub fn csv_bytes(rows: &RecordBatch) -> Result<Bytes> {
    let mut out = vec![];
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        writer.write(rows)?;
    }
    Ok(Bytes::from(out))
}

/// Picks columns (renamed) of the rows.
fn columns(rows: &RecordBatch, pick: &[(&str, &str)]) -> Result<RecordBatch> {
    let mut fields = vec![];
    let mut arrays = vec![];
    for (from, to) in pick {
        let i = rows.schema().index_of(from)?;
        let f = rows.schema().field(i).clone().with_name(*to);
        fields.push(f);
        arrays.push(rows.column(i).clone());
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// The file of one format.
pub fn format_bytes(format: Format, rows: &RecordBatch) -> Result<Bytes> {
    match format {
        Format::Csv => csv_bytes(rows),
        Format::Sha256Audience => csv_bytes(&columns(
            rows,
            &[
                ("hashed_email", "hashed_email"),
                ("hashed_phone", "hashed_phone"),
            ],
        )?),
        Format::YandexAudience => csv_bytes(&columns(
            rows,
            &[("yandex_email_md5", "email"), ("yandex_phone_md5", "phone")],
        )?),
    }
}

/// SHA-256 hex of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn round_trip_and_determinism() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("email", DataType::Utf8, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(StringArray::from(vec!["a@x.ru", "b,\"q\"@x.ru"])),
            ],
        )
        .unwrap();
        let p1 = parquet_bytes(&rows).unwrap();
        assert_eq!(p1, parquet_bytes(&rows).unwrap());
        assert_eq!(read_parquet(p1, "x").unwrap(), rows);
        let csv = String::from_utf8(csv_bytes(&rows).unwrap().to_vec()).unwrap();
        assert_eq!(csv, "customer_id,email\na,a@x.ru\nb,\"b,\"\"q\"\"@x.ru\"\n");
    }
}
