//! Job files: what a nightly run reads, builds and publishes.
//!
//! A job file is TOML, parsed strictly: an unknown key, a wrong type or a source
//! location that matches no file is an error that names the key and its line.
//! Relative paths are resolved against the job file's folder.
//! The reference of every key is the README's "Job file reference".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{CoreError, Result};

/// A parsed, validated job file.
#[derive(Debug, Clone)]
pub struct Job {
    /// The file it was read from.
    pub path: PathBuf,
    pub file: JobFile,
    /// The business time zone, parsed.
    pub business_tz: Tz,
}

/// The TOML document of a job file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub job: JobSection,
    /// Run variables, usable in SQL as `{{ var('name') }}`.
    #[serde(default)]
    pub vars: Vars,
    #[serde(default)]
    pub ingest: IngestSettings,
    /// The exports to ingest.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub models: ModelSettings,
    #[serde(default)]
    pub engine: EngineSettings,
    #[serde(default)]
    pub lease: LeaseSettings,
    #[serde(default)]
    pub publish: PublishSettings,
    /// Where segment feeds go besides the lake's own publication history.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

/// `[job]`: identity of the job and where its lake is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Job name: names the lease and the run records.
    pub name: String,
    /// Lake location: a local directory (relative to the job file) or an object_store URL
    /// (`file://`, `s3://bucket/prefix`, ...).
    pub lake: Spanned<String>,
    /// Business time zone for dates, months and cohorts (IANA name).
    #[serde(default = "default_tz")]
    pub business_time_zone: Spanned<String>,
    /// Options for the lake's object store (for S3: `aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, ...); credentials are better left to the `AWS_*` environment.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

fn default_tz() -> Spanned<String> {
    Spanned::new(0..0, "Europe/Moscow".to_string())
}

/// `[vars]`: run variables with their defaults (see `spec/marts.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vars {
    /// Attribution lookback window and the Markov non-converting window, in days.
    pub lookback_days: u32,
    /// Half-life of the `time_decay` model, in days.
    pub half_life_days: f64,
    /// `position_based` weight of the first touch (n >= 3).
    pub position_first: f64,
    /// `position_based` weight of the last touch (n >= 3).
    pub position_last: f64,
    /// Conversion types to attribute (`order`, `lead`).
    pub conversion_types: Vec<String>,
    /// Channels whose touchpoints are left out of every path.
    pub exclude_channels: Vec<String>,
    /// Path transform applied before the heuristic models: `none`, `exposure`, `first`,
    /// `remove_if_last_and_not_all`.
    pub path_transform: String,
    /// Channels for `remove_if_last_and_not_all`.
    pub path_transform_channels: Vec<String>,
    /// Touchpoint origins to keep (`metrica`, `ga4`, `call`).
    pub touchpoint_origins: Vec<String>,
    /// `product_affinity`: minimum purchases containing both products.
    pub min_pair_orders: u32,
    /// Lift from which a product pair counts as related (segments).
    pub min_lift: f64,
    /// Lifecycle thresholds in whole days.
    pub new_days: u32,
    pub active_days: u32,
    pub lapsing_days: u32,
    /// The product a segment offers (`engaged_related_buyers`).
    pub offer_sku: String,
    /// Variables of your own models: `[vars.custom] my_threshold = 3`.
    pub custom: BTreeMap<String, toml::Value>,
}

impl Default for Vars {
    fn default() -> Self {
        Self {
            lookback_days: 30,
            half_life_days: 7.0,
            position_first: 0.4,
            position_last: 0.4,
            conversion_types: vec!["order".into(), "lead".into()],
            exclude_channels: vec![],
            path_transform: "none".into(),
            path_transform_channels: vec![],
            touchpoint_origins: vec!["metrica".into(), "ga4".into(), "call".into()],
            min_pair_orders: 5,
            min_lift: 1.5,
            new_days: 30,
            active_days: 90,
            lapsing_days: 180,
            offer_sku: String::new(),
            custom: BTreeMap::new(),
        }
    }
}

