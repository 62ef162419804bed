//! Calltouch calls journal: a JSON array, a paged JSON object (`records`), or CSV with
//! the same field names as headers. Table `calls`, one row per call, key `callId`.
//!
//! | column | type | from |
//! |---|---|---|
//! | call_id | text | `callId` |
//! | call_at | timestamp UTC | `date` (`dd/mm/yyyy hh:mm:ss`, site time zone) |
//! | caller_phone | text E.164 | `callerNumber` |
//! | duration_s, waiting_s | int | `duration`, `waitingConnect` |
//! | successful, unique_call, target_call, callback_call | bool | `successful`, `uniqueCall`, `targetCall`, `callbackCall` |
//! | source, medium | text | `source`, `medium` (call tracking's attribution) |
//! | utm_source .. utm_term | text | `utmSource` .. `utmTerm` |
//! | session_id, ya_client_id, ga_client_id | text | `sessionId`, `yaClientId`, `clientId` |
//! | url, city | text | `url`, `city` |

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{boolean, integer, text, timestamp_micros};
use serde_json::Value;

use super::{Format, ParseOptions, each_record, phone_checked};
use crate::chunks::{Chunk, Framing};
use crate::error::{IngestError, Result};
use crate::stage::{Reason, Staging, TableStage, ts_type};
use crate::text::DelimitedOptions;

pub struct Calltouch {
    pub opts: ParseOptions,
}

pub fn schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("call_id", DataType::Utf8, false),
        Field::new("call_at", ts_type(), false),
        t("caller_phone"),
        Field::new("duration_s", DataType::Int64, true),
        Field::new("waiting_s", DataType::Int64, true),
        Field::new("successful", DataType::Boolean, false),
        Field::new("unique_call", DataType::Boolean, false),
        Field::new("target_call", DataType::Boolean, false),
        Field::new("callback_call", DataType::Boolean, false),
        t("source"),
        t("medium"),
        t("utm_source"),
        t("utm_medium"),
        t("utm_campaign"),
        t("utm_content"),
        t("utm_term"),
        t("session_id"),
        t("ya_client_id"),
        t("ga_client_id"),
        t("url"),
        t("city"),
    ]))
}

impl Calltouch {
    fn delimited(&self) -> DelimitedOptions {
        DelimitedOptions {
            delimiter: self.opts.delimiter,
            quoting: true,
            skip_lines: 0,
        }
    }

    /// Stages one call whose fields are looked up by name.
    fn call<'a>(
        &self,
        file: u32,
        line: u64,
        raw: &str,
        get: impl Fn(&str) -> Cow<'a, str>,
        staging: &mut Staging,
    ) {
        let Some(call_id) = text(&get("callId")).map(str::to_string) else {
            staging.quarantine(
                file,
                line,
                raw,
                Some("callId"),
                Reason::MissingPrimaryKey,
                "callId is empty".into(),
            );
            return;
        };
        let date_raw = get("date");
        let Some(call_at) = timestamp_micros(&date_raw, self.opts.tz) else {
            staging.quarantine(
                file,
                line,
                raw,
                Some("date"),
                Reason::UnparseableTimestamp,
                "date is not a dd/mm/yyyy hh:mm:ss time".into(),
            );
            return;
        };
        if staging.after_cutoff(call_at, 1) {
            return;
        }
        let Some(date) = staging.date_of(call_at) else {
            staging.quarantine(
                file,
                line,
                raw,
                Some("date"),
                Reason::UnparseableTimestamp,
                "date out of range".into(),
            );
            return;
        };
        let phone = phone_checked(staging, &get("callerNumber"));
        let s = |name: &str| text(&get(name)).map(str::to_string);
        let occurrence = staging.occurrence();
        staging.tables[0]
            .row(date, file, line, Some((&call_id, occurrence)))
            .str(Some(&call_id))
            .ts(Some(call_at))
            .str(phone.as_deref())
            .i64(integer(&get("duration")))
            .i64(integer(&get("waitingConnect")))
            .boolean(Some(boolean(&get("successful"))))
            .boolean(Some(boolean(&get("uniqueCall"))))
            .boolean(Some(boolean(&get("targetCall"))))
            .boolean(Some(boolean(&get("callbackCall"))))
            .str(s("source").as_deref())
            .str(s("medium").as_deref())
            .str(s("utmSource").as_deref())
            .str(s("utmMedium").as_deref())
            .str(s("utmCampaign").as_deref())
            .str(s("utmContent").as_deref())
            .str(s("utmTerm").as_deref())
            .str(s("sessionId").as_deref())
            .str(s("yaClientId").as_deref())
            .str(s("clientId").as_deref())
            .str(s("url").as_deref())
            .str(s("city").as_deref())
            .end();
        staging.loaded(1);
    }

    /// A chunk of a JSON array or page: a JSON array of whole call records.
    fn parse_json(&self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let records: Vec<Value> =
            serde_json::from_str(chunk.text).map_err(|e| IngestError::Format {
                file: chunk.name.to_string(),
                message: format!(
                    "not valid JSON in records {} and after: {e}",
                    chunk.line_shift + 1
                ),
            })?;
        let file = chunk.file;
        for (i, record) in records.iter().enumerate() {
            let line = i as u64 + 1 + chunk.line_shift;
            let Value::Object(fields) = record else {
                staging.quarantine(
                    file,
                    line,
                    &record.to_string(),
                    None,
                    Reason::UnparseableRecord,
                    "a call record must be a JSON object".into(),
                );
                continue;
            };
            let get = |k: &str| -> Cow<'_, str> {
                match fields.get(k) {
                    Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                    Some(Value::Null) | None => Cow::Borrowed(""),
                    Some(other) => Cow::Owned(other.to_string()),
                }
            };
            let raw = record.to_string();
            self.call(file, line, &raw, get, staging);
        }
        Ok(())
    }
}

