//! The lake: a prefix in an object store (a local directory by default).
//!
//! Layout (see the README):
//! `raw/<table>/dt=YYYY-MM-DD/part-0.parquet`, `quarantine/<source>/dt=.../part-0.parquet`,
//! `marts/<model>/part-0.parquet`, `publish/...`, `_runs/<run_id>.json`, `_leases/<job>.json`.
//!
//! Every table partition is exactly one object, so replacing it is one atomic put (a local
//! store writes a temp file and renames it; S3 completes a multipart upload at once):
//! readers see the old or the new file, never a half-written or mixed partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::error::{CoreError, Result};

/// A lake: an object store and the prefix of the lake inside it.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// `scheme://authority` of the store: what DataFusion registers it under.
    store_url: Url,
    prefix: Path,
    /// The location as the user wrote it (resolved): for messages.
    display: String,
}

/// Opens an object store for a URL or a local path; returns the store, its
/// `scheme://authority` URL and the path inside it.
pub fn open_store(
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Url, Path)> {
    let url = location_url(location)?;
    let (store, path) =
        object_store::parse_url_opts(&url, options.iter()).map_err(|e| CoreError::Lake {
            url: location.to_string(),
            message: format!("cannot open the object store: {e}"),
        })?;
    let mut store_url = url.clone();
    store_url.set_path("/");
    store_url.set_query(None);
    Ok((Arc::from(store), store_url, path))
}

/// A local path (absolute or relative to the current folder) or a URL, as a URL.
pub fn location_url(location: &str) -> Result<Url> {
    if location.contains("://") {
        return Url::parse(location).map_err(|e| CoreError::Lake {
            url: location.to_string(),
            message: format!("not a valid URL: {e}"),
        });
    }
    let path = std::path::Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| CoreError::Lake {
                url: location.to_string(),
                message: e.to_string(),
            })?
            .join(path)
    };
    Url::from_directory_path(&absolute)
        .or_else(|_| Url::from_file_path(&absolute))
        .map_err(|_| CoreError::Lake {
            url: location.to_string(),
            message: "not an absolute path".into(),
        })
}

impl Lake {
    /// Opens a lake; a local directory is created when missing.
    pub fn open(location: &str, options: &BTreeMap<String, String>) -> Result<Lake> {
        if !location.contains("://") {
            std::fs::create_dir_all(location).map_err(|e| CoreError::Lake {
                url: location.to_string(),
                message: format!("cannot create the lake folder: {e}"),
            })?;
        }
        let (store, store_url, prefix) = open_store(location, options)?;
        Ok(Lake {
            store,
            store_url,
            prefix,
            display: location.to_string(),
        })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `scheme://authority/` of the store, for registering it with DataFusion.
    pub fn store_url(&self) -> &Url {
        &self.store_url
    }

    /// The lake location as configured.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Object path of a lake-relative path (`raw/calls/dt=2026-11-20/part-0.parquet`).
    pub fn path(&self, relative: &str) -> Path {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(
            relative
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        Path::from_iter(parts)
    }

    /// Full URL of a lake-relative folder, with a trailing slash (for `ListingTable`).
    pub fn url_of(&self, relative: &str) -> String {
        let path = self.path(relative);
        format!("{}{}/", self.store_url.as_str(), path.as_ref())
    }

    /// Writes an object, replacing any previous one (atomic for a single object).
    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(relative), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Writes an object only if none exists; `Ok(false)` when one already exists.
    pub async fn put_if_absent(&self, relative: &str, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(relative), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(relative)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists objects under a lake-relative prefix, with lake-relative paths, sorted.
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, ObjectMeta)>> {
        let prefix = self.path(relative);
        let base_len = self.prefix.parts().count();
        let mut out: Vec<(String, ObjectMeta)> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| {
                let rel = meta
                    .location
                    .parts()
                    .skip(base_len)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                (rel, meta)
            })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under a lake-relative prefix.
    pub async fn delete_prefix(&self, relative: &str) -> Result<usize> {
        let objects = self.list(relative).await?;
        for (rel, _) in &objects {
            self.delete(rel).await?;
        }
        Ok(objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_lake_put_get_list_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        lake.put(
            "raw/t/dt=2026-01-01/part-0.parquet",
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
        assert!(
            lake.put_if_absent("_leases/j.json", Bytes::from_static(b"1"))
                .await
                .unwrap()
        );
        assert!(
            !lake
                .put_if_absent("_leases/j.json", Bytes::from_static(b"2"))
                .await
                .unwrap()
        );
        assert_eq!(
            lake.get("_leases/j.json").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        let listed = lake.list("raw").await.unwrap();
        assert_eq!(listed[0].0, "raw/t/dt=2026-01-01/part-0.parquet");
        assert!(lake.url_of("raw/t").starts_with("file:///"));
        assert!(lake.url_of("raw/t").ends_with("/raw/t/"));
        assert_eq!(lake.delete_prefix("raw").await.unwrap(), 1);
        assert_eq!(
            lake.get("raw/t/dt=2026-01-01/part-0.parquet")
                .await
                .unwrap(),
            None
        );
    }
}
