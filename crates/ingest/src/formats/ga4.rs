//! Google Analytics 4 BigQuery export (NDJSON, one event per line). Table
//! `ga4_events`: one row per event; no key, not deduplicated. Sessions are derived
//! from the events in SQL (`sql/staging/stg_ga4_sessions.sql`), so that their memory
//! is the engine's bounded, spilling one.
//!
//! `ga4_events`: event_at (`event_timestamp`, µs UTC), event_date, event_name,
//! user_pseudo_id, user_id, ga_session_id (`event_params` int, also as a string),
//! page_location, lc_* (`session_traffic_source_last_click.manual_campaign`), cts_*
//! (`collected_traffic_source.manual_*`), gclid, transaction_id and purchase_revenue
//! (`ecommerce`), device_category, city.
//!

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{date, date32, text};
use serde_json::Value;

use super::{Format, ParseOptions};
use crate::chunks::{Chunk, Framing};
use crate::error::Result;
use crate::stage::{Reason, Staging, TableStage, ts_type};

pub fn events_schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("event_at", ts_type(), false),
        Field::new("event_date", DataType::Date32, true),
        t("event_name"),
        t("user_pseudo_id"),
        t("user_id"),
        Field::new("ga_session_id", DataType::Int64, true),
        t("page_location"),
        t("lc_source"),
        t("lc_medium"),
        t("lc_campaign"),
        t("lc_content"),
        t("lc_term"),
        t("cts_source"),
        t("cts_medium"),
        t("cts_campaign"),
        t("cts_content"),
        t("cts_term"),
        t("gclid"),
        t("transaction_id"),
        Field::new("purchase_revenue", DataType::Float64, true),
        t("device_category"),
        t("city"),
    ]))
}

pub struct Ga4 {
    opts: ParseOptions,
}

impl Ga4 {
    pub fn new(opts: ParseOptions) -> Self {
        Self { opts }
    }
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(k))
}

