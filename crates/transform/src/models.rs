//! The models of a project: every `.sql` file under the models folder (one model per
//! file, named by the file stem), its optional settings beside it (`<model>.toml`:
//! description, materialisation, column docs, data tests), and CSV seeds under `seeds/`.
//!
//! Dependencies come from the SQL itself: the table references that DataFusion's SQL
//! parser finds (CTE names excluded). A reference to a table that is no model, seed or
//! source, and a cycle, are errors naming the file and line. Models run in a
//! deterministic topological order (dependencies first, then by name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use serde::Deserialize;

use crate::datatests::DataTest;
use crate::error::{Result, TransformError};
use crate::vars::VarSet;

/// How a model is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialization {
    /// Written as Parquet under `<lake>/marts/<model>/`.
    #[default]
    Table,
    /// Planned inline by the models that read it; nothing is written.
    View,
}

/// `<model>.toml`: the settings of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub description: String,
    pub materialized: Materialization,
    /// Sort order of the written table (default: every non-nested column, in order).
    pub order_by: Vec<String>,
    /// Round the written table's floats to 9 decimals (default true; see `materialize`).
    /// Turn it off only where every float is computed row by row or by the exact `sum`,
    /// so it is the same in every run anyway, and the digits matter downstream.
    pub round_floats: bool,
    /// `[datafusion]`: DataFusion settings for this model's query only, on top of the
    /// job's (`"datafusion.execution.target_partitions" = "1"`, ...). Tables only.
    pub datafusion: BTreeMap<String, String>,
    /// Column documentation: name -> meaning.
    pub columns: BTreeMap<String, String>,
    pub tests: Vec<DataTest>,
    /// `[publish]`: how a segment is published; read by `crmflow-publish`.
    pub publish: Option<toml::Table>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            description: String::new(),
            materialized: Materialization::default(),
            order_by: vec![],
            round_floats: true,
            datafusion: BTreeMap::new(),
            columns: BTreeMap::new(),
            tests: vec![],
            publish: None,
        }
    }
}

