//! Yandex Metrica Logs API visits (TSV, no quoting, ClickHouse escapes and array
//! literals). Table `metrica_visits`, one row per visit, key `(counter_id, visit_id)`.
//!
//! | column | type | from |
//! |---|---|---|
//! | counter_id, visit_id | text | `ym:s:counterID`, `ym:s:visitID` |
//! | visit_at | timestamp UTC | `ym:s:dateTime` (counter time zone) |
//! | client_id | text | `ym:s:clientID` |
//! | start_url | text | `ym:s:startURL` |
//! | traffic_type | text | `ym:s:lastTrafficSource` |
//! | adv_engine, search_engine | text | `ym:s:lastAdvEngine`, `ym:s:lastSearchEngine` |
//! | utm_source .. utm_term | text | `ym:s:UTMSource` .. (else `ym:s:lastUTMSource` ..) |
//! | device_category | text | `ym:s:deviceCategory` (1 desktop, 2 mobile, 3 tablet) |
//! | page_views, visit_duration_s | int | `ym:s:pageViews`, `ym:s:visitDuration` |
//! | bounce | bool | `ym:s:bounce` |
//! | purchase_ids | list of text | `ym:s:purchaseID` |
//! | purchase_revenue | list of float | `ym:s:purchaseRevenue` |
//! | goal_ids | list of text | `ym:s:goalsID` |

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{boolean, decimal, integer, text, timestamp_micros};

use super::{Format, ParseOptions, each_record, lowercase};
use crate::chunks::{Chunk, Framing};
use crate::error::Result;
use crate::stage::{Reason, Staging, TableStage, f64_list_type, str_list_type, ts_type};
use crate::text::{DelimitedOptions, Header, clickhouse_array, tsv_text, unescape_tsv};

pub struct Metrica {
    pub opts: ParseOptions,
}

pub fn schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("counter_id", DataType::Utf8, false),
        Field::new("visit_id", DataType::Utf8, false),
        Field::new("visit_at", ts_type(), false),
        t("client_id"),
        t("start_url"),
        t("traffic_type"),
        t("adv_engine"),
        t("search_engine"),
        t("utm_source"),
        t("utm_medium"),
        t("utm_campaign"),
        t("utm_content"),
        t("utm_term"),
        t("device_category"),
        Field::new("page_views", DataType::Int64, true),
        Field::new("visit_duration_s", DataType::Int64, true),
        Field::new("bounce", DataType::Boolean, true),
        Field::new("purchase_ids", str_list_type(), true),
        Field::new("purchase_revenue", f64_list_type(), true),
        Field::new("goal_ids", str_list_type(), true),
    ]))
}

const UTM: [&str; 5] = ["Source", "Medium", "Campaign", "Content", "Term"];

fn device(raw: &str) -> Option<&str> {
    match raw {
        "1" => Some("desktop"),
        "2" => Some("mobile"),
        "3" => Some("tablet"),
        other => text(other),
    }
}

/// Header positions of the fields read, resolved once per chunk.
struct Columns {
    visit: Option<usize>,
    counter: Option<usize>,
    date_time: Option<usize>,
    client: Option<usize>,
    start_url: Option<usize>,
    traffic: Option<usize>,
    adv_engine: Option<usize>,
    search_engine: Option<usize>,
    utm: [Option<usize>; UTM.len()],
    device: Option<usize>,
    page_views: Option<usize>,
    duration: Option<usize>,
    bounce: Option<usize>,
    purchase_ids: Option<usize>,
    revenue: Option<usize>,
    goals: Option<usize>,
}

impl Columns {
    fn of(h: &Header) -> Self {
        Self {
            visit: h.col("ym:s:visitID"),
            counter: h.col("ym:s:counterID"),
            date_time: h.col("ym:s:dateTime"),
            client: h.col("ym:s:clientID"),
            start_url: h.col("ym:s:startURL"),
            traffic: h.col("ym:s:lastTrafficSource"),
            adv_engine: h.col("ym:s:lastAdvEngine"),
            search_engine: h.col("ym:s:lastSearchEngine"),
            // The unprefixed UTM column wins where a file has both.
            utm: UTM.map(|u| {
                h.col(&format!("ym:s:UTM{u}"))
                    .or_else(|| h.col(&format!("ym:s:lastUTM{u}")))
            }),
            device: h.col("ym:s:deviceCategory"),
            page_views: h.col("ym:s:pageViews"),
            duration: h.col("ym:s:visitDuration"),
            bounce: h.col("ym:s:bounce"),
            purchase_ids: h.col("ym:s:purchaseID"),
            revenue: h.col("ym:s:purchaseRevenue"),
            goals: h.col("ym:s:goalsID"),
        }
    }
}

