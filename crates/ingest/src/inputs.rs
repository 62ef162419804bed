//! Finding and reading the files of a source: a local file, folder or glob, or an
//! object_store URL (a single object, a prefix, or a glob in the key).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::error::{IngestError, Result};

/// One export file of a source.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// How messages and quarantine rows name the file (a path or a URL).
    pub name: String,
    pub size: u64,
    location: Location,
}

#[derive(Debug, Clone)]
enum Location {
    Local(std::path::PathBuf),
    Object(
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    ),
}

impl InputFile {
    /// The file's bytes as a stream of pieces (a local file in 4 MiB reads, an object
    /// as the store delivers it).
    pub async fn stream(&self) -> Result<BoxStream<'static, Result<Bytes>>> {
        match &self.location {
            Location::Local(path) => {
                Ok(crate::chunks::file_stream(path.clone(), self.name.clone()))
            }
            Location::Object(store, path) => {
                let got = store.get(path).await.map_err(|e| IngestError::Read {
                    file: self.name.clone(),
                    message: e.to_string(),
                })?;
                let name = self.name.clone();
                Ok(got
                    .into_stream()
                    .map_err(move |e| IngestError::Read {
                        file: name.clone(),
                        message: e.to_string(),
                    })
                    .boxed())
            }
        }
    }

    /// A local file.
    pub fn local(path: &std::path::Path) -> Result<InputFile> {
        let size = std::fs::metadata(path)
            .map_err(|e| IngestError::Read {
                file: path.display().to_string(),
                message: e.to_string(),
            })?
            .len();
        Ok(InputFile {
            name: path.display().to_string(),
            size,
            location: Location::Local(path.to_path_buf()),
        })
    }
}

/// Every file a location names, sorted by path name (the order in which the last
/// occurrence of a key wins).
pub async fn list_inputs(
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<Vec<InputFile>> {
    let mut files = if location.contains("://") && !location.starts_with("file://") {
        list_object_store(location, options).await?
    } else {
        list_local(location.strip_prefix("file://").unwrap_or(location))?
    };
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files.retain(|f| {
        let base = f.name.rsplit('/').next().unwrap_or(&f.name);
        !base.starts_with('.') && !base.starts_with('_')
    });
    if files.is_empty() {
        return Err(IngestError::NoFiles {
            location: location.to_string(),
        });
    }
    Ok(files)
}

fn list_local(location: &str) -> Result<Vec<InputFile>> {
    let path = std::path::Path::new(location);
    if path.is_file() {
        return Ok(vec![InputFile::local(path)?]);
    }
    let pattern = if path.is_dir() {
        format!("{}/*", location.trim_end_matches('/'))
    } else {
        location.to_string()
    };
    let paths = glob::glob(&pattern).map_err(|e| IngestError::Read {
        file: location.to_string(),
        message: format!("bad glob pattern: {e}"),
    })?;
    paths
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        .map(|p| InputFile::local(&p))
        .collect()
}

async fn list_object_store(
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<Vec<InputFile>> {
    let wildcard = location.find(['*', '?', '[']);
    let listed_part = match wildcard {
        Some(i) => &location[..location[..i].rfind('/').map(|j| j + 1).unwrap_or(i)],
        None => location,
    };
    let (store, store_url, prefix) =
        crmflow_core::lake::open_store(listed_part, options).map_err(|e| IngestError::Read {
            file: location.to_string(),
            message: e.to_string(),
        })?;
    let pattern = match wildcard {
        Some(_) => Some(glob::Pattern::new(location).map_err(|e| IngestError::Read {
            file: location.to_string(),
            message: format!("bad glob pattern: {e}"),
        })?),
        None => None,
    };
    let metas: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| IngestError::Read {
            file: location.to_string(),
            message: e.to_string(),
        })?;
    let mut out = vec![];
    for meta in metas {
        let name = format!("{}{}", store_url.as_str(), meta.location.as_ref());
        if pattern.as_ref().is_some_and(|p| !p.matches(&name)) {
            continue;
        }
        out.push(InputFile {
            name,
            size: meta.size,
            location: Location::Object(store.clone(), meta.location.clone()),
        });
    }
    Ok(out)
}