/// `[ingest]`: settings of the ingest stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// A source whose quarantined share of rows read is above this fails the run (exit 3).
    pub max_quarantine_ratio: f64,
    /// How many sources are ingested at once (each on its own core); 0 = one per core.
    /// Memory grows with it: each source in flight holds a chunk and a spill bucket.
    pub parallel_sources: usize,
    /// Compression of the ingest spill's files (in `engine.spill_dir`).
    pub spill_compression: SpillCompression,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_quarantine_ratio: 0.01,
            parallel_sources: 0,
            spill_compression: SpillCompression::default(),
        }
    }
}

/// `ingest.spill_compression`: how the ingest spill's files are compressed. At 1M
/// customers the CSV/TSV sources held at most 2.3 GB of spill at once with LZ4 and
/// 7.6 GB without, and took 58.0 and 58.0 s with LZ4 against 59.1 and 55.9 s without
/// (two interleaved pairs; user CPU 93-94 s against 81-82 s, system 7-8 s against
/// 15-20 s): without, much of the CPU LZ4 took goes to the kernel copying three times
/// the bytes. (DataFusion's own spill: `[engine.datafusion]`
/// `"datafusion.execution.spill_compression"`.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpillCompression {
    /// LZ4, one block per spilled batch (the default).
    #[default]
    Lz4,
    /// Uncompressed: less CPU, about three times the disk.
    None,
}

