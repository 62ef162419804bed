//! `crmflow demo`: the nightly job on the bundled sample into a local lake, then a
//! short summary of what it produced.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use datafusion::arrow::datatypes::DataType;

use crate::cli::DemoArgs;
use crate::pipeline::{self, RunPlan};

/// A result column as text, whatever string type the engine chose.
fn strings(column: &ArrayRef) -> Result<StringArray> {
    let cast = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .context("not a text column")
}

/// A result column as floats.
fn floats(column: &ArrayRef) -> Result<Float64Array> {
    let cast = datafusion::arrow::compute::cast(column, &DataType::Float64)?;
    cast.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .context("not a numeric column")
}

/// The sample's `as_of`, written by `crmflow generate` into `sample.json`.
fn sample_as_of(job: &crmflow_core::config::Job) -> Result<NaiveDate> {
    let path = job.base_dir().join("../data/sample/sample.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (or pass --as-of)", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let d = v["as_of"].as_str().context("sample.json has no as_of")?;
    Ok(d.parse()?)
}

pub async fn demo(args: DemoArgs) -> Result<()> {
    let job = pipeline::load_job(&args.job).context("run the demo from the repository root")?;
    let as_of = match args.as_of {
        Some(d) => d,
        None => sample_as_of(&job)?,
    };
    std::fs::create_dir_all(&args.out)?;
    let lake_path = args.out.join("lake");
    let plan = RunPlan {
        dates: vec![as_of],
        stages: vec![],
        select: vec![],
        lake_override: Some(lake_path.display().to_string()),
        publish: Default::default(),
    };
    let records = pipeline::run(&job, &plan).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\ncrmflow demo: job {} on the bundled sample, as_of {as_of}\n",
        job.file.job.name
    )?;
    for r in &records {
        crate::commands::print_record(&mut out, r)?;
    }
    let lake = pipeline::open_lake(&job, Some(&lake_path.display().to_string()))?;
    let env = pipeline::model_env(&job, &lake, as_of).await?;
    let ctx = &env.ctx;

    if env.project.models.contains_key("attribution_by_channel") {
        writeln!(
            out,
            "\nTop channels per attribution model (orders, credited conversions):"
        )?;
        let batches = ctx
            .sql(
                "SELECT model, channel, conversions FROM (
                   SELECT model, channel, conversions,
                          row_number() OVER (PARTITION BY model ORDER BY conversions DESC, channel) AS rank
                   FROM attribution_by_channel WHERE conversion_type = 'order')
                 WHERE rank <= 3 ORDER BY model, rank",
            )
            .await?
            .collect()
            .await?;
        let mut current = String::new();
        for b in &batches {
            let (m, c, v) = (
                strings(b.column(0))?,
                strings(b.column(1))?,
                floats(b.column(2))?,
            );
            for i in 0..b.num_rows() {
                if m.value(i) != current {
                    current = m.value(i).to_string();
                    write!(out, "\n  {:<16}", current)?;
                }
                write!(out, " {} {:.1};", c.value(i), v.value(i))?;
            }
        }
        writeln!(out)?;
    }
    if env.project.models.contains_key("second_purchase") {
        let b = ctx
            .sql("SELECT CAST(sum(repeat_buyers) AS DOUBLE) / NULLIF(sum(first_buyers), 0) FROM second_purchase")
            .await?
            .collect()
            .await?;
        if let Some(rate) = b
            .first()
            .map(|b| floats(b.column(0)))
            .transpose()?
            .filter(|a| !a.is_null(0))
        {
            writeln!(
                out,
                "\nRepeat-purchase rate (first buyers with a second purchase): {:.1}%",
                rate.value(0) * 100.0
            )?;
        }
    }
    writeln!(out, "\nOutputs:")?;
    writeln!(out, "  lake        {}", lake_path.display())?;
    writeln!(
        out,
        "  raw tables  {}/raw/<table>/dt=YYYY-MM-DD/",
        lake_path.display()
    )?;
    writeln!(
        out,
        "  quarantine  {}/quarantine/<source>/",
        lake_path.display()
    )?;
    writeln!(out, "  marts       {}/marts/<model>/", lake_path.display())?;
    writeln!(
        out,
        "  feeds       {}/publish/<segment>/<channel>/<as_of>/<run_id>/ (read through _manifest.json)",
        lake_path.display()
    )?;
    writeln!(out, "  run records {}/_runs/", lake_path.display())?;
    writeln!(
        out,
        "Try: cargo run --release --features delta -- query --lake {} \"SELECT * FROM rfm LIMIT 5\"",
        lake_path.display()
    )?;
    Ok(())
}
