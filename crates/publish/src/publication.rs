//! One publication of one feed, in memory: the snapshot, the format files and the
//! diff files with their manifest, ready for any destination to deliver.

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::Utc;

use crate::audience::Audience;
use crate::diff::Diff;
use crate::encode;
use crate::error::Result;
use crate::manifest::{MANIFEST_VERSION, Manifest, ManifestFile};
use crate::settings::{Channel, Format};

/// The content of a publication and its manifest.
#[derive(Debug, Clone)]
pub struct Publication {
    pub manifest: Manifest,
    /// The bytes of each file of `manifest.files`, in the same order.
    pub contents: Vec<Bytes>,
    /// The published rows (key first), for table destinations.
    pub snapshot: RecordBatch,
}

/// Identity of a publication.
#[derive(Debug, Clone)]
pub struct PublicationId<'a> {
    pub segment: &'a str,
    pub channel: Channel,
    pub run_id: &'a str,
    pub as_of: &'a str,
}

impl Publication {
    /// Encodes the files of a publication.
    pub fn build(
        id: &PublicationId<'_>,
        audience: &Audience,
        diff: &Diff,
        formats: &[Format],
        previous: Option<&Manifest>,
    ) -> Result<Publication> {
        let folder = Manifest::folder(id.as_of, id.run_id);
        let mut files = vec![];
        let mut contents = vec![];
        let mut add = |name: &str, role: &str, rows: usize, bytes: Bytes| {
            files.push(ManifestFile {
                path: format!("{folder}/{name}"),
                role: role.to_string(),
                rows: rows as u64,
                bytes: bytes.len() as u64,
                sha256: encode::sha256(&bytes),
            });
            contents.push(bytes);
        };
        let rows = &audience.rows;
        add(
            "snapshot.parquet",
            "snapshot",
            rows.num_rows(),
            encode::parquet_bytes(rows)?,
        );
        for format in formats {
            let role = match format {
                Format::Csv => "csv",
                Format::Sha256Audience => "sha256_audience",
                Format::YandexAudience => "yandex_audience",
            };
            add(
                format.file_name(),
                role,
                rows.num_rows(),
                encode::format_bytes(*format, rows)?,
            );
        }
        for (role, batch) in [
            ("added", &diff.added),
            ("removed", &diff.removed),
            ("changed", &diff.changed),
        ] {
            add(
                &format!("{role}.csv"),
                role,
                batch.num_rows(),
                encode::csv_bytes(batch)?,
            );
        }
        let digest_input: String = files
            .iter()
            .map(|f| {
                let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                format!("{}:{}:{}\n", f.role, name, f.sha256)
            })
            .collect();
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            segment: id.segment.to_string(),
            channel: id.channel.as_str().to_string(),
            run_id: id.run_id.to_string(),
            as_of: id.as_of.to_string(),
            previous_run_id: previous.map(|m| m.run_id.clone()),
            previous_as_of: previous.map(|m| m.as_of.clone()),
            candidates: audience.candidates,
            rows: rows.num_rows() as u64,
            added: diff.added.num_rows() as u64,
            removed: diff.removed.num_rows() as u64,
            changed: diff.changed.num_rows() as u64,
            dropped: audience.dropped.clone(),
            rejected_identifiers: audience.rejected_identifiers,
            content_sha256: encode::sha256(digest_input.as_bytes()),
            files,
            committed_at: Utc::now(),
        };
        Ok(Publication {
            manifest,
            contents,
            snapshot: rows.clone(),
        })
    }

    /// The table name of the feed in warehouse destinations: `<segment>__<channel>`.
    pub fn table_name(&self) -> String {
        format!("{}__{}", self.manifest.segment, self.manifest.channel)
    }
}
