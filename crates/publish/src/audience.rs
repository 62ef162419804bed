//! From a segment's table to the rows of a feed: join each row with the customer's
//! address for the channel and its latest consent statement, drop what must not be
//! published (counted by reason), and build the feed's columns: for email and SMS the
//! address and the segment's fields, for ads only digests of the identifiers.
//!
//! `candidates = rows + sum(dropped)` always holds: nothing is lost silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder, UInt32Array,
};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDateTime;
use datafusion::prelude::SessionContext;

use crate::error::{PublishError, Result};
use crate::identifiers;
use crate::settings::{Channel, SegmentSettings};

/// The contact pressure cap: drop contacts with `max_messages` or more `sent` events on
/// the channel in `(window_start, window_end]` (UTC).
#[derive(Debug, Clone)]
pub struct PressureCap {
    pub max_messages: u32,
    pub window_start: NaiveDateTime,
    pub window_end: NaiveDateTime,
}

/// The rows of one feed and what was dropped on the way.
#[derive(Debug, Clone)]
pub struct Audience {
    /// Sorted by key; the key is the first column.
    pub rows: RecordBatch,
    /// Rows of the segment table.
    pub candidates: u64,
    /// Dropped rows by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Ads: identifiers left out of a published row because they were invalid.
    pub rejected_identifiers: u64,
}

