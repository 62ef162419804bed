//! The subcommands: each turns parsed flags into calls to the stage crates and prints
//! results on stdout (logs go to stderr).

use std::io::Write;

use anyhow::{Context, Result};
use crmflow_core::runs::RunRecord;
use datafusion::arrow::record_batch::RecordBatch;

use crate::cli::{
    Command, GraphFormat, ModelsArgs, ModelsCommand, OutputFormat, QueryArgs, RunArgs,
};
use crate::exit::UsageError;
use crate::pipeline::{self, RunPlan};

pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Validate { job } => validate(&job).await,
        Command::Runs { job, last, json } => runs(&job, last, json).await,
        Command::Demo(args) => crate::demo::demo(args).await,
        Command::Generate(args) => crate::generate::generate(&args),
        Command::Models(args) => models(args).await,
        Command::Query(args) => query(args).await,
        Command::Publish(args) => publish(args).await,
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let job = pipeline::load_job(&args.job)?;
    let dates = match (args.as_of, args.from, args.to) {
        (Some(d), _, _) => vec![d],
        (None, Some(from), Some(to)) => pipeline::date_range(from, to)?,
        _ => vec![pipeline::default_as_of(&job)],
    };
    let plan = RunPlan {
        dates,
        stages: args.stage,
        select: args.select,
        lake_override: args.lake,
        publish: crate::publish::PublishFlags {
            force: args.force,
            ..Default::default()
        },
    };
    let records = pipeline::run(&job, &plan).await?;
    let mut out = std::io::stdout().lock();
    for r in &records {
        print_record(&mut out, r)?;
    }
    Ok(())
}

/// A short human summary of a run record.
pub fn print_record(out: &mut impl Write, r: &RunRecord) -> Result<()> {
    writeln!(
        out,
        "run {} ({} as_of {}): {:?}",
        r.run_id, r.job, r.as_of, r.status
    )?;
    for s in &r.stages {
        writeln!(
            out,
            "  stage {:<8} {:>8.2}s {:>10} rows  {:?}",
            s.stage, s.seconds, s.rows, s.status
        )?;
    }
    for s in &r.sources {
        writeln!(
            out,
            "  source {:<18} read {:>8} = loaded {:>8} + quarantined {:>5} + duplicates {:>6}  (after cut-off {})",
            s.source,
            s.rows_read,
            s.rows_loaded,
            s.rows_quarantined,
            s.duplicates_collapsed,
            s.rows_after_cutoff
        )?;
    }
    print_publications(out, &r.publications)?;
    let failed = r.tests.iter().filter(|t| !t.passed).count();
    if !r.tests.is_empty() {
        writeln!(
            out,
            "  data tests: {} passed, {} failed",
            r.tests.len() - failed,
            failed
        )?;
    }
    Ok(())
}

/// One line per feed: status, sizes, dropped by reason, diff.
pub fn print_publications(
    out: &mut impl Write,
    feeds: &[crmflow_core::runs::PublicationRecord],
) -> Result<()> {
    for p in feeds {
        let dropped: Vec<String> = p.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "  feed {:<24} {:<5} {:<13} {:>7} of {:>7} rows  +{} -{} ~{}  dropped: {}",
            p.segment,
            p.channel,
            p.status,
            p.rows,
            p.candidates,
            p.added,
            p.removed,
            p.changed,
            if dropped.is_empty() {
                "none".to_string()
            } else {
                dropped.join(", ")
            }
        )?;
    }
    Ok(())
}

async fn publish(args: crate::cli::PublishArgs) -> Result<()> {
    let job = pipeline::load_job(&args.job)?;
    let as_of = args.as_of.unwrap_or_else(|| pipeline::default_as_of(&job));
    let flags = crate::publish::PublishFlags {
        segments: args.segment,
        dry_run: args.dry_run,
        force: args.force,
    };
    if args.dry_run {
        let lake = pipeline::open_lake(&job, args.lake.as_deref())?;
        let mut record = RunRecord::new("dry-run", &job.file.job.name, "", &as_of.to_string());
        let result = crate::publish::publish(&job, &lake, as_of, &flags, &mut record).await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "dry run (as_of {as_of}): nothing written")?;
        print_publications(&mut out, &record.publications)?;
        return result;
    }
    let plan = RunPlan {
        dates: vec![as_of],
        stages: vec![crate::cli::Stage::Publish],
        select: vec![],
        lake_override: args.lake,
        publish: flags,
    };
    let records = pipeline::run(&job, &plan).await?;
    let mut out = std::io::stdout().lock();
    for r in &records {
        print_record(&mut out, r)?;
    }
    Ok(())
}