impl IngestSettings {
    /// The number of sources ingested at once.
    pub fn parallelism(&self) -> usize {
        match self.parallel_sources {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The export formats crmflow reads (`spec/sources.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Calltouch calls journal: JSON array, paged JSON, or CSV (detected per file).
    Calltouch,
    /// Yandex Metrica Logs API visits (TSV).
    MetricaVisits,
    /// GA4 BigQuery export events (NDJSON).
    Ga4Events,
    /// Shopify orders export (CSV).
    ShopifyOrders,
    /// Yandex Direct Reports API (TSV).
    DirectSpend,
    /// Google Ads GAQL report (CSV).
    GoogleAdsSpend,
    /// Generic spend CSV.
    GenericSpend,
    /// Email/SMS message events (CSV).
    MessageEvents,
    /// Consents from the CRM (CSV).
    Consents,
}

impl SourceKind {
    pub const ALL: [SourceKind; 9] = [
        Self::Calltouch,
        Self::MetricaVisits,
        Self::Ga4Events,
        Self::ShopifyOrders,
        Self::DirectSpend,
        Self::GoogleAdsSpend,
        Self::GenericSpend,
        Self::MessageEvents,
        Self::Consents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calltouch => "calltouch",
            Self::MetricaVisits => "metrica_visits",
            Self::Ga4Events => "ga4_events",
            Self::ShopifyOrders => "shopify_orders",
            Self::DirectSpend => "direct_spend",
            Self::GoogleAdsSpend => "google_ads_spend",
            Self::GenericSpend => "generic_spend",
            Self::MessageEvents => "message_events",
            Self::Consents => "consents",
        }
    }
}

/// Text encoding of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum TextEncoding {
    /// UTF-8 when the bytes are valid UTF-8, else Windows-1251.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1251")]
    Windows1251,
}

/// `[[sources]]`: one export to ingest.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name of the source: names its quarantine folder and its run-record entry.
    pub name: String,
    pub kind: SourceKind,
    /// A file, a folder, a glob (`exports/calls/*.json`) or an object_store URL.
    pub location: Spanned<String>,
    #[serde(default)]
    pub encoding: TextEncoding,
    /// Field delimiter; detected from the header when absent.
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Time zone of local times without an offset; default: the business time zone.
    #[serde(default)]
    pub time_zone: Option<Spanned<String>>,
    /// Yandex Direct: `Cost` is in micro-units (default true).
    #[serde(default)]
    pub cost_in_micros: Option<bool>,
    /// Object store options for this source's URL.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

/// `[models]`: the SQL models to build.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// Folder of the SQL models, relative to the job file.
    pub dir: String,
    /// Selectors of the models to build (`+rfm`, `attribution_credits+`); empty = all.
    pub select: Vec<String>,
    /// How many models are built at once (each with its tests), in dependency order;
    /// 1 = one after another. Every query already runs on every core; a second model
    /// fills what one leaves idle (planning, the last merge of a sort, the last row
    /// group written, its data tests). Memory: the models share `[engine]`'s pool.
    pub parallel_models: usize,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            dir: "../sql".into(),
            select: vec![],
            parallel_models: 2,
        }
    }
}

impl ModelSettings {
    /// The number of models built at once (at least one).
    pub fn parallelism(&self) -> usize {
        self.parallel_models.max(1)
    }
}

/// `engine.memory_pool`: how the memory pool is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryPoolKind {
    Fair,
    Greedy,
}

/// `[engine]`: DataFusion settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Memory pool for query operators, in MiB; operators spill to disk above it (0 = unbounded).
    /// The default, 3 GiB, keeps the nightly job at 1M customers under a 4 GB peak: its
    /// models stage peaked at 2.51-2.57 GB in 315-323 s with it, at 4.08 GB in 306 s with
    /// a 4 GiB pool, memory the process's other buffers need on top of the pool.
    pub memory_limit_mb: u64,
    /// How the pool is shared between operators: `fair` (each spilling operator gets an
    /// equal share, so concurrent sorts all spill instead of one starving the others) or
    /// `greedy` (first come, first served).
    pub memory_pool: MemoryPoolKind,
    /// Spill folder (default: the system temp folder).
    pub spill_dir: Option<String>,
    /// Parallelism of query plans (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Rows per Arrow batch.
    pub batch_size: usize,
    /// Any DataFusion option by its full key (`datafusion.execution.sort_spill_reservation_bytes`
    /// = "10485760"), applied after crmflow's own settings.
    pub datafusion: std::collections::BTreeMap<String, String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            memory_limit_mb: 3072,
            memory_pool: MemoryPoolKind::Fair,
            spill_dir: None,
            target_partitions: None,
            batch_size: 8192,
            datafusion: Default::default(),
        }
    }
}

/// `[lease]`: one run of a job at a time.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// A lease older than this is stale and taken over.
    pub stale_after_minutes: u64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            stale_after_minutes: 360,
        }
    }
}

/// `[publish]`: settings of the publish stage, for every segment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSettings {
    /// Segments to publish (names of models under `sql/segments/`); empty = all.
    pub select: Vec<String>,
    /// Contact pressure cap: drop a contact that already got this many messages (`sent`
    /// events) on the channel in the last `pressure_days` days; 0 = off (default).
    pub pressure_max_messages: u32,
    /// Window of the contact pressure cap, in days.
    pub pressure_days: u32,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            select: vec![],
            pressure_max_messages: 0,
            pressure_days: 7,
        }
    }
}

/// What a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A local folder or object_store URL: the files of each publication and its manifest.
    Files,
    /// A PostgreSQL database: one table per segment feed, replaced in one transaction.
    Postgres,
    /// A Delta Lake table per segment feed (not available yet: refused with an error).
    Delta,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Files => "files",
            DestinationKind::Postgres => "postgres",
            DestinationKind::Delta => "delta",
        }
    }
}

/// `[[destinations]]`: one place segment feeds are delivered to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Name used in logs and run records.
    pub name: String,
    pub kind: DestinationKind,
    /// `files` and `delta`: a folder (relative to the job file) or an object_store URL.
    #[serde(default)]
    pub location: Option<Spanned<String>>,
    /// `postgres`: the name of an environment variable holding the connection string
    /// (`host=... user=... dbname=...` or `postgresql://...`); kept out of the job file
    /// because it usually carries a password.
    #[serde(default)]
    pub url_env: Option<String>,
    /// `postgres`: the schema of the feed tables (created if missing).
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// Segments delivered here; empty = all.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Object store options for `files`/`delta` URLs.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

fn default_pg_schema() -> String {
    "crmflow".to_string()
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn is_url(location: &str) -> bool {
    location.contains("://")
}

impl Job {
    /// Reads and validates a job file.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::ReadJob {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates job text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Job> {
        let invalid = |message: String| CoreError::InvalidJob {
            path: path.to_path_buf(),
            message,
        };
        let file: JobFile =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        let at = |span: std::ops::Range<usize>| format!("line {}", line_of(text, span.start));

        let tz_text = file.job.business_time_zone.get_ref();
        let business_tz: Tz = tz_text.parse().map_err(|_| {
            invalid(format!(
                "{}: key `job.business_time_zone`: unknown time zone `{tz_text}`; use an IANA name such as `Europe/Moscow`",
                at(file.job.business_time_zone.span())
            ))
        })?;
        let mut names = std::collections::BTreeSet::new();
        let base = path.parent().unwrap_or(Path::new("."));
        for source in &file.sources {
            if !names.insert(source.name.clone()) {
                return Err(invalid(format!(
                    "{}: key `sources.name`: the name `{}` is used by two sources; names must be unique",
                    at(source.location.span()),
                    source.name
                )));
            }
            if let Some(tz) = &source.time_zone
                && tz.get_ref().parse::<Tz>().is_err()
            {
                return Err(invalid(format!(
                    "{}: key `sources.time_zone` of source `{}`: unknown time zone `{}`",
                    at(tz.span()),
                    source.name,
                    tz.get_ref()
                )));
            }
            let location = source.location.get_ref();
            if !is_url(location) {
                let resolved = resolve(base, location);
                let matched = glob_matches(&resolved);
                if matched == 0 {
                    return Err(invalid(format!(
                        "{}: key `sources.location` of source `{}`: `{}` matches no file; fix the path (relative paths are read from the job file's folder)",
                        at(source.location.span()),
                        source.name,
                        resolved.display()
                    )));
                }
            }
        }
        let vars = &file.vars;
        let transforms = ["none", "exposure", "first", "remove_if_last_and_not_all"];
        if !transforms.contains(&vars.path_transform.as_str()) {
            return Err(invalid(format!(
                "key `vars.path_transform`: `{}` is not one of {}",
                vars.path_transform,
                transforms.join(", ")
            )));
        }
        if vars.position_first + vars.position_last > 1.0
            || vars.position_first < 0.0
            || vars.position_last < 0.0
        {
            return Err(invalid(
                "keys `vars.position_first` and `vars.position_last`: must be >= 0 and sum to at most 1".into(),
            ));
        }
        if vars.half_life_days <= 0.0 {
            return Err(invalid("key `vars.half_life_days`: must be > 0".into()));
        }
        if !(0.0..=1.0).contains(&file.ingest.max_quarantine_ratio) {
            return Err(invalid(
                "key `ingest.max_quarantine_ratio`: must be between 0 and 1".into(),
            ));
        }
        let mut dest_names = std::collections::BTreeSet::new();
        for d in &file.destinations {
            if !dest_names.insert(d.name.clone()) {
                return Err(invalid(format!(
                    "key `destinations.name`: the name `{}` is used by two destinations; names must be unique",
                    d.name
                )));
            }
            match d.kind {
                DestinationKind::Files | DestinationKind::Delta if d.location.is_none() => {
                    return Err(invalid(format!(
                        "destination `{}` (kind `{}`): key `location` is missing; give a folder or an object_store URL",
                        d.name,
                        d.kind.as_str()
                    )));
                }
                DestinationKind::Postgres if d.url_env.is_none() => {
                    return Err(invalid(format!(
                        "destination `{}` (kind `postgres`): key `url_env` is missing; name the environment variable that holds the connection string",
                        d.name
                    )));
                }
                _ => {}
            }
        }
        if file.publish.pressure_max_messages > 0 && file.publish.pressure_days == 0 {
            return Err(invalid(
                "key `publish.pressure_days`: must be > 0 when `publish.pressure_max_messages` is set".into(),
            ));
        }
        Ok(Job {
            path: path.to_path_buf(),
            file,
            business_tz,
        })
    }

    /// The folder the job file is in: relative paths start there.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A destination's location as an absolute local path or a URL.
    pub fn destination_location(&self, destination: &DestinationConfig) -> Option<String> {
        destination
            .location
            .as_ref()
            .map(|l| resolve_location(self.base_dir(), l.get_ref()))
    }

    /// The lake location as an absolute local path or a URL.
    pub fn lake_location(&self) -> String {
        resolve_location(self.base_dir(), self.file.job.lake.get_ref())
    }

    /// A source location as an absolute local path/glob or a URL.
    pub fn source_location(&self, source: &SourceConfig) -> String {
        resolve_location(self.base_dir(), source.location.get_ref())
    }

    /// The SQL models folder.
    pub fn models_dir(&self) -> PathBuf {
        resolve(self.base_dir(), &self.file.models.dir)
    }

    /// Time zone of a source's local times.
    pub fn source_tz(&self, source: &SourceConfig) -> Tz {
        source
            .time_zone
            .as_ref()
            .and_then(|t| t.get_ref().parse().ok())
            .unwrap_or(self.business_tz)
    }
}

/// Resolves a location against `base` unless it is a URL or absolute.
pub fn resolve_location(base: &Path, location: &str) -> String {
    if is_url(location) {
        location.to_string()
    } else {
        resolve(base, location).to_string_lossy().into_owned()
    }
}

fn resolve(base: &Path, location: &str) -> PathBuf {
    let p = Path::new(location);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    normalize_path(&joined)
}

/// Removes `.` and `..` components without touching the file system.
fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Number of local files a path, folder or glob matches.
fn glob_matches(location: &Path) -> usize {
    if location.is_file() {
        return 1;
    }
    if location.is_dir() {
        return std::fs::read_dir(location).map(|d| d.count()).unwrap_or(0);
    }
    glob::glob(&location.to_string_lossy())
        .map(|paths| paths.filter_map(|p| p.ok()).filter(|p| p.is_file()).count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job> {
        Job::parse(Path::new("/tmp/job.toml"), text)
    }

    #[test]
    fn minimal_job_gets_defaults() {
        let job = parse("[job]\nname = \"n\"\nlake = \"lake\"\n").unwrap();
        assert_eq!(job.file.vars.lookback_days, 30);
        assert_eq!(job.business_tz, chrono_tz::Europe::Moscow);
        assert_eq!(job.lake_location(), "/tmp/lake");
        assert_eq!(job.file.engine.memory_limit_mb, 3072);
    }

    #[test]
    fn spill_compression_is_lz4_unless_set_and_a_bad_value_names_its_line() {
        let base = "[job]\nname = \"n\"\nlake = \"lake\"\n[ingest]\n";
        let default = parse(base).unwrap();
        assert_eq!(default.file.ingest.spill_compression, SpillCompression::Lz4);
        let none = parse(&format!("{base}spill_compression = \"none\"\n")).unwrap();
        assert_eq!(none.file.ingest.spill_compression, SpillCompression::None);
        let err = parse(&format!("{base}spill_compression = \"zstd\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5") && err.contains("zstd"), "{err}");
    }

    #[test]
    fn misspelt_key_names_key_and_line() {
        let err = parse("[job]\nname = \"n\"\nlake = \"lake\"\n\n[vars]\nlokback_days = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lokback_days"), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err =
            parse("[job]\nname = \"n\"\nlake = \"lake\"\n[vars]\nlookback_days = \"thirty\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn missing_path_names_key_and_line() {
        let err = parse(
            "[job]\nname = \"n\"\nlake = \"lake\"\n[[sources]]\nname = \"a\"\nkind = \"calltouch\"\nlocation = \"/nonexistent/x.json\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 7") && err.contains("sources.location"),
            "{err}"
        );
    }

    #[test]
    fn bad_time_zone_is_rejected() {
        let err = parse("[job]\nname = \"n\"\nlake = \"l\"\nbusiness_time_zone = \"Mars/Base\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("Mars/Base"), "{err}");
    }

    #[test]
    fn urls_are_kept() {
        let job = parse("[job]\nname = \"n\"\nlake = \"s3://bucket/lake\"\n").unwrap();
        assert_eq!(job.lake_location(), "s3://bucket/lake");
    }
}
