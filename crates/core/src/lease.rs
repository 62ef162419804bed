//! One run of a job at a time: a lease object in the lake (`_leases/<job>.json`),
//! written with a create-only put so that two schedulers racing for it cannot both win.
//!
//! A lease older than the job's `lease.stale_after_minutes`, or held by a process of this
//! host that no longer exists, is stale and taken over with a warning.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::lake::Lake;

/// Who holds a lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseHolder {
    pub job: String,
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl LeaseHolder {
    /// A holder for this process.
    pub fn this_process(job: &str, run_id: &str) -> Self {
        Self {
            job: job.to_string(),
            run_id: run_id.to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started_at: Utc::now(),
        }
    }

    fn is_stale(&self, stale_after: Duration, now: DateTime<Utc>) -> bool {
        let age = now.signed_duration_since(self.started_at);
        let too_old = age.to_std().map(|a| a > stale_after).unwrap_or(false);
        let this_host = gethostname::gethostname().to_string_lossy() == self.host.as_str();
        let dead_here = this_host
            && self.pid != std::process::id()
            && cfg!(target_os = "linux")
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
        too_old || dead_here
    }
}

/// A held lease; release it with [`Lease::release`] when the run ends.
#[derive(Debug)]
pub struct Lease {
    lake: Lake,
    path: String,
    pub holder: LeaseHolder,
}

fn lease_path(job: &str) -> String {
    format!("_leases/{job}.json")
}

impl Lease {
    /// Takes the lease of `job` or fails with [`CoreError::LeaseHeld`] naming the holder.
    pub async fn acquire(
        lake: &Lake,
        job: &str,
        run_id: &str,
        stale_after: Duration,
    ) -> Result<Lease> {
        let path = lease_path(job);
        let holder = LeaseHolder::this_process(job, run_id);
        let body = Bytes::from(serde_json::to_vec_pretty(&holder)?);
        for _attempt in 0..2 {
            if lake.put_if_absent(&path, body.clone()).await? {
                return Ok(Lease {
                    lake: lake.clone(),
                    path,
                    holder,
                });
            }
            let Some(current) = lake.get(&path).await? else {
                continue; // released between our put and our read: try again
            };
            match serde_json::from_slice::<LeaseHolder>(&current) {
                Ok(other) if !other.is_stale(stale_after, Utc::now()) => {
                    return Err(CoreError::LeaseHeld {
                        job: job.to_string(),
                        host: other.host,
                        pid: other.pid,
                        started_at: other.started_at.to_rfc3339(),
                        run_id: other.run_id,
                        lease_path: format!("{}/{path}", lake.display().trim_end_matches('/')),
                    });
                }
                Ok(other) => tracing::warn!(
                    job,
                    stale_run = %other.run_id,
                    stale_host = %other.host,
                    stale_pid = other.pid,
                    "taking over a stale lease"
                ),
                Err(_) => tracing::warn!(job, "taking over an unreadable lease"),
            }
            lake.delete(&path).await?;
        }
        Err(CoreError::Lake {
            url: lake.display().to_string(),
            message: format!("could not take the lease {path}: another run keeps taking it"),
        })
    }

    /// Gives the lease back.
    pub async fn release(self) -> Result<()> {
        self.lake.delete(&self.path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn second_acquire_is_refused_then_allowed_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        let hour = Duration::from_secs(3600);
        let first = Lease::acquire(&lake, "nightly", "r1", hour).await.unwrap();
        let err = Lease::acquire(&lake, "nightly", "r2", hour)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already running") && err.contains("r1"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        first.release().await.unwrap();
        Lease::acquire(&lake, "nightly", "r3", hour).await.unwrap();
    }

    #[tokio::test]
    async fn stale_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &BTreeMap::new()).unwrap();
        let mut old = LeaseHolder::this_process("nightly", "old");
        old.started_at = Utc::now() - chrono::Duration::hours(10);
        lake.put(
            "_leases/nightly.json",
            Bytes::from(serde_json::to_vec(&old).unwrap()),
        )
        .await
        .unwrap();
        let lease = Lease::acquire(&lake, "nightly", "new", Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(lease.holder.run_id, "new");
    }
}