impl Metrica {
    fn delimited(&self) -> DelimitedOptions {
        DelimitedOptions {
            delimiter: Some(self.opts.delimiter.unwrap_or(b'\t')),
            quoting: false,
            skip_lines: 0,
        }
    }
}

impl Format for Metrica {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("metrica_visits", schema())]
    }

    fn framing(&self, _head: &str) -> Framing {
        self.delimited().into()
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let file = chunk.file;
        let opts = self.delimited();
        let tz = self.opts.tz;
        let required = ["ym:s:visitID", "ym:s:counterID", "ym:s:dateTime"];
        let mut columns: Option<Columns> = None;
        // The key of the row being read (counter and visit id), its buffer reused.
        let mut key = String::new();
        each_record(
            "Yandex Metrica visits",
            chunk,
            opts,
            &required,
            staging,
            |rec, h, staging| {
                let c = columns.get_or_insert_with(|| Columns::of(h));
                // Most records hold no backslash: their fields need no unescaping (a
                // search per field took 3.6% of Metrica's ingest CPU at 1M customers).
                let escaped = memchr::memchr(b'\\', rec.raw.as_bytes()).is_some();
                let field = |col: Option<usize>| match escaped {
                    true => unescape_tsv(rec.get(col)),
                    false => Cow::Borrowed(rec.get(col)),
                };
                let (counter, visit) = (field(c.counter), field(c.visit));
                let (Some(counter), Some(visit)) = (text(&counter), text(&visit)) else {
                    let column = if text(&counter).is_none() {
                        "ym:s:counterID"
                    } else {
                        "ym:s:visitID"
                    };
                    staging.quarantine(
                        file,
                        rec.line,
                        rec.raw,
                        Some(column),
                        Reason::MissingPrimaryKey,
                        format!("{column} is empty"),
                    );
                    return;
                };
                let Some(visit_at) = timestamp_micros(&field(c.date_time), tz) else {
                    staging.quarantine(
                        file,
                        rec.line,
                        rec.raw,
                        Some("ym:s:dateTime"),
                        Reason::UnparseableTimestamp,
                        "ym:s:dateTime is not a yyyy-mm-dd hh:mm:ss time".into(),
                    );
                    return;
                };
                if staging.after_cutoff(visit_at, 1) {
                    return;
                }
                let Some(date) = staging.date_of(visit_at) else {
                    return;
                };
                let t = |col: Option<usize>| match escaped {
                    true => tsv_text(rec.get(col)),
                    false => text(rec.get(col)).map(Cow::Borrowed),
                };
                let utm_values: [Option<Cow<str>>; UTM.len()] = c.utm.map(t);
                let (ids, revenue, goals) =
                    (field(c.purchase_ids), field(c.revenue), field(c.goals));
                let purchase_ids = clickhouse_array(&ids).map(|ids| {
                    ids.into_iter()
                        .filter_map(|id| match id {
                            Cow::Borrowed(id) => text(id).map(Cow::Borrowed),
                            Cow::Owned(id) => text(&id).map(|t| Cow::Owned(t.to_string())),
                        })
                        .collect::<Vec<_>>()
                });
                let revenue: Option<Vec<f64>> = clickhouse_array(&revenue)
                    .map(|vs| vs.iter().filter_map(|v| decimal(v)).collect());
                let goals = clickhouse_array(&goals);
                key.clear();
                key.push_str(counter);
                key.push('\u{1f}');
                key.push_str(visit);
                let occurrence = staging.occurrence();
                staging.tables[0]
                    .row(date, file, rec.line, Some((&key, occurrence)))
                    .str(Some(counter))
                    .str(Some(visit))
                    .ts(Some(visit_at))
                    .str(t(c.client).as_deref())
                    .str(t(c.start_url).as_deref())
                    .str(t(c.traffic).map(lowercase).as_deref())
                    .str(t(c.adv_engine).as_deref())
                    .str(t(c.search_engine).as_deref())
                    .str(utm_values[0].as_deref())
                    .str(utm_values[1].as_deref())
                    .str(utm_values[2].as_deref())
                    .str(utm_values[3].as_deref())
                    .str(utm_values[4].as_deref())
                    .str(device(field(c.device).trim()))
                    .i64(integer(&field(c.page_views)))
                    .i64(integer(&field(c.duration)))
                    .boolean(text(&field(c.bounce)).map(boolean))
                    .str_list(purchase_ids.as_deref())
                    .f64_list(revenue.as_deref())
                    .str_list(goals.as_deref())
                    .end();
                staging.loaded(1);
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::test_support::*;

    #[test]
    fn visits_with_arrays_prefixes_and_quarantine() {
        let tsv = "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:clientID\tym:s:lastTrafficSource\tym:s:UTMSource\tym:s:lastUTMSource\tym:s:lastUTMMedium\tym:s:deviceCategory\tym:s:purchaseID\tym:s:purchaseRevenue\tym:s:startURL\n\
            701\t123\t2026-11-20 14:03:11\t168751\tad\tyandex\tgoogle\tcpc\t2\t['1001','1002']\t[1234.5,99]\thttps://x/?a=\"b\"\n\
            702\t123\t2026-11-20 15:00:00\t168752\tdirect\t(not set)\t\t\t1\t[]\t[]\thttps://x/\n\
            \t123\t2026-11-20 15:00:00\t1\tdirect\t\t\t\t1\t[]\t[]\tu\n\
            703\t123\tnot a time\t1\tdirect\t\t\t\t1\t[]\t[]\tu\n\
            701\t123\t2026-11-20 14:03:11\t168751\tad\tyandex\tgoogle\tcpc\t2\t['1001']\t[1234.5]\thttps://x/\n";
        let (b, st) = run(Box::new(Metrica { opts: opts() }), &[tsv], NO_CUTOFF);
        let v = &b[0];
        assert_eq!(col(v, "visit_id"), ["702", "701"]);
        assert_eq!(
            col(v, "utm_source"),
            ["∅", "yandex"],
            "unprefixed UTMSource wins"
        );
        assert_eq!(
            col(v, "utm_medium"),
            ["∅", "cpc"],
            "lastUTMMedium is used when it is the only one"
        );
        assert_eq!(
            col(v, "purchase_ids"),
            ["[]", "[1001]"],
            "the later re-pull wins"
        );
        assert_eq!(col(v, "device_category"), ["desktop", "mobile"]);
        assert_eq!(col(v, "visit_at")[1], "2026-11-20T11:03:11Z");
        assert_eq!(st.counts.duplicates_collapsed, 1);
        let q = quarantine_lines(&st);
        assert_eq!(
            q,
            [(4, "missing_primary_key"), (5, "unparseable_timestamp")]
        );
    }

    #[test]
    fn escaped_fields_are_unescaped_only_where_the_record_has_a_backslash() {
        let tsv = "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:UTMSource\tym:s:startURL\n\
            1\t2\t2026-11-20 10:00:00\tmail\\tru\thttps://x/?q=a\\\\b\n\
            2\t2\t2026-11-20 10:00:00\tmail\thttps://x/?q=a%5Cb\n";
        let (b, _) = run(Box::new(Metrica { opts: opts() }), &[tsv], NO_CUTOFF);
        assert_eq!(col(&b[0], "visit_id"), ["1", "2"]);
        assert_eq!(col(&b[0], "utm_source"), ["mail\tru", "mail"]);
        assert_eq!(
            col(&b[0], "start_url"),
            ["https://x/?q=a\\b", "https://x/?q=a%5Cb"]
        );
    }

    #[test]
    fn quotes_do_not_open_fields_in_tsv() {
        let tsv = "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:startURL\n1\t2\t2026-11-20 10:00:00\t\"unterminated\n";
        let (b, _) = run(Box::new(Metrica { opts: opts() }), &[tsv], NO_CUTOFF);
        assert_eq!(col(&b[0], "start_url"), ["\"unterminated"]);
    }
}