impl Format for Calltouch {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("calls", schema())]
    }

    fn framing(&self, head: &str) -> Framing {
        match head.trim_start().as_bytes().first() {
            Some(b'[' | b'{') => Framing::JsonRecords,
            _ => self.delimited().into(),
        }
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        match chunk.text.trim_start().as_bytes().first() {
            // JSON chunks are arrays of whole records (`Framing::JsonRecords`).
            Some(b'[') => self.parse_json(chunk, staging),
            None => Ok(()),
            Some(_) => each_record(
                "Calltouch",
                chunk,
                self.delimited(),
                &["callId", "date"],
                staging,
                |rec, header, staging| {
                    let get = |k: &str| Cow::Borrowed(rec.get(header.col(k)));
                    self.call(chunk.file, rec.line, rec.raw, get, staging);
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::test_support::*;

    const ARRAY: &str = r#"[
 {"callId": 53412987, "date": "30/06/2023 18:11:56", "callerNumber": "79376308802", "duration": 184,
  "waitingConnect": 12, "successful": true, "uniqueCall": true, "targetCall": true, "callbackCall": false,
  "source": "yandex", "medium": "cpc", "utmSource": "yandex", "utmMedium": "cpc", "utmCampaign": "brand",
  "utmContent": null, "utmTerm": "(not set)", "sessionId": 312239871, "yaClientId": "1687512345123456789",
  "clientId": "", "url": "https://shop.example/catalog", "city": "Москва"},
 {"callId": "", "date": "30/06/2023 18:12:00"},
 {"callId": 2, "date": "yesterday"},
 42
]"#;

    #[test]
    fn json_array_with_bad_records() {
        let (b, st) = run(Box::new(Calltouch { opts: opts() }), &[ARRAY], NO_CUTOFF);
        assert_eq!(b[0].num_rows(), 1);
        assert_eq!(col(&b[0], "call_id"), ["53412987"]);
        assert_eq!(col(&b[0], "call_at"), ["2023-06-30T15:11:56Z"]);
        assert_eq!(col(&b[0], "caller_phone"), ["+79376308802"]);
        assert_eq!(col(&b[0], "utm_term"), ["∅"]);
        assert_eq!(col(&b[0], "ga_client_id"), ["∅"]);
        assert_eq!(col(&b[0], "session_id"), ["312239871"]);
        assert_eq!(col(&b[0], "_source_line"), ["1"]);
        let reasons = quarantine_lines(&st);
        assert_eq!(
            reasons,
            [
                (2, "missing_primary_key"),
                (3, "unparseable_timestamp"),
                (4, "unparseable_record")
            ]
        );
        assert_eq!(st.counts.rows_read, 4);
    }

    #[test]
    fn paged_json_and_dedup_last_file_wins() {
        let page1 = r#"{"page":1,"pageTotal":2,"pageSize":2,"recordsTotal":3,"records":[
            {"callId": 1, "date": "01/07/2023 10:00:00", "duration": 10},
            {"callId": 2, "date": "01/07/2023 11:00:00", "duration": 20}]}"#;
        let page2 = r#"{"page":2,"records":[{"callId": 1, "date": "01/07/2023 10:00:00", "duration": 99}]}"#;
        let (b, st) = run(
            Box::new(Calltouch { opts: opts() }),
            &[page1, page2],
            NO_CUTOFF,
        );
        assert_eq!(col(&b[0], "call_id"), ["2", "1"]);
        assert_eq!(col(&b[0], "duration_s"), ["20", "99"]);
        assert_eq!(st.counts.duplicates_collapsed, 1);
        assert_eq!(st.counts.rows_loaded, 2);
    }

    #[test]
    fn csv_semicolon_with_russian_booleans_and_cutoff() {
        let csv = "callId;date;callerNumber;targetCall;successful\n\
                   10;30/06/2023 18:11:56;8 912 345-67-89;да;1\n\
                   11;30/06/2023 23:59:59;bad;нет;0\n\
                   12;01/07/2023 00:00:01;9123456789;true;true\n\
                   13;30/06/2023 18:00:00\n";
        let cutoff = crmflow_core::normalize::end_of_day_micros(
            chrono::NaiveDate::from_ymd_opt(2023, 6, 30).unwrap(),
            MSK,
        );
        let (b, st) = run(Box::new(Calltouch { opts: opts() }), &[csv], cutoff);
        assert_eq!(col(&b[0], "call_id"), ["10", "11"]);
        assert_eq!(col(&b[0], "target_call"), ["true", "false"]);
        assert_eq!(col(&b[0], "successful"), ["true", "false"]);
        assert_eq!(col(&b[0], "caller_phone"), ["+79123456789", "∅"]);
        assert_eq!(st.counts.invalid_phones, 1);
        assert_eq!(st.counts.rows_after_cutoff, 1);
        assert_eq!(st.quarantine[0].reason, Reason::WrongColumnCount);
        assert_eq!(st.quarantine[0].line, 5);
    }

    #[test]
    fn wrong_file_names_missing_columns() {
        let mut f = Calltouch { opts: opts() };
        let mut st = Staging::new(f.tables(), NO_CUTOFF, MSK);
        let err = f
            .parse(
                &Chunk::whole(0, "orders.csv", "Name,Email\n#1,a@b.c\n"),
                &mut st,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("orders.csv") && err.contains("`callId`") && err.contains("`date`"),
            "{err}"
        );
    }
}
