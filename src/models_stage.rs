//! The models stage: builds the selected models, each followed by its data tests, up
//! to `[models] parallel_models` at a time in dependency order. A model starts once
//! every model it reads, and every model its tests read, is done; an error (or a
//! failed error-level test) skips everything downstream. Reports come out in the
//! project's order whatever the order models finished in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::NaiveDate;
use crmflow_core::config::Job;
use crmflow_core::lake::Lake;
use crmflow_core::runs::{RunRecord, TestRecord};
use crmflow_transform::datatests::{Severity, TestOutcome, run_tests};
use crmflow_transform::materialize::run_model;
use crmflow_transform::models::{Materialization, Model, Project, table_references};
use crmflow_transform::vars::VarSet;
use datafusion::prelude::SessionContext;
use tokio::task::JoinSet;

use crate::exit::{QualityGate, UsageError};
use crate::pipeline::model_env;

/// What a models stage did, in the project's order.
#[derive(Debug, Default)]
pub struct ModelsOutcome {
    pub built: Vec<(String, u64, f64)>,
    pub tests: Vec<TestOutcome>,
    pub skipped: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// What one model's build and tests came to.
struct Built {
    name: String,
    result: std::result::Result<(u64, f64), String>,
    tests: Vec<TestOutcome>,
}

/// The models stage over the selected models; see the module docs.
pub async fn models(
    job: &Job,
    lake: &Lake,
    as_of: NaiveDate,
    select: &[String],
    record: &mut RunRecord,
) -> Result<ModelsOutcome> {
    crate::allocator::map_large_buffers();
    let env = model_env(job, lake, as_of).await?;
    let selected: BTreeSet<String> = env
        .project
        .select(select)
        .map_err(|e| UsageError(e.to_string()))?
        .into_iter()
        .collect();
    let waits_for = waits_for(&env.project, &env.vars);
    let vars = Arc::new(env.vars);
    let limit = job.file.models.parallelism();
    let bar = crate::logging::progress(selected.len() as u64, "models");
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    let mut waiting: Vec<&String> = env.project.order.iter().collect();
    let mut running: JoinSet<Built> = JoinSet::new();
    let mut finished: Vec<Built> = vec![];
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    loop {
        // Start, in the project's order, what is ready, up to the limit. Views and
        // models outside the selection take no slot: a view is only planned.
        let mut i = 0;
        while i < waiting.len() {
            let name = waiting[i];
            let ready = waits_for[name].iter().all(|d| done.contains(d));
            let model = &env.project.models[name];
            let is_view = model.config.materialized == Materialization::View;
            let needs_slot = selected.contains(name) && !is_view && !blocked.contains(name);
            if !ready || (needs_slot && running.len() >= limit) {
                i += 1;
                continue;
            }
            waiting.remove(i);
            let sql = vars.render(&model.sql, &model.path)?;
            if !selected.contains(name) {
                if is_view {
                    // Unselected views are planned so that selected models can read them.
                    let _ = run_model(&env.ctx, lake, model, &sql, &vars).await;
                }
                done.insert(name.clone());
                i = 0;
                continue;
            }
            if blocked.contains(name) {
                tracing::warn!(model = %name, "skipped: an upstream model failed or failed an error-level test");
                if let Some(b) = &bar {
                    b.inc(1);
                }
                skipped.insert(name.clone());
                done.insert(name.clone());
                i = 0;
                continue;
            }
            let unit = build_and_test(
                env.ctx.clone(),
                lake.clone(),
                model.clone(),
                sql,
                vars.clone(),
            );
            if is_view {
                finished.push(unit.await);
                settle(finished.last(), &env.project, &mut blocked, &mut done);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                i = 0;
            } else {
                // The next model waiting is now at `i`.
                running.spawn(unit);
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let built = joined.map_err(|e| anyhow::anyhow!("a model's task failed: {e}"))?;
        if let Some(b) = &bar {
            b.set_message(built.name.clone());
            b.inc(1);
        }
        finished.push(built);
        settle(finished.last(), &env.project, &mut blocked, &mut done);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report(&env.project, finished, skipped, record)
}

/// Builds one model and runs its tests; logs what it did.
async fn build_and_test(
    ctx: SessionContext,
    lake: Lake,
    model: Model,
    sql: String,
    vars: Arc<VarSet>,
) -> Built {
    let name = model.name.clone();
    let started = Instant::now();
    let written = match run_model(&ctx, &lake, &model, &sql, &vars).await {
        Ok(written) => written,
        Err(e) => {
            tracing::error!(model = %name, error = %e, "model failed");
            return Built {
                name,
                result: Err(e.to_string()),
                tests: vec![],
            };
        }
    };
    let (rows, seconds) = (written.rows, started.elapsed().as_secs_f64());
    tracing::info!(model = %name, rows, seconds = format!("{seconds:.2}"), "model built");
    let tests = run_tests(
        &ctx,
        &name,
        &model.config.tests,
        &vars,
        &written.passed_tests,
    )
    .await;
    for t in tests.iter().filter(|t| !t.passed()) {
        tracing::warn!(
            model = %t.model,
            test = %t.test,
            severity = t.severity.as_str(),
            failing_rows = t.failing_rows,
            error = t.error.as_deref().unwrap_or(""),
            "data test failed; `crmflow models test --select {}` shows the rows",
            t.model
        );
    }
    Built {
        name,
        result: Ok((rows, seconds)),
        tests,
    }
}

/// Marks a finished model done and, when it failed, blocks everything downstream.
fn settle(
    built: Option<&Built>,
    project: &Project,
    blocked: &mut BTreeSet<String>,
    done: &mut BTreeSet<String>,
) {
    let Some(built) = built else { return };
    let failed_test = built
        .tests
        .iter()
        .any(|t| !t.passed() && t.severity == Severity::Error);
    if built.result.is_err() || failed_test {
        blocked.extend(downstream(project, &built.name));
    }
    done.insert(built.name.clone());
}

/// The run record and outcome in the project's order; the stage's error when a model
/// failed (exit 1) or an error-level test failed (exit 3).
fn report(
    project: &Project,
    mut finished: Vec<Built>,
    skipped: BTreeSet<String>,
    record: &mut RunRecord,
) -> Result<ModelsOutcome> {
    let position = positions(project);
    finished.sort_by_key(|b| position.get(&b.name).copied());
    let mut outcome = ModelsOutcome::default();
    for built in finished {
        match built.result {
            Ok((rows, seconds)) => {
                if project.models[&built.name].config.materialized == Materialization::Table {
                    record.tables.insert(format!("marts.{}", built.name), rows);
                }
                outcome.built.push((built.name, rows, seconds));
            }
            Err(e) => outcome.failed.push((built.name, e)),
        }
        for t in &built.tests {
            record.tests.push(TestRecord {
                model: t.model.clone(),
                test: t.test.clone(),
                severity: t.severity.as_str().to_string(),
                passed: t.passed(),
                failing_rows: t.failing_rows,
            });
        }
        outcome.tests.extend(built.tests);
    }
    outcome.skipped = project
        .order
        .iter()
        .filter(|n| skipped.contains(*n))
        .cloned()
        .collect();
    if !outcome.failed.is_empty() {
        let list: Vec<String> = outcome
            .failed
            .iter()
            .map(|(m, e)| format!("{m}: {e}"))
            .collect();
        anyhow::bail!(
            "{} model(s) failed: {}",
            outcome.failed.len(),
            list.join("; ")
        );
    }
    let failing: Vec<String> = outcome
        .tests
        .iter()
        .filter(|t| !t.passed() && t.severity == Severity::Error)
        .map(|t| format!("{}: {}", t.model, t.test))
        .collect();
    if !failing.is_empty() {
        return Err(QualityGate(format!(
            "{} error-level data test(s) failed ({}); skipped downstream: {}",
            failing.len(),
            failing.join(", "),
            if outcome.skipped.is_empty() {
                "none".to_string()
            } else {
                outcome.skipped.join(", ")
            }
        ))
        .into());
    }
    Ok(outcome)
}

/// For each model, the models that must be done before it starts: the models its SQL
/// reads, and around tests that read other models (`relationships`, `query`) the same
/// order as one model after another would have: a test reads a model before it only
/// once that model is built, and a model after it only once the test has run.
fn waits_for(project: &Project, vars: &VarSet) -> BTreeMap<String, BTreeSet<String>> {
    let position = positions(project);
    let mut waits: BTreeMap<String, BTreeSet<String>> = project
        .models
        .values()
        .map(|m| {
            let deps = m
                .depends_on
                .iter()
                .filter(|d| project.models.contains_key(*d) && **d != m.name)
                .cloned()
                .collect();
            (m.name.clone(), deps)
        })
        .collect();
    for m in project.models.values() {
        for read in tests_reads(m, vars) {
            if read == m.name || !project.models.contains_key(&read) {
                continue;
            }
            let (earlier, later) = if position.get(&read) < position.get(&m.name) {
                (read, m.name.clone())
            } else {
                (m.name.clone(), read)
            };
            waits.entry(later).or_default().insert(earlier);
        }
    }
    waits
}

/// The tables a model's data tests read besides the model itself.
fn tests_reads(model: &Model, vars: &VarSet) -> Vec<String> {
    let mut reads = vec![];
    for t in &model.config.tests {
        if let Some(r) = &t.relationships {
            reads.push(r.to.clone());
        }
        if let Some(q) = &t.query {
            // A query that does not parse fails as a test; it orders nothing.
            if let Ok(sql) = vars.render(q, &model.path)
                && let Ok(tables) = table_references(&sql, &model.path)
            {
                reads.extend(tables);
            }
        }
    }
    reads
}

/// Each model's place in the project's (dependency) order.
fn positions(project: &Project) -> BTreeMap<&String, usize> {
    project
        .order
        .iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect()
}

fn downstream(project: &Project, name: &str) -> BTreeSet<String> {
    project
        .select(&[format!("{name}+")])
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_waits_for_what_it_reads_and_around_what_its_tests_read() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("marts/a.sql", "select * from orders"),
            ("marts/b.sql", "select * from a"),
            ("marts/c.sql", "select * from orders"),
            // `c`'s tests read `b` (before it in the order) and `d` (after it).
            (
                "marts/c.toml",
                "[[tests]]\nrelationships = { column = \"id\", to = \"b\", field = \"id\" }\n\
                 [[tests]]\nquery = \"select * from d where false\"\n",
            ),
            ("marts/d.sql", "select * from orders"),
        ];
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let vars = VarSet::default();
        let project = Project::load(dir.path(), &vars, &["orders".to_string()]).unwrap();
        assert_eq!(project.order, ["a", "b", "c", "d"]);
        let waits = waits_for(&project, &vars);
        let of = |m: &str| waits[m].iter().cloned().collect::<Vec<_>>();
        assert!(of("a").is_empty());
        assert_eq!(of("b"), ["a"]);
        assert_eq!(of("c"), ["b"]);
        assert_eq!(of("d"), ["c"]);
    }
}
