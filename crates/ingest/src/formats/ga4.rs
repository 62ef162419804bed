//! Google Analytics 4 BigQuery export (NDJSON, one event per line). Tables
//! `ga4_events` (one row per event; no key, not deduplicated) and `ga4_sessions`
//! (one row per `(user_pseudo_id, ga_session_id)`, built after the cut-off).
//!
//! `ga4_events`: event_at (`event_timestamp`, µs UTC), event_date, event_name,
//! user_pseudo_id, user_id, ga_session_id (`event_params` int, also as a string),
//! page_location, lc_* (`session_traffic_source_last_click.manual_campaign`), cts_*
//! (`collected_traffic_source.manual_*`), gclid, transaction_id and purchase_revenue
//! (`ecommerce`), device_category, city.
//!
//! `ga4_sessions`: user_pseudo_id, ga_session_id, session_start (earliest event), source,
//! medium, campaign, content, term (the spec's rule: last-click manual campaign of the
//! earliest event that has one; else collected traffic source of the earliest event that
//! has one, a lone gclid being google / cpc; else `(direct)` / `(none)`), purchase_ids,
//! revenue, events, device_category, city.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{date, date32, text};
use serde_json::Value;

use super::{Format, ParseOptions};
use crate::error::Result;
use crate::stage::{Reason, Staging, TableStage, str_list_type, ts_type};

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

pub fn sessions_schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("user_pseudo_id", DataType::Utf8, false),
        Field::new("ga_session_id", DataType::Int64, false),
        Field::new("session_start", ts_type(), false),
        t("source"),
        t("medium"),
        t("campaign"),
        t("content"),
        t("term"),
        Field::new("purchase_ids", str_list_type(), false),
        Field::new("revenue", DataType::Float64, false),
        Field::new("events", DataType::Int64, false),
        t("device_category"),
        t("city"),
    ]))
}

/// Source fields of one event: source, medium, campaign, content, term.
type Utm = [Option<String>; 5];

#[derive(Default)]
struct Session {
    start: i64,
    /// (event time, order seen) of the earliest event, and its device and city.
    first: (i64, u64),
    device: Option<String>,
    city: Option<String>,
    last_click: Option<((i64, u64), Utm)>,
    collected: Option<((i64, u64), Utm, bool)>,
    purchase_ids: BTreeSet<String>,
    revenue: f64,
    events: i64,
}

pub struct Ga4 {
    opts: ParseOptions,
    sessions: HashMap<(String, i64), Session>,
    seen: u64,
}

impl Ga4 {
    pub fn new(opts: ParseOptions) -> Self {
        Self {
            opts,
            sessions: HashMap::new(),
            seen: 0,
        }
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
        vec![
            TableStage::new("ga4_events", events_schema()),
            TableStage::new("ga4_sessions", sessions_schema()),
        ]
    }

    fn parse(&mut self, file: u32, _name: &str, body: &str, staging: &mut Staging) -> Result<()> {
        for (i, line_text) in body.split('\n').enumerate() {
            let line = i as u64 + 1;
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
            let row = staging.tables[0]
                .row(day, file, line)
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
            staging.loaded(None, vec![(0, row)], 1);

            let (Some(user), Some(session_id)) = (user, session_id) else {
                continue;
            };
            self.seen += 1;
            let order = (event_at, self.seen);
            let session = self
                .sessions
                .entry((user, session_id))
                .or_insert_with(|| Session {
                    start: event_at,
                    first: order,
                    device: device.clone(),
                    city: city.clone(),
                    ..Default::default()
                });
            session.events += 1;
            if order < session.first {
                session.first = order;
                session.start = event_at;
                session.device = device;
                session.city = city;
            }
            if (lc[0].is_some() || lc[1].is_some())
                && session.last_click.as_ref().is_none_or(|(o, _)| order < *o)
            {
                session.last_click = Some((order, lc));
            }
            let has_collected = cts[0].is_some() || cts[1].is_some() || gclid.is_some();
            if has_collected
                && session
                    .collected
                    .as_ref()
                    .is_none_or(|(o, _, _)| order < *o)
            {
                session.collected = Some((order, cts, gclid.is_some()));
            }
            if event_name.as_deref() == Some("purchase") {
                if let Some(t) = transaction {
                    session.purchase_ids.insert(t);
                }
                session.revenue += revenue.unwrap_or(0.0);
            }
        }
        let _ = self.opts;
        Ok(())
    }

