//! The manifest of a publication, `_manifest.json`: the commit record a consumer reads
//! a feed through. It is written last, with a create-only put, into the publication's
//! run-scoped folder `<segment>/<channel>/<as_of>/<run_id>/`; a folder without one is
//! an unfinished publication that consumers ignore and the next run removes.
//!
//! The current publication of a feed is the manifest with the greatest
//! `(as_of, committed_at)`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// One file of a publication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    /// Path relative to the feed's folder (`<segment>/<channel>/`).
    pub path: String,
    /// What the file is: `snapshot`, a format name, `added`, `removed`, `changed`.
    pub role: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// `_manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_version: u32,
    pub segment: String,
    pub channel: String,
    pub run_id: String,
    pub as_of: String,
    /// The publication this one was diffed against.
    pub previous_run_id: Option<String>,
    pub previous_as_of: Option<String>,
    /// Rows of the segment table.
    pub candidates: u64,
    /// Rows published.
    pub rows: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Rows dropped, by reason (`unsubscribe`, `no_address`, ...).
    pub dropped: BTreeMap<String, u64>,
    /// Ads: invalid identifiers left out of published rows.
    pub rejected_identifiers: u64,
    /// SHA-256 over the files' names and checksums: equal content, equal digest.
    pub content_sha256: String,
    pub files: Vec<ManifestFile>,
    pub committed_at: DateTime<Utc>,
}

impl Manifest {
    /// The publication's folder relative to the feed's folder.
    pub fn folder(as_of: &str, run_id: &str) -> String {
        format!("{as_of}/{run_id}")
    }

    /// The file with a role.
    pub fn file(&self, role: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.role == role)
    }
}

/// Publications are ordered by `(as_of, committed_at)`.
fn newest<'a>(manifests: impl Iterator<Item = &'a Manifest>) -> Option<&'a Manifest> {
    manifests.max_by(|a, b| (&a.as_of, a.committed_at).cmp(&(&b.as_of, b.committed_at)))
}

/// The current publication among manifests.
pub fn latest(manifests: &[Manifest]) -> Option<&Manifest> {
    newest(manifests.iter())
}

/// The publication a new one for `as_of` is diffed against: the latest of an earlier
/// date (so a rerun of the same date diffs against the same baseline).
pub fn previous_for<'a>(manifests: &'a [Manifest], as_of: &str) -> Option<&'a Manifest> {
    newest(manifests.iter().filter(|m| m.as_of.as_str() < as_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(as_of: &str, run: &str, secs: i64) -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            segment: "s".into(),
            channel: "email".into(),
            run_id: run.into(),
            as_of: as_of.into(),
            previous_run_id: None,
            previous_as_of: None,
            candidates: 0,
            rows: 0,
            added: 0,
            removed: 0,
            changed: 0,
            dropped: BTreeMap::new(),
            rejected_identifiers: 0,
            content_sha256: String::new(),
            files: vec![],
            committed_at: DateTime::from_timestamp(secs, 0).unwrap(),
        }
    }

    #[test]
    fn latest_and_previous() {
        let all = vec![
            m("2026-11-19", "r1", 10),
            m("2026-11-20", "r2", 20),
            m("2026-11-20", "r3", 30),
            m("2026-11-18", "r0", 40),
        ];
        assert_eq!(latest(&all).unwrap().run_id, "r3");
        assert_eq!(previous_for(&all, "2026-11-20").unwrap().run_id, "r1");
        assert_eq!(previous_for(&all, "2026-11-19").unwrap().run_id, "r0");
        assert!(previous_for(&all, "2026-11-18").is_none());
    }
}