/// A model's `[datafusion]` table is checked when the models are loaded, so a bad key
/// or a view with settings is a configuration error naming the `.toml` and its line,
/// before anything runs.
fn check_datafusion_settings(config: &ModelConfig, path: &Path, text: &str) -> Result<()> {
    if config.datafusion.is_empty() {
        return Ok(());
    }
    if config.materialized == Materialization::View {
        return Err(TransformError::Model {
            file: path.to_path_buf(),
            line: line_of_word(text, "[datafusion]"),
            message: "[datafusion] settings on a view: a view is planned inside the models \
                      that read it, with their settings; make the model a table or move the \
                      settings to the job's [engine.datafusion]"
                .into(),
        });
    }
    let mut options = datafusion::config::ConfigOptions::default();
    for (key, value) in &config.datafusion {
        crate::engine::apply_options(&mut options, [(key.as_str(), value.as_str())], |key| {
            format!("[datafusion] \"{key}\"")
        })
        .map_err(|e| TransformError::Model {
            file: path.to_path_buf(),
            line: line_of_word(text, key),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// One SQL model.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub path: PathBuf,
    /// The folder under the models folder (`staging`, `marts`, `segments`, ...).
    pub layer: String,
    pub sql: String,
    pub config: ModelConfig,
    /// Models, seeds and sources this model reads, sorted.
    pub depends_on: Vec<String>,
}

impl Model {
    /// How a key of this model's `[datafusion]` table is named in errors.
    pub fn datafusion_setting_name(&self, key: &str) -> String {
        format!(
            "[datafusion] \"{key}\" of {}",
            self.path.with_extension("toml").display()
        )
    }
}

/// A CSV seed table.
#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub path: PathBuf,
}

/// All models and seeds of a models folder, with their order.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub models: BTreeMap<String, Model>,
    pub seeds: BTreeMap<String, Seed>,
    pub sources: BTreeSet<String>,
    /// Model names, dependencies first.
    pub order: Vec<String>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// 1-based line of the first whole-word, case-insensitive occurrence of `word`.
fn line_of_word(text: &str, word: &str) -> usize {
    let lower = text.to_lowercase();
    let word = word.to_lowercase();
    let bytes = lower.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(i) = lower[from..].find(&word) {
        let start = from + i;
        let end = start + word.len();
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
        if before_ok && after_ok {
            return lower[..start].matches('\n').count() + 1;
        }
        from = end;
    }
    1
}

/// Table references of a SQL text (CTEs excluded), lower-cased.
pub fn table_references(sql: &str, path: &Path) -> Result<Vec<String>> {
    let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| {
        let message = e.to_string();
        let line = message
            .split("Line: ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        TransformError::Model {
            file: path.to_path_buf(),
            line,
            message: format!("SQL does not parse: {message}"),
        }
    })?;
    let mut refs = BTreeSet::new();
    for statement in &statements {
        let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(statement, true)?;
        for t in tables {
            let name = t.table().to_lowercase();
            // DataFusion's table functions read no table.
            if !BUILTIN_TABLE_FUNCTIONS.contains(&name.as_str()) {
                refs.insert(name);
            }
        }
    }
    Ok(refs.into_iter().collect())
}

/// Table functions of the engine (`FROM generate_series(0, 12)`): no dependency.
const BUILTIN_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

impl Project {
    /// Loads every model and seed under `dir`; `sources` are the raw lake tables.
    pub fn load(dir: &Path, vars: &VarSet, sources: &[String]) -> Result<Project> {
        let mut files = vec![];
        walk(dir, &mut files).map_err(|e| TransformError::Model {
            file: dir.to_path_buf(),
            line: 0,
            message: format!("cannot read the models folder: {e}"),
        })?;
        let mut models = BTreeMap::new();
        let mut seeds = BTreeMap::new();
        for path in files {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_lowercase)
            else {
                continue;
            };
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let layer = rel
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            let io_err = |e: std::io::Error| TransformError::Model {
                file: path.clone(),
                line: 0,
                message: e.to_string(),
            };
            match ext {
                "csv" if layer == "seeds" => {
                    seeds.insert(stem.clone(), Seed { name: stem, path });
                }
                "sql" => {
                    let sql = std::fs::read_to_string(&path).map_err(io_err)?;
                    let config_path = path.with_extension("toml");
                    let text = if config_path.exists() {
                        std::fs::read_to_string(&config_path).map_err(io_err)?
                    } else {
                        String::new()
                    };
                    // No .toml reads as an empty one: every setting at its default.
                    let config = toml::from_str::<ModelConfig>(&text).map_err(|e| {
                        let line = e
                            .span()
                            .map(|s| text[..s.start].matches('\n').count() + 1)
                            .unwrap_or(1);
                        TransformError::Model {
                            file: config_path.clone(),
                            line,
                            message: e.message().to_string(),
                        }
                    })?;
                    check_datafusion_settings(&config, &config_path, &text)?;
                    if let Some(previous) = models.get(&stem).map(|m: &Model| m.path.clone()) {
                        return Err(TransformError::Model {
                            file: path,
                            line: 1,
                            message: format!(
                                "a model named `{stem}` already exists at {}",
                                previous.display()
                            ),
                        });
                    }
                    models.insert(
                        stem.clone(),
                        Model {
                            name: stem,
                            path,
                            layer,
                            sql,
                            config,
                            depends_on: vec![],
                        },
                    );
                }
                _ => {}
            }
        }
        let sources: BTreeSet<String> = sources.iter().cloned().collect();
        let names: BTreeSet<String> = models.keys().cloned().collect();
        for model in models.values_mut() {
            let rendered = vars.render(&model.sql, &model.path)?;
            let refs = table_references(&rendered, &model.path)?;
            for r in &refs {
                if !names.contains(r) && !seeds.contains_key(r) && !sources.contains(r) {
                    return Err(TransformError::Model {
                        file: model.path.clone(),
                        line: line_of_word(&model.sql, r),
                        message: format!(
                            "unknown table `{r}`: it is no model, seed (sql/seeds/*.csv) or source table"
                        ),
                    });
                }
            }
            model.depends_on = refs;
        }
        let order = topological_order(&models)?;
        Ok(Project {
            dir: dir.to_path_buf(),
            models,
            seeds,
            sources,
            order,
        })
    }

    /// The seeds as tables for the engine.
    pub fn seed_tables(&self) -> Vec<crate::engine::SeedTable> {
        self.seeds
            .values()
            .map(|s| crate::engine::SeedTable {
                name: s.name.clone(),
                path: s.path.clone(),
            })
            .collect()
    }

    /// Models that `name` reads (models only).
    pub fn parents(&self, name: &str) -> Vec<&str> {
        self.models
            .get(name)
            .map(|m| {
                m.depends_on
                    .iter()
                    .filter(|d| self.models.contains_key(*d))
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Models that read `name`.
    pub fn children(&self, name: &str) -> Vec<&str> {
        self.models
            .values()
            .filter(|m| m.depends_on.iter().any(|d| d == name))
            .map(|m| m.name.as_str())
            .collect()
    }

    fn closure<'a>(
        &'a self,
        start: &'a str,
        next: impl Fn(&'a str) -> Vec<&'a str>,
    ) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for m in next(n) {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        seen
    }

    /// Models matched by selectors, in run order. A selector is a model name, `+name`
    /// (with everything upstream), `name+` (with everything downstream), `+name+`,
    /// `layer:<folder>` (every model of a folder, e.g. `layer:marts`) or `*`.
    pub fn select(&self, selectors: &[String]) -> Result<Vec<String>> {
        if selectors.is_empty() {
            return Ok(self.order.clone());
        }
        let mut chosen: BTreeSet<&str> = BTreeSet::new();
        for sel in selectors {
            for part in sel.split([',', ' ']).filter(|s| !s.is_empty()) {
                if part == "*" {
                    chosen.extend(self.models.keys().map(String::as_str));
                    continue;
                }
                if let Some(layer) = part.strip_prefix("layer:") {
                    let matched: Vec<&str> = self
                        .models
                        .values()
                        .filter(|m| m.layer == layer)
                        .map(|m| m.name.as_str())
                        .collect();
                    if matched.is_empty() {
                        return Err(TransformError::UnknownSelector(part.to_string()));
                    }
                    chosen.extend(matched);
                    continue;
                }
                let up = part.starts_with('+');
                let down = part.ends_with('+');
                let name = part.trim_matches('+').to_lowercase();
                let Some((key, _)) = self.models.get_key_value(&name) else {
                    return Err(TransformError::UnknownSelector(part.to_string()));
                };
                chosen.insert(key.as_str());
                if up {
                    chosen.extend(self.closure(key, |n| self.parents(n)));
                }
                if down {
                    chosen.extend(self.closure(key, |n| self.children(n)));
                }
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|n| chosen.contains(n.as_str()))
            .cloned()
            .collect())
    }

    /// The graph in Graphviz DOT.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph crmflow {\n  rankdir=LR;\n");
        for m in self.models.values() {
            out.push_str(&format!(
                "  \"{}\" [shape=box, tooltip=\"{}\"];\n",
                m.name, m.layer
            ));
            for d in &m.depends_on {
                out.push_str(&format!("  \"{d}\" -> \"{}\";\n", m.name));
            }
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for m in self.models.values() {
            for d in &m.depends_on {
                out.push_str(&format!("  {d} --> {}\n", m.name));
            }
            if m.depends_on.is_empty() {
                out.push_str(&format!("  {}\n", m.name));
            }
        }
        out
    }
}

fn topological_order(models: &BTreeMap<String, Model>) -> Result<Vec<String>> {
    let mut indegree: BTreeMap<&str, usize> = models
        .values()
        .map(|m| {
            (
                m.name.as_str(),
                m.depends_on
                    .iter()
                    .filter(|d| models.contains_key(*d))
                    .count(),
            )
        })
        .collect();
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = vec![];
    while let Some(n) = ready.pop_first() {
        order.push(n.to_string());
        for m in models
            .values()
            .filter(|m| m.depends_on.iter().any(|d| d == n))
        {
            if let Some(d) = indegree.get_mut(m.name.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.insert(m.name.as_str());
                }
            }
        }
    }
    if order.len() < models.len() {
        let in_cycle: Vec<&str> = indegree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(n, _)| *n)
            .collect();
        let first = &models[in_cycle[0]];
        let dep = first
            .depends_on
            .iter()
            .find(|d| in_cycle.contains(&d.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(TransformError::Model {
            file: first.path.clone(),
            line: line_of_word(&first.sql, &dep),
            message: format!("dependency cycle among models {}", in_cycle.join(", ")),
        });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> Result<Project> {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, sql).unwrap();
        }
        let p = Project::load(dir.path(), &VarSet::default(), &["orders".to_string()]);
        drop(dir);
        p
    }

    #[test]
    fn dependencies_come_from_the_sql() {
        let p = project(&[
            ("staging/stg_orders.sql", "select * from orders"),
            (
                "marts/a.sql",
                "with x as (select * from stg_orders) select * from x",
            ),
            ("marts/b.sql", "select * from a join stg_orders using (id)"),
        ])
        .unwrap();
        assert_eq!(p.order, ["stg_orders", "a", "b"]);
        assert_eq!(p.models["b"].depends_on, ["a", "stg_orders"]);
        assert_eq!(p.select(&["+a".into()]).unwrap(), ["stg_orders", "a"]);
        assert_eq!(p.select(&["a+".into()]).unwrap(), ["a", "b"]);
        assert_eq!(p.select(&["layer:marts".into()]).unwrap(), ["a", "b"]);
        assert!(p.select(&["nope".into()]).is_err());
        assert!(p.mermaid().contains("stg_orders --> a"));
    }

    #[test]
    fn unknown_table_names_file_and_line() {
        let err = project(&[("marts/a.sql", "select *\nfrom   missing_table")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.sql:2:") && err.contains("missing_table"),
            "{err}"
        );
    }

    #[test]
    fn datafusion_settings_are_checked_when_loading() {
        let sql = ("marts/a.sql", "select * from orders");
        let good = "[datafusion]\n\"datafusion.execution.target_partitions\" = \"1\"\n";
        let p = project(&[sql, ("marts/a.toml", good)]).unwrap();
        assert_eq!(p.models["a"].config.datafusion.len(), 1);

        let error_of = |toml: &str| {
            project(&[sql, ("marts/a.toml", toml)])
                .unwrap_err()
                .to_string()
        };
        let err = error_of(
            "description = \"x\"\n[datafusion]\n\"datafusion.execution.no_such_key\" = \"1\"\n",
        );
        assert!(
            err.contains("a.toml:3:") && err.contains("no_such_key"),
            "{err}"
        );
        let err = error_of("[datafusion]\n\"datafusion.execution.batch_size\" = \"many\"\n");
        assert!(
            err.contains("a.toml:2:") && err.contains("batch_size"),
            "{err}"
        );
        let err = error_of(
            "materialized = \"view\"\n\n[datafusion]\n\"datafusion.execution.target_partitions\" = \"1\"\n",
        );
        assert!(err.contains("a.toml:3:") && err.contains("view"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let err = project(&[("a.sql", "select * from b"), ("b.sql", "select * from a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
    }
}