const CUSTOMER: &str = "customer_id";

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn timestamp_literal(t: NaiveDateTime) -> String {
    format!("CAST('{}' AS TIMESTAMP)", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// The fields a feed carries for a channel.
pub fn feed_fields(
    segment: &str,
    settings: &SegmentSettings,
    channel: Channel,
    schema: &Schema,
) -> Result<Vec<String>> {
    let has = |c: &str| schema.fields().iter().any(|f| f.name() == c);
    for required in [CUSTOMER, settings.key.as_str()] {
        if !has(required) {
            return Err(PublishError::Segment {
                segment: segment.to_string(),
                message: format!(
                    "the segment has no column `{required}`; a segment returns one row per customer with `customer_id` and its key"
                ),
            });
        }
    }
    if channel == Channel::Ads {
        return Ok(vec![]);
    }
    let fields = match &settings.fields {
        Some(f) => f.clone(),
        None => schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != &settings.key && n != CUSTOMER)
            .collect(),
    };
    for f in &fields {
        if !has(f) || ["email", "phone"].contains(&f.as_str()) {
            return Err(PublishError::Segment {
                segment: segment.to_string(),
                message: format!(
                    "field `{f}` of [publish] fields is not a column of the segment (or is an address, which the publisher adds itself)"
                ),
            });
        }
    }
    Ok(fields)
}

fn query(
    segment: &str,
    settings: &SegmentSettings,
    channel: Channel,
    fields: &[String],
    pressure: Option<&PressureCap>,
) -> String {
    let ch = channel.as_str();
    let mut select = vec![format!(
        "CAST(s.{} AS VARCHAR) AS __key",
        quote_ident(&settings.key)
    )];
    select.extend(fields.iter().map(|f| format!("s.{}", quote_ident(f))));
    select.push("c.email AS __email, c.phone AS __phone".into());
    select.push("pe.status AS __email_status, pe.reason AS __email_reason".into());
    select.push("pp.status AS __phone_status, pp.reason AS __phone_reason".into());
    let mut joins = vec![
        format!("LEFT JOIN customers c ON c.customer_id = s.customer_id"),
        format!(
            "LEFT JOIN contact_permissions pe ON pe.channel = '{ch}' AND pe.kind = 'email' AND pe.contact = c.email"
        ),
        format!(
            "LEFT JOIN contact_permissions pp ON pp.channel = '{ch}' AND pp.kind = 'phone' AND pp.contact = c.phone"
        ),
    ];
    match pressure {
        Some(cap) if channel != Channel::Ads => {
            let (start, end) = (
                timestamp_literal(cap.window_start),
                timestamp_literal(cap.window_end),
            );
            let column = if channel == Channel::Email {
                "email"
            } else {
                "phone"
            };
            select.push("COALESCE(m.sent, 0) AS __sent".into());
            joins.push(format!(
                "LEFT JOIN (SELECT {column} AS contact, COUNT(*) AS sent FROM message_events \
                 WHERE channel = '{ch}' AND event = 'sent' AND event_at > {start} AND event_at <= {end} \
                 AND {column} IS NOT NULL GROUP BY {column}) m ON m.contact = c.{column}"
            ));
        }
        _ => select.push("CAST(0 AS BIGINT) AS __sent".into()),
    }
    format!(
        "SELECT {} FROM {} s {} ORDER BY __key",
        select.join(", "),
        quote_ident(segment),
        joins.join(" ")
    )
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        PublishError::Arrow(Box::new(arrow::error::ArrowError::SchemaError(format!(
            "column {name} missing"
        ))))
    })?;
    Ok(cast(column, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Why a contact is dropped, or `None` to publish it.
fn suppression(
    status: Option<&str>,
    reason: Option<&str>,
    require_consent: bool,
) -> Option<String> {
    match status {
        Some("revoked") => Some(reason.unwrap_or("consent_revoked").to_string()),
        Some("granted") => None,
        _ if require_consent => Some("no_consent".to_string()),
        _ => None,
    }
}

/// Builds the feed of one segment for one channel.
pub async fn build_audience(
    ctx: &SessionContext,
    segment: &str,
    settings: &SegmentSettings,
    channel: Channel,
    pressure: Option<&PressureCap>,
) -> Result<Audience> {
    let table = ctx.table(segment).await?;
    let fields = feed_fields(segment, settings, channel, table.schema().as_arrow())?;
    let pressure = pressure.filter(|_| settings.contact_pressure);
    let sql = query(segment, settings, channel, &fields, pressure);
    let batches = ctx.sql(&sql).await?.collect().await?;

    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut rejected_identifiers = 0;
    let mut candidates = 0u64;
    let mut previous_key: Option<String> = None;
    let mut out_batches = vec![];
    let out_schema = output_schema(
        settings,
        channel,
        &fields,
        batches.first().map(|b| b.schema()),
    );
    for batch in &batches {
        let keys = strings(batch, "__key")?;
        let email = strings(batch, "__email")?;
        let phone = strings(batch, "__phone")?;
        let email_status = strings(batch, "__email_status")?;
        let email_reason = strings(batch, "__email_reason")?;
        let phone_status = strings(batch, "__phone_status")?;
        let phone_reason = strings(batch, "__phone_reason")?;
        let sent = cast(
            batch
                .column_by_name("__sent")
                .ok_or_else(|| PublishError::Segment {
                    segment: segment.into(),
                    message: "internal: no __sent column".into(),
                })?,
            &DataType::Int64,
        )?;
        let sent = sent.as_primitive::<arrow::datatypes::Int64Type>();
        let mut kept: Vec<u32> = vec![];
        let mut key_col = StringBuilder::new();
        let mut addr_cols: Vec<StringBuilder> = match channel {
            Channel::Ads => (0..4).map(|_| StringBuilder::new()).collect(),
            _ => vec![StringBuilder::new()],
        };
        for i in 0..batch.num_rows() {
            candidates += 1;
            let Some(key) = opt(&keys, i) else {
                return Err(PublishError::Segment {
                    segment: segment.into(),
                    message: format!("a row has a NULL key `{}`", settings.key),
                });
            };
            if previous_key.as_deref() == Some(key) {
                return Err(PublishError::Segment {
                    segment: segment.into(),
                    message: format!(
                        "the key `{}` is not unique (a value occurs twice); add a `unique` test and fix the SQL",
                        settings.key
                    ),
                });
            }
            previous_key = Some(key.to_string());
            let decision: std::result::Result<Vec<Option<String>>, String> = match channel {
                Channel::Email | Channel::Sms => {
                    let (raw, status, reason) = if channel == Channel::Email {
                        (opt(&email, i), opt(&email_status, i), opt(&email_reason, i))
                    } else {
                        (opt(&phone, i), opt(&phone_status, i), opt(&phone_reason, i))
                    };
                    let valid = |r: &str| match channel {
                        Channel::Email => identifiers::valid_email(r),
                        _ => identifiers::valid_phone(r),
                    };
                    match raw {
                        None => Err("no_address".into()),
                        Some(r) => match valid(r) {
                            None => Err("invalid_address".into()),
                            Some(address) => {
                                if let Some(why) =
                                    suppression(status, reason, settings.require_consent)
                                {
                                    Err(why)
                                } else if pressure.is_some_and(|cap| {
                                    !sent.is_null(i) && sent.value(i) >= i64::from(cap.max_messages)
                                }) {
                                    Err("contact_pressure".into())
                                } else {
                                    Ok(vec![Some(address)])
                                }
                            }
                        },
                    }
                }
                Channel::Ads => {
                    let revoked = [
                        (opt(&email_status, i), opt(&email_reason, i)),
                        (opt(&phone_status, i), opt(&phone_reason, i)),
                    ]
                    .into_iter()
                    .find(|(s, _)| *s == Some("revoked"));
                    let granted = opt(&email_status, i) == Some("granted")
                        || opt(&phone_status, i) == Some("granted");
                    let e = opt(&email, i);
                    let p = opt(&phone, i);
                    let he = e.and_then(identifiers::hashed_email);
                    let hp = p.and_then(identifiers::hashed_phone);
                    if let Some((_, reason)) = revoked {
                        Err(reason.unwrap_or("consent_revoked").to_string())
                    } else if settings.require_consent && !granted {
                        Err("no_consent".into())
                    } else if e.is_none() && p.is_none() {
                        Err("no_address".into())
                    } else if he.is_none() && hp.is_none() {
                        Err("invalid_address".into())
                    } else {
                        rejected_identifiers += u64::from(e.is_some() && he.is_none())
                            + u64::from(p.is_some() && hp.is_none());
                        Ok(vec![
                            he,
                            hp,
                            e.and_then(identifiers::yandex_email),
                            p.and_then(identifiers::yandex_phone),
                        ])
                    }
                }
            };
            match decision {
                Ok(values) => {
                    kept.push(i as u32);
                    key_col.append_value(key);
                    for (builder, v) in addr_cols.iter_mut().zip(values) {
                        builder.append_option(v);
                    }
                }
                Err(reason) => *dropped.entry(reason).or_default() += 1,
            }
        }
        let indices = UInt32Array::from(kept);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(key_col.finish())];
        columns.extend(
            addr_cols
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        for f in &fields {
            let c = batch
                .column_by_name(f)
                .ok_or_else(|| PublishError::Segment {
                    segment: segment.into(),
                    message: format!("field `{f}` missing from the result"),
                })?;
            let c = take(c.as_ref(), &indices, None)?;
            // Strings as plain UTF-8 so that every destination reads them.
            let c = match c.data_type() {
                DataType::Utf8View | DataType::LargeUtf8 => cast(&c, &DataType::Utf8)?,
                _ => c,
            };
            columns.push(c);
        }
        out_batches.push(RecordBatch::try_new(out_schema.clone(), columns)?);
    }
    let rows = concat_batches(&out_schema, &out_batches)?;
    Ok(Audience {
        rows,
        candidates,
        dropped,
        rejected_identifiers,
    })
}

fn output_schema(
    settings: &SegmentSettings,
    channel: Channel,
    fields: &[String],
    input: Option<SchemaRef>,
) -> SchemaRef {
    let mut out = vec![Field::new(&settings.key, DataType::Utf8, false)];
    let addresses: &[&str] = match channel {
        Channel::Email => &["email"],
        Channel::Sms => &["phone"],
        Channel::Ads => &[
            "hashed_email",
            "hashed_phone",
            "yandex_email_md5",
            "yandex_phone_md5",
        ],
    };
    out.extend(
        addresses
            .iter()
            .map(|a| Field::new(*a, DataType::Utf8, channel == Channel::Ads)),
    );
    for f in fields {
        let data_type = input
            .as_ref()
            .and_then(|s| s.field_with_name(f).ok().map(|f| f.data_type().clone()))
            .map(|t| match t {
                DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                other => other,
            })
            .unwrap_or(DataType::Utf8);
        out.push(Field::new(f, data_type, true));
    }
    Arc::new(Schema::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_rules() {
        assert_eq!(
            suppression(Some("revoked"), Some("bounce"), false).as_deref(),
            Some("bounce")
        );
        assert_eq!(
            suppression(Some("granted"), Some("consent_granted"), true),
            None
        );
        assert_eq!(suppression(None, None, false), None);
        assert_eq!(suppression(None, None, true).as_deref(), Some("no_consent"));
    }
}
