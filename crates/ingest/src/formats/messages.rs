//! Messaging exports: email/SMS message events and CRM consents (CSV). Neither has a
//! key: they are not deduplicated. Recipients and contacts are split into a normalised
//! `email` (when the value has an `@`) or `phone`.
//!
//! `message_events`: channel, campaign_id, campaign_name, email, phone, event, event_at.
//! `consents`: channel, email, phone, status, updated_at.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use std::borrow::Cow;

use crmflow_core::normalize::{text, timestamp_micros};

use super::{Format, ParseOptions, each_record, email_checked, lowercase, phone_checked};
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
fn contact<'r>(staging: &mut Staging, raw: &'r str) -> (Option<Cow<'r, str>>, Option<String>) {
    if raw.contains('@') {
        (email_checked(staging, raw), None)
    } else {
        (None, phone_checked(staging, raw))
    }
}

fn lower(v: &str) -> Option<Cow<'_, str>> {
    text(v).map(|t| lowercase(Cow::Borrowed(t)))
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

/// What the two formats read of a row: the columns they name, in order, and where
/// the time and the contact are.
struct ContactColumns<'a> {
    kind: &'a str,
    required: &'a [&'a str],
    at: &'a str,
    contact: &'a str,
    /// The columns `fill` receives, in this order (at most [`MAX_READ`]).
    read: &'a [&'a str],
}

const MAX_READ: usize = 4;

fn contact_rows(
    columns: ContactColumns,
    opts: ParseOptions,
    chunk: &Chunk,
    staging: &mut Staging,
    fill: impl Fn(RowWriter<'_>, &[&str], Option<Cow<'_, str>>, Option<String>, i64),
) -> Result<()> {
    let file = chunk.file;
    // Header positions, resolved on the chunk's first record (every record shares them).
    let mut positions: Option<[Option<usize>; 2]> = None;
    let mut read_positions: Vec<Option<usize>> = vec![];
    each_record(
        columns.kind,
        chunk,
        delimited(opts),
        columns.required,
        staging,
        |rec, h, staging| {
            let [at_col, contact_col] = *positions.get_or_insert_with(|| {
                read_positions = columns.read.iter().map(|c| h.col(c)).collect();
                [h.col(columns.at), h.col(columns.contact)]
            });
            let Some(at) = timestamp_micros(rec.get(at_col), opts.tz) else {
                staging.quarantine(
                    file,
                    rec.line,
                    rec.raw,
                    Some(columns.at),
                    Reason::UnparseableTimestamp,
                    format!("{} is not a time", columns.at),
                );
                return;
            };
            if staging.after_cutoff(at, 1) {
                return;
            }
            let Some(day) = staging.date_of(at) else {
                return;
            };
            let (email, phone) = contact(staging, rec.get(contact_col));
            let mut values = [""; MAX_READ];
            for (value, p) in values.iter_mut().zip(&read_positions) {
                *value = rec.get(*p);
            }
            fill(
                staging.tables[0].row(day, file, rec.line, None),
                &values[..read_positions.len().min(MAX_READ)],
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
        let columns = ContactColumns {
            kind: "message events",
            required: &["channel", "recipient", "event", "event_at"],
            at: "event_at",
            contact: "recipient",
            read: &["channel", "campaign_id", "campaign_name", "event"],
        };
        contact_rows(
            columns,
            self.opts,
            chunk,
            staging,
            |row, v, email, phone, at| {
                row.str(lower(v[0]).as_deref())
                    .str(text(v[1]))
                    .str(text(v[2]))
                    .str(email.as_deref())
                    .str(phone.as_deref())
                    .str(lower(v[3]).as_deref())
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
        let columns = ContactColumns {
            kind: "consents",
            required: &["contact", "channel", "status", "updated_at"],
            at: "updated_at",
            contact: "contact",
            read: &["channel", "status"],
        };
        contact_rows(
            columns,
            self.opts,
            chunk,
            staging,
            |row, v, email, phone, at| {
                row.str(lower(v[0]).as_deref())
                    .str(email.as_deref())
                    .str(phone.as_deref())
                    .str(lower(v[1]).as_deref())
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
