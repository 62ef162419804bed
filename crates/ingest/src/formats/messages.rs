//! Messaging exports: email/SMS message events and CRM consents (CSV). Neither has a
//! key: they are not deduplicated. Recipients and contacts are split into a normalised
//! `email` (when the value has an `@`) or `phone`.
//!
//! `message_events`: channel, campaign_id, campaign_name, email, phone, event, event_at.
//! `consents`: channel, email, phone, status, updated_at.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{text, timestamp_micros};

use super::{Format, ParseOptions, each_record, email_checked, phone_checked};
use crate::chunks::{Chunk, Framing};
use crate::error::Result;
use crate::stage::{Reason, RowWriter, Staging, TableStage, ts_type};
use crate::text::DelimitedOptions;

fn text_field(n: &str) -> Field {
    Field::new(n, DataType::Utf8, true)
}

pub fn events_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        text_field("channel"),
        text_field("campaign_id"),
        text_field("campaign_name"),
        text_field("email"),
        text_field("phone"),
        text_field("event"),
        Field::new("event_at", ts_type(), false),
    ]))
}

pub fn consents_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        text_field("channel"),
        text_field("email"),
        text_field("phone"),
        text_field("status"),
        Field::new("updated_at", ts_type(), false),
    ]))
}

/// Splits a contact into (email, phone), counting an invalid one.
fn contact(staging: &mut Staging, raw: &str) -> (Option<String>, Option<String>) {
    if raw.contains('@') {
        (email_checked(staging, raw), None)
    } else {
        (None, phone_checked(staging, raw))
    }
}

fn lower(v: &str) -> Option<String> {
    text(v).map(str::to_lowercase)
}

/// Reads a keyless CSV whose rows carry a contact and a time: quarantines an
/// unparseable time, applies the cut-off, splits the contact into email or phone, and
/// lets `fill` write the rest of the row.
/// Both formats are CSV with a header.
fn delimited(opts: ParseOptions) -> DelimitedOptions {
    DelimitedOptions {
        delimiter: opts.delimiter,
        quoting: true,
        skip_lines: 0,
    }
}

#[allow(clippy::too_many_arguments)] // the two callers differ only in these
fn contact_rows(
    kind: &str,
    required: &[&str],
    at_column: &str,
    contact_column: &str,
    opts: ParseOptions,
    chunk: &Chunk,
    staging: &mut Staging,
    fill: impl Fn(RowWriter<'_>, &dyn Fn(&str) -> String, Option<String>, Option<String>, i64),
) -> Result<()> {
    let file = chunk.file;
    each_record(
        kind,
        chunk,
        delimited(opts),
        required,
        staging,
        |rec, h, staging| {
            let get = |c: &str| rec.get(h.col(c)).to_string();
            let Some(at) = timestamp_micros(&get(at_column), opts.tz) else {
                staging.quarantine(
                    file,
                    rec.line,
                    rec.raw,
                    Some(at_column),
                    Reason::UnparseableTimestamp,
                    format!("{at_column} is not a time"),
                );
                return;
            };
            if staging.after_cutoff(at, 1) {
                return;
            }
            let Some(day) = staging.date_of(at) else {
                return;
            };
            let (email, phone) = contact(staging, &get(contact_column));
            fill(
                staging.tables[0].row(day, file, rec.line, None),
                &get,
                email,
                phone,
                at,
            );
            staging.loaded(1);
        },
    )
}

pub struct MessageEvents {
    pub opts: ParseOptions,
}

impl Format for MessageEvents {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("message_events", events_schema())]
    }

    fn framing(&self, _head: &str) -> Framing {
        delimited(self.opts).into()
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let required = ["channel", "recipient", "event", "event_at"];
        contact_rows(
            "message events",
            &required,
            "event_at",
            "recipient",
            self.opts,
            chunk,
            staging,
            |row, get, email, phone, at| {
                row.str(lower(&get("channel")).as_deref())
                    .str(text(&get("campaign_id")))
                    .str(text(&get("campaign_name")))
                    .str(email.as_deref())
                    .str(phone.as_deref())
                    .str(lower(&get("event")).as_deref())
                    .ts(Some(at))
                    .end()
            },
        )
    }
}

pub struct Consents {
    pub opts: ParseOptions,
}

impl Format for Consents {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("consents", consents_schema())]
    }

    fn framing(&self, _head: &str) -> Framing {
        delimited(self.opts).into()
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let required = ["contact", "channel", "status", "updated_at"];
        contact_rows(
            "consents",
            &required,
            "updated_at",
            "contact",
            self.opts,
            chunk,
            staging,
            |row, get, email, phone, at| {
                row.str(lower(&get("channel")).as_deref())
                    .str(email.as_deref())
                    .str(phone.as_deref())
                    .str(lower(&get("status")).as_deref())
                    .ts(Some(at))
                    .end()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::test_support::*;

    #[test]
    fn events_split_recipients() {
        let csv = "channel,campaign_id,campaign_name,recipient,event,event_at\n\
                   email,c1,Black Friday, Anna@X.ru ,OPEN,2026-11-20 10:00:00\n\
                   sms,c2,Promo,8 912 345-67-89,sent,2026-11-20T10:00:00Z\n\
                   sms,c2,Promo,12,sent,2026-11-20 10:00:00\n\
                   email,c1,x,a@x.ru,open,\n";
        let (b, st) = run(
            Box::new(MessageEvents {
                opts: super::super::test_support::opts(),
            }),
            &[csv],
            NO_CUTOFF,
        );
        assert_eq!(col(&b[0], "email"), ["anna@x.ru", "∅", "∅"]);
        assert_eq!(col(&b[0], "phone"), ["∅", "+79123456789", "∅"]);
        assert_eq!(col(&b[0], "event"), ["open", "sent", "sent"]);
        assert_eq!(st.counts.invalid_phones, 1);
        assert_eq!(st.quarantine[0].reason, Reason::UnparseableTimestamp);
    }

    #[test]
    fn consents() {
        let csv =
            "contact;channel;status;updated_at\nanna@x.ru;email;REVOKED;2026-11-20 10:00:00\n";
        let (b, _) = run(
            Box::new(Consents {
                opts: super::super::test_support::opts(),
            }),
            &[csv],
            NO_CUTOFF,
        );
        assert_eq!(col(&b[0], "status"), ["revoked"]);
    }
}
