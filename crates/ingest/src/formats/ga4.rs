//! Google Analytics 4 BigQuery export (NDJSON, one event per line). Tables
//! `ga4_events` (one row per event; not deduplicated) and `ga4_sessions` (one row per
//! `(user_pseudo_id, ga_session_id)`, derived after the cut-off). An event's session is
//! its spill key, so all events of a session meet in one spill bucket and
//! [`Format::derive`] builds the sessions bucket by bucket, in bounded memory.
//!
//! `ga4_events`: event_at (`event_timestamp`, µs UTC), event_date, event_name,
//! user_pseudo_id, user_id, ga_session_id (`event_params` int, also as a string),
//! page_location, lc_* (`session_traffic_source_last_click.manual_campaign`), cts_*
//! (`collected_traffic_source.manual_*`), gclid, transaction_id and purchase_revenue
//! (`ecommerce`), device_category, city.
//!
//! `ga4_sessions`: user_pseudo_id, ga_session_id, session_start (earliest event), source,
//! medium, campaign, content, term (the spec's rule: last-click manual campaign of the
//! earliest event that has a source or medium; else collected traffic source of the
//! earliest event that has a manual source, medium or gclid, a lone gclid being
//! google / cpc; else `(direct)` / `(none)`), purchase_ids (sorted, distinct
//! transaction ids of purchase events), revenue (their sum), events, device_category and
//! city (of the earliest event). Events of the same microsecond are ordered by file,
//! then line; the lineage columns name the earliest event; the business date is its.

use std::borrow::Cow;
use std::collections::BTreeSet;

use foldhash::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{
    Date32Type, Float64Type, Int64Type, TimestampMicrosecondType, UInt32Type, UInt64Type,
};

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{date, date32, text};
use serde::Deserialize;

use super::json::{Obj, Scalar, Seq, scalar_fields};
use super::{Format, ParseOptions};
use crate::chunks::{Chunk, Framing};
use crate::error::{IngestError, Result};
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

/// The order of events in a session: time, then file (its index: files are read in
/// path order), then line.
type Order = (i64, u32, u64);

/// A session being built from its events (borrowing the bucket's arrays).
struct Session<'a> {
    user: &'a str,
    id: i64,
    first: Order,
    date: i32,
    device: Option<&'a str>,
    city: Option<&'a str>,
    last_click: Option<(Order, [Option<&'a str>; 5])>,
    collected: Option<(Order, [Option<&'a str>; 5], bool)>,
    purchase_ids: BTreeSet<&'a str>,
    revenue: f64,
    events: i64,
}

/// The columns of staged `ga4_events` batches that sessions read.
struct EventColumns<'a> {
    at: &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    name: &'a StringArray,
    user: &'a StringArray,
    session: &'a arrow::array::PrimitiveArray<Int64Type>,
    lc: [&'a StringArray; 5],
    cts: [&'a StringArray; 5],
    gclid: &'a StringArray,
    transaction: &'a StringArray,
    revenue: &'a arrow::array::PrimitiveArray<Float64Type>,
    device: &'a StringArray,
    city: &'a StringArray,
    file: &'a arrow::array::PrimitiveArray<UInt32Type>,
    line: &'a arrow::array::PrimitiveArray<UInt64Type>,
    date: &'a arrow::array::PrimitiveArray<Date32Type>,
    key: &'a StringArray,
}

impl<'a> EventColumns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| IngestError::Write {
                    table: "ga4_sessions".into(),
                    message: format!("staged events have no column {name}"),
                })
        };
        let text = |name: &str| col(name).map(|c| c.as_string::<i32>());
        Ok(EventColumns {
            at: col("event_at")?.as_primitive(),
            name: text("event_name")?,
            user: text("user_pseudo_id")?,
            session: col("ga_session_id")?.as_primitive(),
            lc: [
                text("lc_source")?,
                text("lc_medium")?,
                text("lc_campaign")?,
                text("lc_content")?,
                text("lc_term")?,
            ],
            cts: [
                text("cts_source")?,
                text("cts_medium")?,
                text("cts_campaign")?,
                text("cts_content")?,
                text("cts_term")?,
            ],
            gclid: text("gclid")?,
            transaction: text("transaction_id")?,
            revenue: col("purchase_revenue")?.as_primitive(),
            device: text("device_category")?,
            city: text("city")?,
            file: col("_file")?.as_primitive(),
            line: col("_source_line")?.as_primitive(),
            date: col("_date")?.as_primitive(),
            key: text("_key")?,
        })
    }
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// The key that groups the events of a session in the spill.
fn session_key(user: &str, session: i64) -> String {
    format!("{user}\u{1f}{session}")
}