async fn validate(path: &std::path::Path) -> Result<()> {
    let job = pipeline::load_job(path)?;
    let as_of = pipeline::default_as_of(&job);
    let vars = crmflow_transform::vars::VarSet::new(&job.file.vars, as_of, job.business_tz);
    let sources: Vec<String> = crmflow_ingest::canonical_tables()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let project = crmflow_transform::models::Project::load(&job.models_dir(), &vars, &sources)
        .map_err(|e| UsageError(e.to_string()))?;
    project
        .select(&job.file.models.select)
        .map_err(|e| UsageError(e.to_string()))?;
    for model in project.models.values() {
        for t in &model.config.tests {
            t.compile(&model.name).map_err(|e| {
                UsageError(format!(
                    "{}: {e}",
                    model.path.with_extension("toml").display()
                ))
            })?;
        }
    }
    println!(
        "{}: ok ({} sources, {} models, {} seeds, lake {})",
        path.display(),
        job.file.sources.len(),
        project.models.len(),
        project.seeds.len(),
        job.lake_location()
    );
    Ok(())
}

async fn runs(path: &std::path::Path, last: usize, json: bool) -> Result<()> {
    let job = pipeline::load_job(path)?;
    let lake = pipeline::open_lake(&job, None)?;
    let records = RunRecord::list(&lake).await?;
    let shown = &records[records.len().saturating_sub(last)..];
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, shown)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<44} {:<10} {:<20} {:>9} {:>6} {:>11}",
        "run_id", "as_of", "status", "seconds", "exit", "quarantined"
    )?;
    for r in shown {
        let seconds: f64 = r.stages.iter().map(|s| s.seconds).sum();
        writeln!(
            out,
            "{:<44} {:<10} {:<20} {:>9.2} {:>6} {:>11}",
            r.run_id,
            r.as_of,
            format!("{:?}", r.status),
            seconds,
            r.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.quarantined_rows
        )?;
    }
    Ok(())
}

async fn models(args: ModelsArgs) -> Result<()> {
    let job = pipeline::load_job(&args.job)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ModelsCommand::List => {
            let env_vars = crmflow_transform::vars::VarSet::new(
                &job.file.vars,
                pipeline::default_as_of(&job),
                job.business_tz,
            );
            let project = load_project(&job, &env_vars)?;
            for name in &project.order {
                let m = &project.models[name];
                writeln!(
                    out,
                    "{:<28} {:<13} {:<6} <- {}",
                    m.name,
                    m.layer,
                    format!("{:?}", m.config.materialized).to_lowercase(),
                    m.depends_on.join(", ")
                )?;
            }
        }
        ModelsCommand::Graph { format } => {
            let env_vars = crmflow_transform::vars::VarSet::new(
                &job.file.vars,
                pipeline::default_as_of(&job),
                job.business_tz,
            );
            let project = load_project(&job, &env_vars)?;
            match format {
                GraphFormat::Dot => write!(out, "{}", project.dot())?,
                GraphFormat::Mermaid => write!(out, "{}", project.mermaid())?,
            }
        }
        ModelsCommand::Compile { model, as_of } => {
            let vars = crmflow_transform::vars::VarSet::new(
                &job.file.vars,
                as_of.unwrap_or_else(|| pipeline::default_as_of(&job)),
                job.business_tz,
            );
            let project = load_project(&job, &vars)?;
            let m = project.models.get(&model.to_lowercase()).ok_or_else(|| {
                UsageError(format!("no model `{model}`; see `crmflow models list`"))
            })?;
            write!(out, "{}", vars.render(&m.sql, &m.path)?)?;
        }
        ModelsCommand::Run { select, as_of } => {
            let as_of = as_of.unwrap_or_else(|| pipeline::default_as_of(&job));
            let lake = pipeline::open_lake(&job, None)?;
            let mut record = RunRecord::new(
                "models-run",
                &job.file.job.name,
                &job.path.display().to_string(),
                &as_of.to_string(),
            );
            let result =
                crate::models_stage::models(&job, &lake, as_of, &select, &mut record).await;
            for (name, rows, secs) in result.as_ref().map(|o| o.built.clone()).unwrap_or_default() {
                writeln!(out, "built {name:<28} {rows:>10} rows {secs:>8.2}s")?;
            }
            print_tests(&mut out, &record)?;
            result?;
        }
        ModelsCommand::Test { select, as_of } => {
            let as_of = as_of.unwrap_or_else(|| pipeline::default_as_of(&job));
            let lake = pipeline::open_lake(&job, None)?;
            let env = pipeline::model_env(&job, &lake, as_of).await?;
            let selected = env
                .project
                .select(&select)
                .map_err(|e| UsageError(e.to_string()))?;
            let (mut passed, mut failed, mut errors) = (0, 0, 0);
            for name in selected {
                let m = &env.project.models[&name];
                if m.config.materialized == crmflow_transform::models::Materialization::View {
                    let sql = env.vars.render(&m.sql, &m.path)?;
                    crmflow_transform::materialize::run_model(&env.ctx, &lake, m, &sql, &env.vars)
                        .await?;
                }
                for t in crmflow_transform::datatests::run_tests(
                    &env.ctx,
                    &name,
                    &m.config.tests,
                    &env.vars,
                    &[],
                )
                .await
                {
                    if t.passed() {
                        passed += 1;
                        writeln!(out, "PASS {} {}", t.model, t.test)?;
                        continue;
                    }
                    failed += 1;
                    if t.severity == crmflow_transform::datatests::Severity::Error {
                        errors += 1;
                    }
                    writeln!(
                        out,
                        "FAIL [{}] {} {}: {} offending rows",
                        t.severity.as_str(),
                        t.model,
                        t.test,
                        t.failing_rows
                    )?;
                    if let Some(e) = &t.error {
                        writeln!(out, "  error: {e}")?;
                    }
                    if !t.sample.is_empty() {
                        writeln!(out, "{}", t.sample)?;
                    }
                }
            }
            writeln!(out, "{passed} passed, {failed} failed")?;
            if errors > 0 {
                return Err(crate::exit::QualityGate(format!(
                    "{errors} error-level data test(s) failed"
                ))
                .into());
            }
        }
        ModelsCommand::Docs { out: path } => {
            let vars = crmflow_transform::vars::VarSet::new(
                &job.file.vars,
                pipeline::default_as_of(&job),
                job.business_tz,
            );
            let project = load_project(&job, &vars)?;
            let text = catalogue(&project);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                out,
                "wrote {} ({} models)",
                path.display(),
                project.models.len()
            )?;
        }
    }
    Ok(())
}