fn text_at(v: &Value, keys: &[&str]) -> Option<String> {
    match path(v, keys)? {
        Value::String(s) => text(s).map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The value of an `event_params` entry: string, int, double or float.
fn param<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    let params = event.get("event_params")?.as_array()?;
    let entry = params
        .iter()
        .find(|p| p.get("key").and_then(Value::as_str) == Some(key))?;
    let value = entry.get("value")?;
    ["string_value", "int_value", "double_value", "float_value"]
        .iter()
        .filter_map(|k| value.get(k))
        .find(|v| !v.is_null())
}

impl Format for Ga4 {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("ga4_events", events_schema())]
    }

    fn framing(&self, _head: &str) -> Framing {
        Framing::Lines
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let file = chunk.file;
        for (i, line_text) in chunk.text.split('\n').enumerate() {
            let line = i as u64 + 1 + chunk.line_shift;
            let raw = line_text.trim_end_matches('\r');
            if raw.trim().is_empty() {
                continue;
            }
            let event: Value = match serde_json::from_str(raw) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    staging.quarantine(
                        file,
                        line,
                        raw,
                        None,
                        Reason::UnparseableRecord,
                        "an event must be a JSON object".into(),
                    );
                    continue;
                }
                Err(e) => {
                    staging.quarantine(
                        file,
                        line,
                        raw,
                        None,
                        Reason::UnparseableRecord,
                        format!("not valid JSON: {e}"),
                    );
                    continue;
                }
            };
            let Some(event_at) = event.get("event_timestamp").and_then(int) else {
                staging.quarantine(
                    file,
                    line,
                    raw,
                    Some("event_timestamp"),
                    Reason::UnparseableTimestamp,
                    "event_timestamp must be microseconds since the epoch".into(),
                );
                continue;
            };
            if staging.after_cutoff(event_at, 1) {
                continue;
            }
            let Some(day) = staging.date_of(event_at) else {
                staging.quarantine(
                    file,
                    line,
                    raw,
                    Some("event_timestamp"),
                    Reason::UnparseableTimestamp,
                    "out of range".into(),
                );
                continue;
            };
            let s = |keys: &[&str]| text_at(&event, keys);
            let lc = ["source", "medium", "campaign_name", "content", "term"]
                .map(|k| s(&["session_traffic_source_last_click", "manual_campaign", k]));
            let cts = [
                "manual_source",
                "manual_medium",
                "manual_campaign_name",
                "manual_content",
                "manual_term",
            ]
            .map(|k| s(&["collected_traffic_source", k]));
            let gclid = s(&["collected_traffic_source", "gclid"]);
            let session_id = param(&event, "ga_session_id").and_then(int);
            let user = s(&["user_pseudo_id"]);
            let transaction = s(&["ecommerce", "transaction_id"]);
            let revenue = path(&event, &["ecommerce", "purchase_revenue"]).and_then(number);
            let device = s(&["device", "category"]);
            let city = s(&["geo", "city"]);
            let event_name = s(&["event_name"]);
            let page = param(&event, "page_location")
                .and_then(|v| v.as_str())
                .and_then(text)
                .map(str::to_string);
            let event_date = s(&["event_date"]).and_then(|d| date(&d)).map(date32);
            staging.tables[0]
                .row(day, file, line, None)
                .ts(Some(event_at))
                .date(event_date)
                .str(event_name.as_deref())
                .str(user.as_deref())
                .str(s(&["user_id"]).as_deref())
                .i64(session_id)
                .str(page.as_deref())
                .str(lc[0].as_deref())
                .str(lc[1].as_deref())
                .str(lc[2].as_deref())
                .str(lc[3].as_deref())
                .str(lc[4].as_deref())
                .str(cts[0].as_deref())
                .str(cts[1].as_deref())
                .str(cts[2].as_deref())
                .str(cts[3].as_deref())
                .str(cts[4].as_deref())
                .str(gclid.as_deref())
                .str(transaction.as_deref())
                .f64(revenue)
                .str(device.as_deref())
                .str(city.as_deref())
                .end();
            staging.loaded(1);
        }
        let _ = self.opts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::test_support::*;

    fn ev(ts: i64, name: &str, sid: &str, extra: &str) -> String {
        format!(
            r#"{{"event_date":"20261120","event_timestamp":"{ts}","event_name":"{name}","user_pseudo_id":"u1","event_params":[{{"key":"ga_session_id","value":{{"int_value":{sid}}}}}]{extra}}}"#
        )
    }

    #[test]
    fn events_are_flattened_and_bad_lines_quarantined() {
        let t0 = 1_763_636_000_000_000_i64;
        let lines = [
            ev(
                t0,
                "page_view",
                "1",
                r#","collected_traffic_source":{"manual_source":"vk","manual_medium":"social"}"#,
            ),
            ev(
                t0 + 5,
                "page_view",
                "1",
                r#","session_traffic_source_last_click":{"manual_campaign":{"source":"yandex","medium":"cpc","campaign_name":"brand"}}"#,
            ),
            ev(
                t0 + 9,
                "purchase",
                "1",
                r#","ecommerce":{"transaction_id":"1001","purchase_revenue":99.5}"#,
            ),
            // the session id as a string; a gclid
            ev(
                t0 + 100,
                "page_view",
                "\"2\"",
                r#","collected_traffic_source":{"gclid":"abc","manual_source":"(not set)"}"#,
            ),
            ev(t0 + 200, "page_view", "3", ""),
            "{not json".to_string(),
            r#"{"event_name":"x","user_pseudo_id":"u1"}"#.to_string(),
            "[1]".to_string(),
        ];
        let body = lines.join("\n");
        let (b, st) = run(Box::new(Ga4::new(opts())), &[&body], NO_CUTOFF);
        let e = &b[0];
        assert_eq!(col(e, "ga_session_id"), ["1", "1", "1", "2", "3"]);
        assert_eq!(
            col(e, "cts_source"),
            ["vk", "∅", "∅", "∅", "∅"],
            "(not set) is NULL"
        );
        assert_eq!(col(e, "lc_campaign"), ["∅", "brand", "∅", "∅", "∅"]);
        assert_eq!(col(e, "gclid")[3], "abc");
        assert_eq!(col(e, "transaction_id")[2], "1001");
        assert_eq!(col(e, "purchase_revenue")[2], "99.5");
        assert_eq!(col(e, "event_date")[0], "2026-11-20");
        let q: Vec<_> = st
            .quarantine
            .iter()
            .map(|q| (q.line, q.reason.as_str()))
            .collect();
        assert_eq!(
            q,
            [
                (6, "unparseable_record"),
                (7, "unparseable_timestamp"),
                (8, "unparseable_record")
            ]
        );
    }

    #[test]
    fn events_after_cutoff_are_counted_not_loaded() {
        let t0 = 1_763_636_000_000_000_i64;
        let body = [
            ev(t0, "page_view", "1", ""),
            ev(t0 + 10, "page_view", "1", ""),
        ]
        .join("\n");
        let (b, st) = run(Box::new(Ga4::new(opts())), &[&body], t0 + 5);
        assert_eq!(b[0].num_rows(), 1);
        assert_eq!(st.counts.rows_after_cutoff, 1);
    }
}
