//! Publishing one feed (a segment on one channel), start to end: build the audience,
//! diff it with the previous publication in the lake's history, apply the minimum size
//! and the removal guard, then deliver to every destination and commit the lake's
//! history last. A feed whose content for this `as_of` is already committed is left as
//! it is, so a rerun publishes the same content.

use std::path::PathBuf;

use chrono::NaiveDate;
use crmflow_core::runs::PublicationRecord;
use datafusion::prelude::SessionContext;

use crate::audience::{PressureCap, build_audience};
use crate::destinations::{Configured, Delivery, FilesDestination};
use crate::diff::diff;
use crate::encode;
use crate::error::{PublishError, Result};
use crate::manifest::{Manifest, previous_for};
use crate::publication::{Publication, PublicationId};
use crate::settings::{Channel, SegmentSettings};

/// A segment model and its settings.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    /// The settings file, for messages.
    pub file: PathBuf,
    pub settings: SegmentSettings,
}

/// Everything one publish stage shares.
pub struct PublishRun<'a> {
    pub ctx: &'a SessionContext,
    /// The lake's publication history (`<lake>/publish/`).
    pub history: &'a FilesDestination,
    pub destinations: &'a [Configured],
    pub run_id: &'a str,
    pub as_of: NaiveDate,
    pub pressure: Option<PressureCap>,
    /// Compute counts and diffs; write nothing.
    pub dry_run: bool,
    /// Publish even when the removal guard would refuse.
    pub force: bool,
}

async fn read_previous(
    history: &FilesDestination,
    previous: &Manifest,
) -> Result<arrow::array::RecordBatch> {
    let file = previous
        .file("snapshot")
        .ok_or_else(|| PublishError::File {
            path: format!(
                "{}/{}/{}",
                history.display(),
                previous.segment,
                previous.channel
            ),
            message: format!("manifest of run {} lists no snapshot", previous.run_id),
        })?;
    let bytes = history.read(previous, file).await?;
    encode::read_parquet(bytes, &file.path)
}

/// Publishes one feed; the record says what happened. Errors are returned for the
/// removal guard and for failures; the caller decides the exit code.
pub async fn publish_feed(
    run: &PublishRun<'_>,
    segment: &Segment,
    channel: Channel,
) -> Result<PublicationRecord> {
    let as_of = run.as_of.to_string();
    let ch = channel.as_str();
    let mut record = PublicationRecord {
        segment: segment.name.clone(),
        channel: ch.to_string(),
        ..Default::default()
    };
    let audience = build_audience(
        run.ctx,
        &segment.name,
        &segment.settings,
        channel,
        run.pressure.as_ref(),
    )
    .await?;
    record.candidates = audience.candidates;
    record.rows = audience.rows.num_rows() as u64;
    record.dropped = audience.dropped.clone();
    record.rejected_identifiers = audience.rejected_identifiers;

    let manifests = run.history.manifests(&segment.name, ch).await?;
    let previous = previous_for(&manifests, &as_of);
    let previous_rows = match previous {
        Some(p) => Some(read_previous(run.history, p).await?),
        None => None,
    };
    let changes = diff(previous_rows.as_ref(), &audience.rows)?;
    record.added = changes.added.num_rows() as u64;
    record.removed = changes.removed.num_rows() as u64;
    record.changed = changes.changed.num_rows() as u64;
    record.previous_run_id = previous.map(|p| p.run_id.clone());

    let min_size = segment.settings.min_size(channel);
    if record.rows < min_size {
        tracing::warn!(
            segment = %segment.name, channel = ch, rows = record.rows, min_size,
            "below the segment's minimum size: not published (min_size in [publish])"
        );
        record.status = "below_minimum".into();
        return Ok(record);
    }
    if let Some(p) = previous
        && p.rows > 0
    {
        let share = record.removed as f64 / p.rows as f64;
        if share > segment.settings.max_removed_share && !run.force {
            record.status = "refused".into();
            return Err(PublishError::RemovalGuard {
                segment: segment.name.clone(),
                channel: ch.to_string(),
                removed: record.removed,
                previous: p.rows,
                share: share * 100.0,
                limit: segment.settings.max_removed_share,
            });
        }
    }
    if run.dry_run {
        record.status = "dry_run".into();
        return Ok(record);
    }
    let id = PublicationId {
        segment: &segment.name,
        channel,
        run_id: run.run_id,
        as_of: &as_of,
    };
    let publication = Publication::build(
        &id,
        &audience,
        &changes,
        &segment.settings.formats(channel),
        previous,
    )?;
    if manifests
        .iter()
        .any(|m| m.as_of == as_of && m.content_sha256 == publication.manifest.content_sha256)
    {
        record.status = "unchanged".into();
        return Ok(record);
    }
    for configured in run.destinations.iter().filter(|d| d.wants(&segment.name)) {
        let d = &configured.destination;
        let delivery = d.deliver(&publication).await?;
        tracing::info!(segment = %segment.name, channel = ch, destination = d.name(), delivered = ?delivery, "feed delivered");
        record.destinations.push(d.name().to_string());
    }
    // The lake's history last: its manifest is the commit of the whole publication.
    match run.history.deliver(&publication).await? {
        Delivery::Written | Delivery::AlreadyPresent => {
            record.destinations.push(run.history.name.clone())
        }
    }
    record.status = "published".into();
    Ok(record)
}