fn print_tests(out: &mut impl Write, record: &RunRecord) -> Result<()> {
    let failed = record.tests.iter().filter(|t| !t.passed).count();
    for t in record.tests.iter().filter(|t| !t.passed) {
        writeln!(
            out,
            "FAIL [{}] {} {}: {} offending rows",
            t.severity, t.model, t.test, t.failing_rows
        )?;
    }
    writeln!(
        out,
        "{} passed, {} failed",
        record.tests.len() - failed,
        failed
    )?;
    Ok(())
}

fn load_project(
    job: &crmflow_core::config::Job,
    vars: &crmflow_transform::vars::VarSet,
) -> Result<crmflow_transform::models::Project> {
    let sources: Vec<String> = crmflow_ingest::canonical_tables()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    crmflow_transform::models::Project::load(&job.models_dir(), vars, &sources)
        .map_err(|e| UsageError(e.to_string()).into())
}

/// The model catalogue in markdown.
pub fn catalogue(project: &crmflow_transform::models::Project) -> String {
    let mut s =
        String::from("# crmflow model catalogue\n\nGenerated by `crmflow models docs`.\n\n");
    for name in &project.order {
        let m = &project.models[name];
        s.push_str(&format!("## `{}`\n\n", m.name));
        s.push_str(&format!(
            "- file: `{}`\n- layer: {}\n- materialised: {:?}\n",
            m.path
                .strip_prefix(&project.dir)
                .unwrap_or(&m.path)
                .display(),
            m.layer,
            m.config.materialized
        ));
        s.push_str(&format!(
            "- upstream: {}\n",
            if m.depends_on.is_empty() {
                "-".into()
            } else {
                m.depends_on.join(", ")
            }
        ));
        let children = project.children(name);
        s.push_str(&format!(
            "- downstream: {}\n\n",
            if children.is_empty() {
                "-".into()
            } else {
                children.join(", ")
            }
        ));
        if !m.config.description.is_empty() {
            s.push_str(&format!("{}\n\n", m.config.description.trim()));
        }
        if !m.config.columns.is_empty() {
            s.push_str("| column | meaning |\n|---|---|\n");
            for (c, d) in &m.config.columns {
                s.push_str(&format!("| `{c}` | {} |\n", d.replace('\n', " ")));
            }
            s.push('\n');
        }
        if !m.config.tests.is_empty() {
            s.push_str("Tests:\n");
            for t in &m.config.tests {
                let name = t.compile(&m.name).map(|(n, _)| n).unwrap_or_else(|e| e);
                s.push_str(&format!("- {name} ({})\n", t.severity.as_str()));
            }
            s.push('\n');
        }
    }
    s
}

async fn query(args: QueryArgs) -> Result<()> {
    let job = pipeline::load_job(&args.job)?;
    let lake = pipeline::open_lake(&job, args.lake.as_deref())?;
    let env = pipeline::model_env(&job, &lake, pipeline::default_as_of(&job)).await?;
    let batches = env.ctx.sql(&args.sql).await?.collect().await?;
    write_batches(&mut std::io::stdout().lock(), &batches, args.format)
}

/// Writes query results as a table, CSV or JSON lines.
pub fn write_batches(
    out: &mut impl Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Table => writeln!(
            out,
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
        }
    }
    Ok(())
}
