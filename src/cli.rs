//! The command line: every subcommand and flag of `crmflow`.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// crmflow: nightly batch ETL for CRM marketing analytics.
///
/// Exit codes: 0 ok; 1 failure; 2 bad usage or configuration; 3 a data-quality gate
/// failed (quarantine ratio above the limit, or an error-level data test).
#[derive(Debug, Parser)]
#[command(name = "crmflow", version, about, long_about)]
pub struct Cli {
    /// Log format: `human` (default) or `json` (one JSON object per line, for schedulers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "CRMFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `crmflow_ingest=debug`.
    #[arg(long, global = true, default_value = "info", env = "CRMFLOW_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job: ingest, models, publish, for one date or a range (a backfill).
    Run(RunArgs),
    /// Check a job file (keys, types, paths, models) without running anything.
    Validate {
        /// The job file.
        job: PathBuf,
    },
    /// List the run records of a job's lake.
    Runs {
        /// The job file.
        job: PathBuf,
        /// Show only the last N runs.
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The whole nightly job on the bundled sample, into a local lake, with a summary.
    Demo(DemoArgs),
    /// Generate realistic vendor exports (every format and quirk of the spec).
    Generate(GenerateArgs),
    /// Work with the SQL models: list, graph, compile, run, test, docs.
    Models(ModelsArgs),
    /// Run a SQL query against the lake (raw tables, seeds and marts).
    Query(QueryArgs),
    /// Publish the segment feeds of a job (the `publish` stage of `run`, alone).
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file.
    pub job: PathBuf,
    /// Business date to run for (default: yesterday in the business time zone).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub as_of: Option<NaiveDate>,
    /// First date of a backfill (inclusive).
    #[arg(long, requires = "to")]
    pub from: Option<NaiveDate>,
    /// Last date of a backfill (inclusive).
    #[arg(long, requires = "from")]
    pub to: Option<NaiveDate>,
    /// Stages to run (default: all, in order).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub stage: Vec<Stage>,
    /// Models to build (selectors: `name`, `+name`, `name+`, `layer:marts`); default: the job's.
    #[arg(long, value_delimiter = ',')]
    pub select: Vec<String>,
    /// Use this lake instead of the job's (a path or object_store URL).
    #[arg(long)]
    pub lake: Option<String>,
    /// Publish even when a feed would lose more than its `max_removed_share`.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The job file.
    pub job: PathBuf,
    /// Business date (default: yesterday in the business time zone).
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    /// Segments to publish (default: the job's `[publish] select`, else all).
    #[arg(long, value_delimiter = ',')]
    pub segment: Vec<String>,
    /// Compute every feed's counts and diff; write nothing (no lease, no run record).
    #[arg(long)]
    pub dry_run: bool,
    /// Publish even when a feed would lose more than its `max_removed_share`.
    #[arg(long)]
    pub force: bool,
    /// Use this lake instead of the job's.
    #[arg(long)]
    pub lake: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Stage {
    Ingest,
    Models,
    Publish,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Models => "models",
            Stage::Publish => "publish",
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (the lake goes to `<out>/lake`).
    #[arg(long, default_value = "crmflow-demo")]
    pub out: PathBuf,
    /// The job to run (default: the bundled nightly job).
    #[arg(long, default_value = "jobs/nightly.toml")]
    pub job: PathBuf,
    /// Business date (default: the sample's `as_of`, from `data/sample/sample.json`).
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of customers.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The last business date of the exports (some rows run past it, as real exports do).
    #[arg(long)]
    pub as_of: NaiveDate,
    /// Days of history before `as_of`.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The job file (its models folder, variables and lake).
    #[arg(long, default_value = "jobs/nightly.toml", global = true)]
    pub job: PathBuf,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models with their layer, materialisation and dependencies.
    List,
    /// Print the dependency graph.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print a model's SQL with the run variables filled in.
    Compile {
        model: String,
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Build models (and run their tests) against the lake.
    Run {
        /// Selectors: `name`, `+name` (with upstream), `name+` (with downstream), `layer:marts`.
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Run the data tests of models against the lake's current tables.
    Test {
        #[arg(long, value_delimiter = ',')]
        select: Vec<String>,
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// Write the model catalogue (markdown): descriptions, columns, tests, lineage.
    Docs {
        #[arg(long, default_value = "crmflow-docs/models.md")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL text.
    pub sql: String,
    /// The job file (its lake and time zone).
    #[arg(long, default_value = "jobs/nightly.toml")]
    pub job: PathBuf,
    /// Use this lake instead of the job's.
    #[arg(long)]
    pub lake: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}