pub struct Ga4 {
    opts: ParseOptions,
}

impl Ga4 {
    pub fn new(opts: ParseOptions) -> Self {
        Self { opts }
    }
}

/// The fields of one exported event that crmflow reads (`spec/sources.md`); every
/// other field is skipped while parsing, and a field of an unexpected shape reads as no
/// value ([`super::json`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(borrow)]
    event_timestamp: Scalar<'a>,
    #[serde(borrow)]
    event_date: Scalar<'a>,
    #[serde(borrow)]
    event_name: Scalar<'a>,
    #[serde(borrow)]
    user_pseudo_id: Scalar<'a>,
    #[serde(borrow)]
    user_id: Scalar<'a>,
    #[serde(borrow)]
    event_params: Seq<Obj<EventParam<'a>>>,
    #[serde(borrow)]
    session_traffic_source_last_click: Obj<LastClick<'a>>,
    #[serde(borrow)]
    collected_traffic_source: Obj<CollectedSource<'a>>,
    #[serde(borrow)]
    ecommerce: Obj<Ecommerce<'a>>,
    #[serde(borrow)]
    device: Obj<Device<'a>>,
    #[serde(borrow)]
    geo: Obj<Geo<'a>>,
}

/// An `event_params` entry: `{"key": .., "value": {"string_value" | "int_value" | ..}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventParam<'a> {
    #[serde(borrow)]
    key: Scalar<'a>,
    #[serde(borrow)]
    value: Obj<ParamValue<'a>>,
}

scalar_fields!(ParamValue {
    string_value,
    int_value,
    double_value,
    float_value
});

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LastClick<'a> {
    #[serde(borrow)]
    manual_campaign: Obj<Campaign<'a>>,
}

scalar_fields!(Campaign {
    source,
    medium,
    campaign_name,
    content,
    term
});

scalar_fields!(CollectedSource {
    manual_source,
    manual_medium,
    manual_campaign_name,
    manual_content,
    manual_term,
    gclid
});

scalar_fields!(Ecommerce {
    transaction_id,
    purchase_revenue
});

scalar_fields!(Device { category });

scalar_fields!(Geo { city });

const ABSENT: Scalar<'static> = Scalar::Absent;

impl<'a> Event<'a> {
    /// The value of the first `event_params` entry named `key`: its first present
    /// `string_value`, `int_value`, `double_value` or `float_value`.
    fn param(&self, key: &str) -> &Scalar<'a> {
        let Some(entry) = self
            .event_params
            .0
            .iter()
            .filter_map(Obj::get)
            .find(|p| p.key.as_str() == Some(key))
        else {
            return &ABSENT;
        };
        let Some(v) = entry.value.get() else {
            return &ABSENT;
        };
        [
            &v.string_value,
            &v.int_value,
            &v.double_value,
            &v.float_value,
        ]
        .into_iter()
        .find(|s| s.is_present())
        .unwrap_or(&ABSENT)
    }

    /// The last-click manual campaign: source, medium, campaign, content, term.
    fn last_click(&self) -> [Option<Cow<'_, str>>; 5] {
        match self
            .session_traffic_source_last_click
            .get()
            .and_then(|l| l.manual_campaign.get())
        {
            Some(c) => {
                [&c.source, &c.medium, &c.campaign_name, &c.content, &c.term].map(Scalar::text)
            }
            None => Default::default(),
        }
    }

    /// The collected manual source, medium, campaign, content, term; and the gclid.
    fn collected(&self) -> ([Option<Cow<'_, str>>; 5], Option<Cow<'_, str>>) {
        match self.collected_traffic_source.get() {
            Some(c) => (
                [
                    &c.manual_source,
                    &c.manual_medium,
                    &c.manual_campaign_name,
                    &c.manual_content,
                    &c.manual_term,
                ]
                .map(Scalar::text),
                c.gclid.text(),
            ),
            None => Default::default(),
        }
    }
}

