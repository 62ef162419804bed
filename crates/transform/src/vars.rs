//! Run variables in SQL: `{{ var('name') }}` is replaced by the variable's value as a
//! SQL literal before the model is planned. That is the one syntax; an unknown name is an
//! error naming the file and line. Built-in variables:
//!
//! | name | literal | meaning |
//! |---|---|---|
//! | `as_of` | `DATE '2026-11-20'` | the run's business date |
//! | `as_of_end` | a UTC `TIMESTAMP` | the last microsecond of `as_of` in the business time zone |
//! | `lookback_start` | a UTC `TIMESTAMP` | the start of business day `as_of - lookback_days` |
//! | `business_time_zone` | `'Europe/Moscow'` | |
//! | every key of `[vars]` | number, `'text'` or `'a', 'b'` (lists, for `IN (...)`) | |
//! | every key of `[vars.custom]` | as above | |

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;
use crmflow_core::config::Vars;

use crate::error::{Result, TransformError};

/// Variables of one run, as SQL literals.
#[derive(Debug, Clone, Default)]
pub struct VarSet {
    values: BTreeMap<String, String>,
}

/// A text value as a SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        // An empty IN list is not valid SQL; a value no column holds keeps `IN (...)` valid.
        return "'\u{1}'".into();
    }
    items
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn toml_literal(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => quote(s),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(toml_literal).collect();
            items.join(", ")
        }
        other => quote(&other.to_string()),
    }
}

impl VarSet {
    /// The variables of a run for `as_of`.
    pub fn new(vars: &Vars, as_of: NaiveDate, tz: Tz) -> Self {
        let mut values = BTreeMap::new();
        let end = crmflow_core::normalize::end_of_day_micros(as_of, tz);
        let end = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(end)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
            .unwrap_or_default();
        values.insert("as_of".into(), format!("DATE '{as_of}'"));
        let lookback_day = as_of - chrono::Duration::days(i64::from(vars.lookback_days));
        let start = crmflow_core::normalize::start_of_day_micros(lookback_day, tz);
        let start = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(start)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
            .unwrap_or_default();
        values.insert(
            "lookback_start".into(),
            format!("CAST('{start}' AS TIMESTAMP)"),
        );
        values.insert("as_of_end".into(), format!("CAST('{end}' AS TIMESTAMP)"));
        values.insert("business_time_zone".into(), quote(tz.name()));
        values.insert("lookback_days".into(), vars.lookback_days.to_string());
        values.insert(
            "half_life_days".into(),
            format!("{:?}", vars.half_life_days),
        );
        values.insert(
            "position_first".into(),
            format!("{:?}", vars.position_first),
        );
        values.insert("position_last".into(), format!("{:?}", vars.position_last));
        values.insert("conversion_types".into(), list(&vars.conversion_types));
        values.insert("exclude_channels".into(), list(&vars.exclude_channels));
        values.insert("path_transform".into(), quote(&vars.path_transform));
        values.insert(
            "path_transform_channels".into(),
            list(&vars.path_transform_channels),
        );
        values.insert("touchpoint_origins".into(), list(&vars.touchpoint_origins));
        values.insert("min_pair_orders".into(), vars.min_pair_orders.to_string());
        values.insert("min_lift".into(), format!("{:?}", vars.min_lift));
        values.insert("new_days".into(), vars.new_days.to_string());
        values.insert("active_days".into(), vars.active_days.to_string());
        values.insert("lapsing_days".into(), vars.lapsing_days.to_string());
        values.insert("offer_sku".into(), quote(&vars.offer_sku));
        for (k, v) in &vars.custom {
            values.insert(k.clone(), toml_literal(v));
        }
        Self { values }
    }

    /// Sets a variable to a SQL literal (tests, overrides).
    pub fn set(&mut self, name: &str, literal: &str) {
        self.values.insert(name.to_string(), literal.to_string());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Replaces every `{{ var('name') }}` in `sql`; `file` names the model in errors.
    pub fn render(&self, sql: &str, file: &Path) -> Result<String> {
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let line = sql[..sql.len() - rest.len() + start].matches('\n').count() + 1;
            let err = |message: String| TransformError::Model {
                file: file.to_path_buf(),
                line,
                message,
            };
            let Some(len) = rest[start..].find("}}") else {
                return Err(err("`{{` without a closing `}}`".into()));
            };
            let inner = rest[start + 2..start + len].trim();
            let name = inner
                .strip_prefix("var(")
                .and_then(|s| s.strip_suffix(')'))
                .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'))
                .ok_or_else(|| {
                    err(format!(
                        "`{{{{ {inner} }}}}`: the only template is `{{{{ var('name') }}}}`"
                    ))
                })?;
            let value = self.get(name).ok_or_else(|| {
                err(format!(
                    "unknown variable `{name}`; set it under [vars.custom] in the job file (known: {})",
                    self.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            out.push_str(value);
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_literals_and_names_unknown_variables() {
        let mut vars = Vars::default();
        vars.custom
            .insert("min_orders".into(), toml::Value::Integer(3));
        let set = VarSet::new(
            &vars,
            NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            chrono_tz::Europe::Moscow,
        );
        let sql = set
            .render(
                "select {{ var('as_of') }}, {{var(\"lookback_days\")}}, {{ var('min_orders') }}\nwhere t in ({{ var('conversion_types') }})",
                Path::new("m.sql"),
            )
            .unwrap();
        assert_eq!(
            sql,
            "select DATE '2026-11-20', 30, 3\nwhere t in ('order', 'lead')"
        );
        assert_eq!(
            set.get("as_of_end"),
            Some("CAST('2026-11-20T20:59:59.999999' AS TIMESTAMP)")
        );
        let err = set
            .render("select 1\n, {{ var('nope') }}", Path::new("m.sql"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.sql:2:") && err.contains("nope"), "{err}");
    }
}
