//! The files destination: a local folder or any object_store URL. Each publication's
//! files go under `<segment>/<channel>/<as_of>/<run_id>/`, then `_manifest.json` is
//! written last with a create-only put. The lake's own publication history
//! (`<lake>/publish/`) is a files destination too: it is where the previous
//! publication of a feed is read from for diffs.

use bytes::Bytes;
use crmflow_core::lake::Lake;

use crate::encode;
use crate::error::{PublishError, Result};
use crate::manifest::{MANIFEST_FILE, Manifest, ManifestFile};
use crate::publication::Publication;

use super::Delivery;

/// Set `CRMFLOW_FAILPOINT=publish_before_manifest` to abort the process after a
/// publication's files are written and before its manifest: the crash the atomic commit
/// is built for (used by the tests).
pub const FAILPOINT_ENV: &str = "CRMFLOW_FAILPOINT";

/// A folder of feeds.
#[derive(Debug, Clone)]
pub struct FilesDestination {
    pub name: String,
    store: Lake,
    prefix: String,
}

impl FilesDestination {
    pub fn new(name: &str, store: Lake, prefix: &str) -> Self {
        Self {
            name: name.to_string(),
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Where it is, for messages.
    pub fn display(&self) -> String {
        if self.prefix.is_empty() {
            self.store.display().to_string()
        } else {
            format!(
                "{}/{}",
                self.store.display().trim_end_matches('/'),
                self.prefix
            )
        }
    }

    fn feed(&self, segment: &str, channel: &str) -> String {
        [self.prefix.as_str(), segment, channel]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every committed publication of a feed (unreadable manifests are errors: a feed
    /// is never silently reset).
    pub async fn manifests(&self, segment: &str, channel: &str) -> Result<Vec<Manifest>> {
        let feed = self.feed(segment, channel);
        let mut out = vec![];
        for (path, _) in self.store.list(&feed).await? {
            if !path.ends_with(&format!("/{MANIFEST_FILE}")) {
                continue;
            }
            let Some(bytes) = self.store.get(&path).await? else {
                continue;
            };
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| PublishError::File {
                    path: format!("{}/{path}", self.store.display()),
                    message: format!("unreadable manifest: {e}; move it away to reset the feed"),
                })?;
            out.push(manifest);
        }
        Ok(out)
    }

    /// Reads one file of a publication and checks its checksum.
    pub async fn read(&self, manifest: &Manifest, file: &ManifestFile) -> Result<Bytes> {
        let path = format!(
            "{}/{}",
            self.feed(&manifest.segment, &manifest.channel),
            file.path
        );
        let bytes = self
            .store
            .get(&path)
            .await?
            .ok_or_else(|| PublishError::File {
                path: path.clone(),
                message: "listed in the manifest but missing".into(),
            })?;
        if encode::sha256(&bytes) != file.sha256 {
            return Err(PublishError::File {
                path,
                message: "checksum differs from the manifest's".into(),
            });
        }
        Ok(bytes)
    }

    /// Removes publication folders without a manifest (crashed publishes), except the
    /// current run's. Returns the number of objects removed.
    pub async fn remove_unfinished(
        &self,
        segment: &str,
        channel: &str,
        run_id: &str,
    ) -> Result<usize> {
        let feed = self.feed(segment, channel);
        let listed = self.store.list(&feed).await?;
        let mut folders = std::collections::BTreeMap::<String, bool>::new();
        for (path, _) in &listed {
            let rest = path.strip_prefix(&format!("{feed}/")).unwrap_or(path);
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() < 3 {
                continue;
            }
            let folder = format!("{feed}/{}/{}", parts[0], parts[1]);
            let committed = parts[2] == MANIFEST_FILE;
            let entry = folders.entry(folder).or_insert(false);
            *entry |= committed;
        }
        let mut removed = 0;
        for (folder, committed) in folders {
            if !committed && !folder.ends_with(&format!("/{run_id}")) {
                removed += self.store.delete_prefix(&folder).await?;
                tracing::info!(destination = %self.name, folder = %folder, "removed an unfinished publication");
            }
        }
        Ok(removed)
    }

    /// Writes a publication's files, then commits its manifest.
    pub async fn deliver(&self, publication: &Publication) -> Result<Delivery> {
        let m = &publication.manifest;
        self.remove_unfinished(&m.segment, &m.channel, &m.run_id)
            .await?;
        let existing = self.manifests(&m.segment, &m.channel).await?;
        if existing
            .iter()
            .any(|e| e.as_of == m.as_of && e.content_sha256 == m.content_sha256)
        {
            return Ok(Delivery::AlreadyPresent);
        }
        let feed = self.feed(&m.segment, &m.channel);
        for (file, bytes) in m.files.iter().zip(&publication.contents) {
            self.store
                .put(&format!("{feed}/{}", file.path), bytes.clone())
                .await?;
        }
        if std::env::var(FAILPOINT_ENV).as_deref() == Ok("publish_before_manifest") {
            tracing::error!("failpoint publish_before_manifest: aborting before the manifest");
            std::process::abort();
        }
        let path = format!(
            "{feed}/{}/{MANIFEST_FILE}",
            Manifest::folder(&m.as_of, &m.run_id)
        );
        let body = serde_json::to_vec_pretty(m).map_err(|e| PublishError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if !self.store.put_if_absent(&path, Bytes::from(body)).await? {
            return Err(PublishError::Destination {
                destination: self.name.clone(),
                message: format!(
                    "{path} already exists: another publisher committed this run id; nothing was overwritten"
                ),
            });
        }
        Ok(Delivery::Written)
    }
}