impl Format for Ga4 {
    fn tables(&self) -> Vec<TableStage> {
        vec![
            TableStage::grouped("ga4_events", events_schema()),
            TableStage::new("ga4_sessions", sessions_schema()),
        ]
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
            let event: Event = match serde_json::from_str::<Obj<Event>>(raw) {
                Ok(Obj(Some(event))) => event,
                Ok(Obj(None)) => {
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
            let Some(event_at) = event.event_timestamp.int() else {
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
            let lc = event.last_click();
            let (cts, gclid) = event.collected();
            let session_id = event.param("ga_session_id").int();
            let user = event.user_pseudo_id.text();
            let (transaction, revenue) = match event.ecommerce.get() {
                Some(e) => (e.transaction_id.text(), e.purchase_revenue.number()),
                None => (None, None),
            };
            let device = event.device.get().and_then(|d| d.category.text());
            let city = event.geo.get().and_then(|g| g.city.text());
            let event_name = event.event_name.text();
            let page = event.param("page_location").as_str().and_then(text);
            let event_date = event.event_date.text().and_then(|d| date(&d)).map(date32);
            let key = match (&user, session_id) {
                (Some(u), Some(id)) => Some(session_key(u, id)),
                _ => None,
            };
            staging.tables[0]
                .row(day, file, line, key.as_deref().map(|k| (k, 0)))
                .ts(Some(event_at))
                .date(event_date)
                .str(event_name.as_deref())
                .str(user.as_deref())
                .str(event.user_id.text().as_deref())
                .i64(session_id)
                .str(page)
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

    fn derive(&self, bucket: &[Vec<RecordBatch>]) -> Result<Vec<(usize, RecordBatch)>> {
        let Some(events) = bucket.first() else {
            return Ok(vec![]);
        };
        let columns: Vec<EventColumns> =
            events.iter().map(EventColumns::of).collect::<Result<_>>()?;
        let mut sessions: HashMap<&str, Session> = HashMap::default();
        for c in &columns {
            for i in 0..c.at.len() {
                if c.key.is_null(i) || c.user.is_null(i) || c.session.is_null(i) {
                    continue;
                }
                let order = (c.at.value(i), c.file.value(i), c.line.value(i));
                let session = sessions.entry(c.key.value(i)).or_insert_with(|| Session {
                    user: c.user.value(i),
                    id: c.session.value(i),
                    first: order,
                    date: c.date.value(i),
                    device: opt(c.device, i),
                    city: opt(c.city, i),
                    last_click: None,
                    collected: None,
                    purchase_ids: BTreeSet::new(),
                    revenue: 0.0,
                    events: 0,
                });
                session.events += 1;
                if order < session.first {
                    session.first = order;
                    session.date = c.date.value(i);
                    session.device = opt(c.device, i);
                    session.city = opt(c.city, i);
                }
                let lc = c.lc.map(|a| opt(a, i));
                if (lc[0].is_some() || lc[1].is_some())
                    && session.last_click.as_ref().is_none_or(|(o, _)| order < *o)
                {
                    session.last_click = Some((order, lc));
                }
                let cts = c.cts.map(|a| opt(a, i));
                let gclid = c.gclid.is_valid(i);
                if (cts[0].is_some() || cts[1].is_some() || gclid)
                    && session
                        .collected
                        .as_ref()
                        .is_none_or(|(o, _, _)| order < *o)
                {
                    session.collected = Some((order, cts, gclid));
                }
                if opt(c.name, i) == Some("purchase") {
                    if let Some(t) = opt(c.transaction, i) {
                        session.purchase_ids.insert(t);
                    }
                    if c.revenue.is_valid(i) {
                        session.revenue += c.revenue.value(i);
                    }
                }
            }
        }
        // Sorted by their keys, not moved as whole sessions: the sort took 1.6% of GA4's
        // ingest when it moved the structs. The keys are unique (a key is its user and id).
        let sessions: Vec<Session> = sessions.into_values().collect();
        let mut order: Vec<(Order, &str, i64, usize)> = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.first, s.user, s.id, i))
            .collect();
        order.sort_unstable();
        let mut stage = TableStage::new("ga4_sessions", sessions_schema());
        for s in order.iter().filter_map(|(.., i)| sessions.get(*i)) {
            let utm: [Option<&str>; 5] = match (s.last_click, s.collected) {
                (Some((_, lc)), _) => lc,
                (None, Some((_, mut cts, has_gclid))) => {
                    if cts[0].is_none() && cts[1].is_none() && has_gclid {
                        cts[0] = Some("google");
                        cts[1] = Some("cpc");
                    }
                    cts
                }
                (None, None) => [Some("(direct)"), Some("(none)"), None, None, None],
            };
            let ids: Vec<String> = s.purchase_ids.iter().map(|t| t.to_string()).collect();
            stage
                .row(s.date, s.first.1, s.first.2, None)
                .str(Some(s.user))
                .i64(Some(s.id))
                .ts(Some(s.first.0))
                .str(utm[0])
                .str(utm[1])
                .str(utm[2])
                .str(utm[3])
                .str(utm[4])
                .str_list(Some(&ids))
                .f64(Some(s.revenue))
                .i64(Some(s.events))
                .str(s.device)
                .str(s.city)
                .end();
        }
        Ok(stage
            .take_batch()?
            .map(|batch| vec![(1, batch)])
            .unwrap_or_default())
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
        let q = quarantine_lines(&st);
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
    fn sessions_follow_the_source_rule() {
        let t0 = 1_763_636_000_000_000_i64;
        let first = [
            // session 1: the last click of the second event wins over the collected
            // source of the first; device and city of the first; purchases sorted, distinct
            ev(
                t0,
                "page_view",
                "1",
                r#","collected_traffic_source":{"manual_source":"vk","manual_medium":"social"},"device":{"category":"mobile"},"geo":{"city":"Kazan"}"#,
            ),
            ev(
                t0 + 5,
                "page_view",
                "1",
                r#","session_traffic_source_last_click":{"manual_campaign":{"source":"yandex","medium":"cpc","campaign_name":"brand","term":"shoes"}},"device":{"category":"desktop"}"#,
            ),
            ev(
                t0 + 9,
                "purchase",
                "1",
                r#","ecommerce":{"transaction_id":"1002","purchase_revenue":99.5},"session_traffic_source_last_click":{"manual_campaign":{"source":"google","medium":"cpc"}}"#,
            ),
            ev(t0 + 10, "purchase", "1", r#","ecommerce":{"transaction_id":"1001","purchase_revenue":10}"#),
            ev(t0 + 11, "purchase", "1", r#","ecommerce":{"transaction_id":"1001"}"#),
            // session 2 (id as a string): a gclid alone -> google / cpc
            ev(
                t0 + 100,
                "page_view",
                "\"2\"",
                r#","collected_traffic_source":{"gclid":"abc","manual_source":"(not set)"}"#,
            ),
            // session 3: nothing -> (direct) / (none)
            ev(t0 + 200, "page_view", "3", ""),
            // session 4, same instant in two files: the first file's event is earliest;
            // a collected medium without a source keeps it (the gclid does not apply)
            ev(
                t0 + 300,
                "page_view",
                "4",
                r#","collected_traffic_source":{"manual_medium":"email","gclid":"g"},"device":{"category":"tablet"}"#,
            ),
            "{not json".to_string(),
            r#"{"event_name":"x","user_pseudo_id":"u1"}"#.to_string(),
        ]
        .join("\n");
        let second = [
            ev(
                t0 + 300,
                "page_view",
                "4",
                r#","collected_traffic_source":{"manual_source":"news","manual_medium":"email"},"device":{"category":"mobile"}"#,
            ),
            // no session id: an event of no session
            r#"{"event_timestamp":"1763636000000400","event_name":"x","user_pseudo_id":"u1"}"#
                .to_string(),
        ]
        .join("\n");
        let (b, st) = run(Box::new(Ga4::new(opts())), &[&first, &second], NO_CUTOFF);
        assert_eq!(b[0].num_rows(), 10);
        let s = &b[1];
        assert_eq!(col(s, "ga_session_id"), ["1", "2", "3", "4"]);
        assert_eq!(col(s, "source"), ["yandex", "google", "(direct)", "∅"]);
        assert_eq!(col(s, "medium"), ["cpc", "cpc", "(none)", "email"]);
        assert_eq!(col(s, "campaign"), ["brand", "∅", "∅", "∅"]);
        assert_eq!(col(s, "term"), ["shoes", "∅", "∅", "∅"]);
        assert_eq!(col(s, "purchase_ids"), ["[1001, 1002]", "[]", "[]", "[]"]);
        assert_eq!(col(s, "revenue"), ["109.5", "0.0", "0.0", "0.0"]);
        assert_eq!(col(s, "events"), ["5", "1", "1", "2"]);
        assert_eq!(col(s, "device_category"), ["mobile", "∅", "∅", "tablet"]);
        assert_eq!(col(s, "city"), ["Kazan", "∅", "∅", "∅"]);
        assert_eq!(col(s, "_source_file"), ["file0", "file0", "file0", "file0"]);
        assert_eq!(col(s, "_source_line"), ["1", "6", "7", "8"]);
        let q = quarantine_lines(&st);
        assert_eq!(
            q,
            [(9, "unparseable_record"), (10, "unparseable_timestamp")]
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

    /// The fields of `collected_traffic_source` that are read.
    const COLLECTED_KEYS: [&str; 6] = [
        "manual_source",
        "manual_medium",
        "manual_campaign_name",
        "manual_content",
        "manual_term",
        "gclid",
    ];

    /// The fields of an event read through `serde_json::Value` lookups: how events were
    /// read before the typed [`Event`], kept as the reference it must agree with.
    mod by_value {
        use crmflow_core::normalize::text;
        use serde_json::Value;

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

        /// Every field the parser reads, as text; `None`: not an object.
        pub fn fields(event: &Value) -> Option<Vec<Option<String>>> {
            event.as_object()?;
            let s = |keys: &[&str]| text_at(event, keys);
            let mut out = vec![
                event
                    .get("event_timestamp")
                    .and_then(int)
                    .map(|v| v.to_string()),
                s(&["event_date"]),
                s(&["event_name"]),
                s(&["user_pseudo_id"]),
                s(&["user_id"]),
                param(event, "ga_session_id")
                    .and_then(int)
                    .map(|v| v.to_string()),
                param(event, "page_location")
                    .and_then(|v| v.as_str())
                    .and_then(text)
                    .map(str::to_string),
            ];
            for k in ["source", "medium", "campaign_name", "content", "term"] {
                out.push(s(&[
                    "session_traffic_source_last_click",
                    "manual_campaign",
                    k,
                ]));
            }
            for k in super::COLLECTED_KEYS {
                out.push(s(&["collected_traffic_source", k]));
            }
            out.push(s(&["ecommerce", "transaction_id"]));
            out.push(
                path(event, &["ecommerce", "purchase_revenue"])
                    .and_then(number)
                    .map(|v| format!("{v:?}")),
            );
            out.push(s(&["device", "category"]));
            out.push(s(&["geo", "city"]));
            Some(out)
        }
    }

    /// The same fields read through the typed [`Event`].
    fn typed_fields(raw: &str) -> Option<Vec<Option<String>>> {
        let event = serde_json::from_str::<Obj<Event>>(raw).ok()?.0?;
        let own = |c: Option<Cow<str>>| c.map(Cow::into_owned);
        let mut out = vec![
            event.event_timestamp.int().map(|v| v.to_string()),
            own(event.event_date.text()),
            own(event.event_name.text()),
            own(event.user_pseudo_id.text()),
            own(event.user_id.text()),
            event.param("ga_session_id").int().map(|v| v.to_string()),
            event
                .param("page_location")
                .as_str()
                .and_then(text)
                .map(str::to_string),
        ];
        out.extend(event.last_click().map(own));
        let (cts, gclid) = event.collected();
        out.extend(cts.map(own));
        out.push(own(gclid));
        let e = event.ecommerce.get();
        out.push(e.and_then(|e| own(e.transaction_id.text())));
        out.push(
            e.and_then(|e| e.purchase_revenue.number())
                .map(|v| format!("{v:?}")),
        );
        out.push(event.device.get().and_then(|d| own(d.category.text())));
        out.push(event.geo.get().and_then(|g| own(g.city.text())));
        Some(out)
    }

    mod shapes {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        /// Any JSON value a field might hold, the expected shapes and the odd ones.
        pub fn leaf() -> BoxedStrategy<Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                (-3i64..3).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                prop_oneof![
                    Just(1.5f64),
                    Just(2.0),
                    Just(-0.0),
                    Just(1e20),
                    Just(1772506662.0)
                ]
                .prop_map(Value::from),
                prop_oneof![
                    Just(""),
                    Just(" 12 "),
                    Just("(not set)"),
                    Just("1.5"),
                    Just("tab\there"),
                    Just("20261120"),
                    Just("page_location"),
                    Just("ga_session_id"),
                    Just("1772506662000000"),
                ]
                .prop_map(Value::from),
                Just(json!([1, {"a": 2}])),
                Just(json!({"k": "v"})),
            ]
            .boxed()
        }

        /// An object with some of `keys`, each a [`leaf`] or `nested`.
        pub fn object(
            keys: &'static [&'static str],
            nested: BoxedStrategy<Value>,
        ) -> BoxedStrategy<Value> {
            let field = prop_oneof![leaf(), nested];
            proptest::collection::vec(proptest::option::of(field), keys.len())
                .prop_map(move |values| {
                    let mut map = Map::new();
                    for (k, v) in keys.iter().zip(values) {
                        if let Some(v) = v {
                            map.insert((*k).to_string(), v);
                        }
                    }
                    Value::Object(map)
                })
                .boxed()
        }

        pub fn event() -> impl Strategy<Value = Value> {
            let campaign = object(
                &["source", "medium", "campaign_name", "content", "term"],
                leaf(),
            );
            let value = object(
                &["string_value", "int_value", "double_value", "float_value"],
                leaf(),
            );
            // Mostly the two keys read, so that their values' shapes are explored.
            let key = prop_oneof![
                3 => Just(Value::from("ga_session_id")),
                3 => Just(Value::from("page_location")),
                1 => leaf(),
            ];
            let param = (
                proptest::option::of(key),
                proptest::option::of(prop_oneof![1 => leaf(), 4 => value]),
            )
                .prop_map(|(key, value)| {
                    let mut map = Map::new();
                    if let Some(k) = key {
                        map.insert("key".into(), k);
                    }
                    if let Some(v) = value {
                        map.insert("value".into(), v);
                    }
                    Value::Object(map)
                });
            let params = prop_oneof![
                leaf(),
                proptest::collection::vec(prop_oneof![1 => leaf(), 4 => param], 0..4)
                    .prop_map(Value::from)
            ]
            .boxed();
            object(
                &[
                    "event_timestamp",
                    "event_date",
                    "event_name",
                    "user_pseudo_id",
                    "user_id",
                    "event_params",
                    "session_traffic_source_last_click",
                    "collected_traffic_source",
                    "ecommerce",
                    "device",
                    "geo",
                ],
                prop_oneof![
                    params,
                    object(&["manual_campaign"], campaign),
                    object(&super::COLLECTED_KEYS, leaf()),
                    object(
                        &["transaction_id", "purchase_revenue", "category", "city"],
                        leaf(),
                    ),
                ]
                .boxed(),
            )
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The typed event reads every field exactly as `Value` lookups did, whatever
        /// shape each field has.
        #[test]
        fn typed_events_read_like_json_values(event in shapes::event()) {
            let raw = event.to_string();
            proptest::prop_assert_eq!(typed_fields(&raw), by_value::fields(&event), "{}", raw);
        }
    }
}
