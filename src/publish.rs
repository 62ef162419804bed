//! The publish stage: every segment (a model under `sql/segments/` with a `[publish]`
//! table) on each of its channels, to the lake's publication history and the job's
//! destinations. A removal-guard refusal is a data-quality gate (exit 3); other feeds
//! are still published.

use anyhow::Result;
use chrono::NaiveDate;
use crmflow_core::config::Job;
use crmflow_core::lake::Lake;
use crmflow_core::normalize::end_of_day_micros;
use crmflow_core::runs::{PublicationRecord, RunRecord};
use crmflow_publish::PublishError;
use crmflow_publish::audience::PressureCap;
use crmflow_publish::destinations::{Destination, FilesDestination};
use crmflow_publish::publisher::{PublishRun, Segment, publish_feed};
use crmflow_publish::settings::SegmentSettings;

use crate::exit::{QualityGate, UsageError};

/// Flags of a publish.
#[derive(Debug, Clone, Default)]
pub struct PublishFlags {
    /// Segments to publish (names); empty = the job's `[publish] select`, else all.
    pub segments: Vec<String>,
    pub dry_run: bool,
    pub force: bool,
}

/// The lake's publication history: `<lake>/publish/<segment>/<channel>/...`.
pub fn history(lake: &Lake) -> FilesDestination {
    FilesDestination::new("lake", lake.clone(), "publish")
}

/// The segments of a project, with their settings, filtered by name.
pub fn segments(
    project: &crmflow_transform::models::Project,
    names: &[String],
) -> Result<Vec<Segment>> {
    let mut out = vec![];
    for model in project.models.values() {
        let Some(table) = &model.config.publish else {
            continue;
        };
        let file = model.path.with_extension("toml");
        let settings =
            SegmentSettings::from_table(table, &file).map_err(|e| UsageError(e.to_string()))?;
        out.push(Segment {
            name: model.name.clone(),
            file,
            settings,
        });
    }
    for n in names {
        if !out.iter().any(|s| &s.name == n) {
            let known: Vec<&str> = out.iter().map(|s| s.name.as_str()).collect();
            return Err(UsageError(format!(
                "no segment `{n}` (a model with a [publish] table); segments: {}",
                known.join(", ")
            ))
            .into());
        }
    }
    out.retain(|s| names.is_empty() || names.contains(&s.name));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn pressure(job: &Job, as_of: NaiveDate) -> Option<PressureCap> {
    let settings = &job.file.publish;
    if settings.pressure_max_messages == 0 {
        return None;
    }
    let end = chrono::DateTime::from_timestamp_micros(end_of_day_micros(as_of, job.business_tz))?
        .naive_utc();
    Some(PressureCap {
        max_messages: settings.pressure_max_messages,
        window_start: end - chrono::Duration::days(i64::from(settings.pressure_days)),
        window_end: end,
    })
}

/// Runs the publish stage for one date; fills `record.publications`.
pub async fn publish(
    job: &Job,
    lake: &Lake,
    as_of: NaiveDate,
    flags: &PublishFlags,
    record: &mut RunRecord,
) -> Result<()> {
    let env = crate::pipeline::model_env(job, lake, as_of).await?;
    let names = if flags.segments.is_empty() {
        &job.file.publish.select
    } else {
        &flags.segments
    };
    let segments = segments(&env.project, names)?;
    let destinations = job
        .file
        .destinations
        .iter()
        .map(|d| Destination::open(job, d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    let history = history(lake);
    let run = PublishRun {
        ctx: &env.ctx,
        history: &history,
        destinations: &destinations,
        run_id: &record.run_id,
        as_of,
        pressure: pressure(job, as_of),
        dry_run: flags.dry_run,
        force: flags.force,
    };
    let mut refused = vec![];
    let mut failed = vec![];
    let feeds: usize = segments.iter().map(|s| s.settings.channels.len()).sum();
    let bar = crate::logging::progress(feeds as u64, "publish");
    for segment in &segments {
        if env.ctx.table_exist(segment.name.as_str())? {
            for channel in &segment.settings.channels {
                if let Some(b) = &bar {
                    b.set_message(format!("{} ({})", segment.name, channel.as_str()));
                    b.inc(1);
                }
                let outcome = publish_feed(&run, segment, *channel).await;
                let rec = match outcome {
                    Ok(rec) => rec,
                    Err(e) => {
                        let status = if matches!(e, PublishError::RemovalGuard { .. }) {
                            refused.push(e.to_string());
                            "refused"
                        } else {
                            failed.push(format!("{} ({}): {e}", segment.name, channel.as_str()));
                            "failed"
                        };
                        tracing::error!(segment = %segment.name, channel = channel.as_str(), error = %e, "feed not published");
                        PublicationRecord {
                            segment: segment.name.clone(),
                            channel: channel.as_str().to_string(),
                            status: status.to_string(),
                            error: Some(e.to_string()),
                            ..Default::default()
                        }
                    }
                };
                tracing::info!(
                    segment = %rec.segment,
                    channel = %rec.channel,
                    status = %rec.status,
                    candidates = rec.candidates,
                    rows = rec.rows,
                    dropped = rec.dropped.values().sum::<u64>(),
                    added = rec.added,
                    removed = rec.removed,
                    changed = rec.changed,
                    "feed"
                );
                record.publications.push(rec);
            }
        } else {
            failed.push(format!(
                "{}: its table is not in the lake; build it first (`crmflow run --stage models`)",
                segment.name
            ));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !failed.is_empty() {
        anyhow::bail!("{} feed(s) failed: {}", failed.len(), failed.join("; "));
    }
    if !refused.is_empty() {
        return Err(QualityGate(refused.join("; ")).into());
    }
    Ok(())
}