    fn finish(&mut self, staging: &mut Staging) -> Result<()> {
        let mut sessions: Vec<_> = std::mem::take(&mut self.sessions).into_iter().collect();
        sessions.sort_by(|a, b| (a.1.start, &a.0).cmp(&(b.1.start, &b.0)));
        for ((user, session_id), s) in sessions {
            let utm: Utm = match (s.last_click, s.collected) {
                (Some((_, lc)), _) => lc,
                (None, Some((_, mut cts, has_gclid))) => {
                    if cts[0].is_none() && cts[1].is_none() && has_gclid {
                        cts[0] = Some("google".into());
                        cts[1] = Some("cpc".into());
                    }
                    cts
                }
                (None, None) => [
                    Some("(direct)".into()),
                    Some("(none)".into()),
                    None,
                    None,
                    None,
                ],
            };
            let Some(day) = staging.date_of(s.start) else {
                continue;
            };
            let ids: Vec<String> = s.purchase_ids.into_iter().collect();
            staging.tables[1]
                .row(day, 0, 0)
                .str(Some(&user))
                .i64(Some(session_id))
                .ts(Some(s.start))
                .str(utm[0].as_deref())
                .str(utm[1].as_deref())
                .str(utm[2].as_deref())
                .str(utm[3].as_deref())
                .str(utm[4].as_deref())
                .str_list(Some(&ids))
                .f64(Some(s.revenue))
                .i64(Some(s.events))
                .str(s.device.as_deref())
                .str(s.city.as_deref())
                .end();
        }
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
    fn sessions_follow_the_source_rule() {
        let t0 = 1_763_636_000_000_000_i64;
        let lines = [
            // session 1: last-click campaign on the second event wins over collected source of the first
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
            // session 2 (id as a string): gclid only -> google / cpc
            ev(
                t0 + 100,
                "page_view",
                "\"2\"",
                r#","collected_traffic_source":{"gclid":"abc","manual_source":"(not set)"}"#,
            ),
            // session 3: nothing -> (direct) / (none)
            ev(t0 + 200, "page_view", "3", ""),
            "{not json".to_string(),
            r#"{"event_name":"x","user_pseudo_id":"u1"}"#.to_string(),
        ];
        let body = lines.join("\n");
        let (b, st) = run(Box::new(Ga4::new(opts())), &[&body], NO_CUTOFF);
        assert_eq!(b[0].num_rows(), 5);
        let s = &b[1];
        assert_eq!(col(s, "ga_session_id"), ["1", "2", "3"]);
        assert_eq!(col(s, "source"), ["yandex", "google", "(direct)"]);
        assert_eq!(col(s, "medium"), ["cpc", "cpc", "(none)"]);
        assert_eq!(col(s, "campaign"), ["brand", "∅", "∅"]);
        assert_eq!(col(s, "purchase_ids"), ["[1001]", "[]", "[]"]);
        assert_eq!(col(s, "revenue"), ["99.5", "0.0", "0.0"]);
        assert_eq!(col(s, "events"), ["3", "1", "1"]);
        let q: Vec<_> = st
            .quarantine
            .iter()
            .map(|q| (q.line, q.reason.as_str()))
            .collect();
        assert_eq!(q, [(6, "unparseable_record"), (7, "unparseable_timestamp")]);
    }

    #[test]
    fn events_after_cutoff_do_not_make_sessions() {
        let t0 = 1_763_636_000_000_000_i64;
        let body = [
            ev(t0, "page_view", "1", ""),
            ev(t0 + 10, "page_view", "1", ""),
        ]
        .join("\n");
        let (b, st) = run(Box::new(Ga4::new(opts())), &[&body], t0 + 5);
        assert_eq!(col(&b[1], "events"), ["1"]);
        assert_eq!(st.counts.rows_after_cutoff, 1);
    }
}
