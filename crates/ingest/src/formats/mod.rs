//! One module per export format of `spec/sources.md`, each with its canonical table
//! schema(s), its parser and its tests. Every format implements [`Format`].
//!
//! | kind | tables (first one counts source rows) |
//! |---|---|
//! | `calltouch` | `calls` |
//! | `metrica_visits` | `metrica_visits` |
//! | `ga4_events` | `ga4_events`, `ga4_sessions` |
//! | `shopify_orders` | `order_items`, `orders` |
//! | `direct_spend`, `google_ads_spend`, `generic_spend` | `ad_spend` |
//! | `message_events` | `message_events` |
//! | `consents` | `consents` |

pub mod calltouch;
pub mod ga4;
pub mod json;
pub mod messages;
pub mod metrica;
pub mod shopify;
pub mod spend;

use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use crmflow_core::config::SourceKind;
use std::borrow::Cow;

use crate::chunks::{Chunk, Framing};
use crate::error::{IngestError, Result};
use crate::stage::{Reason, Staging, TableStage};
use crate::text::{Delimited, DelimitedOptions, Record};

/// Per-source parse settings.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Time zone of local times without an offset.
    pub tz: Tz,
    pub delimiter: Option<u8>,
    /// Yandex Direct `Cost` in micro-units.
    pub cost_in_micros: bool,
}

/// An export format: its tables and how to parse a file into them, chunk by chunk.
pub trait Format: Send + Sync {
    /// The canonical tables this format writes; the first one holds one row per source row.
    fn tables(&self) -> Vec<TableStage>;
    /// How a file splits into records, judged from its decoded first bytes.
    fn framing(&self, head: &str) -> Framing;
    /// Parses one chunk of a file (whole records; see [`Chunk`]) into the staging area.
    /// The chunks of a file are parsed on several threads at once ([`crate::parallel`]):
    /// nothing carries from one chunk to the next (a format whose records form groups,
    /// Shopify's orders, keeps each group in one chunk with its framing's `group_by`).
    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()>;
    /// Rows of derived tables made from one spill bucket after deduplication: the
    /// bucket's staged batches per table (all rows of a key are in one bucket); returns
    /// `(table, staged batch)` pairs. None by default.
    fn derive(&self, _bucket: &[Vec<RecordBatch>]) -> Result<Vec<(usize, RecordBatch)>> {
        Ok(vec![])
    }
}

impl From<DelimitedOptions> for Framing {
    fn from(o: DelimitedOptions) -> Self {
        Framing::Delimited {
            delimiter: o.delimiter,
            quoting: o.quoting,
            skip_lines: o.skip_lines,
            group_by: None,
        }
    }
}

/// `value` in lower case, copied only when it has an upper-case or non-ASCII letter.
pub(crate) fn lowercase(value: Cow<'_, str>) -> Cow<'_, str> {
    match value
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        true => Cow::Owned(value.to_lowercase()),
        false => value,
    }
}

/// The format of a source kind.
pub fn format_for(kind: SourceKind, opts: ParseOptions) -> Box<dyn Format> {
    match kind {
        SourceKind::Calltouch => Box::new(calltouch::Calltouch { opts }),
        SourceKind::MetricaVisits => Box::new(metrica::Metrica { opts }),
        SourceKind::Ga4Events => Box::new(ga4::Ga4::new(opts)),
        SourceKind::ShopifyOrders => Box::new(shopify::Shopify::new(opts)),
        SourceKind::DirectSpend => Box::new(spend::Spend::direct(opts)),
        SourceKind::GoogleAdsSpend => Box::new(spend::Spend::google_ads(opts)),
        SourceKind::GenericSpend => Box::new(spend::Spend::generic(opts)),
        SourceKind::MessageEvents => Box::new(messages::MessageEvents { opts }),
        SourceKind::Consents => Box::new(messages::Consents { opts }),
    }
}

/// Reads the delimited records of a chunk: checks the required header columns (a wrong
/// file fails naming the missing columns), quarantines records that cannot be split or
/// have the wrong number of fields, and hands every other record, with its line number
/// in the file, to `row`.
pub(crate) fn each_record<'t>(
    kind: &str,
    chunk: &Chunk<'t>,
    opts: DelimitedOptions,
    required: &[&str],
    staging: &mut Staging,
    mut row: impl FnMut(&Record<'t, '_>, &crate::text::Header, &mut Staging),
) -> Result<()> {
    let file = chunk.file;
    let Some(mut records) = Delimited::open(chunk.text, opts) else {
        return Ok(()); // an empty file has no rows
    };
    if let Some(missing) = records.header.missing(required) {
        return Err(IngestError::MissingColumns {
            file: chunk.name.to_string(),
            kind: kind.to_string(),
            missing,
        });
    }
    let header = records.header.clone();
    let width = header.names.len();
    while let Some(record) = records.next_record() {
        let record = match record {
            Ok(mut rec) => {
                rec.line += chunk.line_shift;
                Ok(rec)
            }
            Err(mut bad) => {
                bad.line += chunk.line_shift;
                Err(bad)
            }
        };
        match record {
            Err(bad) => staging.quarantine(
                file,
                bad.line,
                bad.raw,
                None,
                Reason::UnparseableRecord,
                bad.message,
            ),
            Ok(rec) if rec.len() != width => staging.quarantine(
                file,
                rec.line,
                rec.raw,
                None,
                Reason::WrongColumnCount,
                format!("{} fields, the header has {width}", rec.len()),
            ),
            Ok(rec) => row(&rec, &header, staging),
        }
    }
    Ok(())
}

/// Counts a phone that was present but invalid.
pub(crate) fn phone_checked(staging: &mut Staging, raw: &str) -> Option<String> {
    let normalised = crmflow_core::normalize::phone(raw);
    if normalised.is_none() && crmflow_core::normalize::text(raw).is_some() {
        staging.counts.invalid_phones += 1;
    }
    normalised
}

/// Counts an email that was present but invalid.
pub(crate) fn email_checked<'r>(
    staging: &mut Staging,
    raw: &'r str,
) -> Option<std::borrow::Cow<'r, str>> {
    let normalised = crmflow_core::normalize::email(raw);
    if normalised.is_none() && crmflow_core::normalize::text(raw).is_some() {
        staging.counts.invalid_emails += 1;
    }
    normalised
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs a format over in-memory files and returns the finished tables.
    use super::*;
    use arrow::record_batch::RecordBatch;

    pub const MSK: Tz = chrono_tz::Europe::Moscow;

    pub fn opts() -> ParseOptions {
        ParseOptions {
            tz: MSK,
            delimiter: None,
            cost_in_micros: true,
        }
    }

    /// A far-future cut-off.
    pub const NO_CUTOFF: i64 = i64::MAX;

    /// Runs the whole ingest path in memory (see [`crate::memory`]); returns every table
    /// (dates ascending) and the staging area with all quarantined rows and the counts.
    pub fn pipeline(
        format: &mut dyn Format,
        files: &[&[u8]],
        cutoff: i64,
        chunk_bytes: usize,
    ) -> Result<(Vec<RecordBatch>, Staging)> {
        let done = crate::memory::ingest_in_memory(format, files, cutoff, MSK, chunk_bytes, 1)?;
        Ok((done.tables, done.staging))
    }

    /// The rows of a batch in lineage order (file, line): buckets change row order only.
    fn in_lineage_order(batch: &RecordBatch) -> RecordBatch {
        let sort = |name: &str| arrow::compute::SortColumn {
            values: batch.column_by_name(name).expect("lineage column").clone(),
            options: None,
        };
        let indices =
            arrow::compute::lexsort_to_indices(&[sort("_source_file"), sort("_source_line")], None)
                .expect("sort");
        arrow::compute::take_record_batch(batch, &indices).expect("take")
    }

    /// Runs a format over in-memory files, whole and in tiny chunks (which must give
    /// the same tables, quarantine and counts); returns the tables and the staging area.
    pub fn run(
        mut format: Box<dyn Format>,
        files: &[&str],
        cutoff: i64,
    ) -> (Vec<RecordBatch>, Staging) {
        let bytes: Vec<&[u8]> = files.iter().map(|f| f.as_bytes()).collect();
        let (whole, st) = pipeline(format.as_mut(), &bytes, cutoff, usize::MAX).expect("parse");
        for size in [1, 40] {
            let (chunked, st2) =
                pipeline(format.as_mut(), &bytes, cutoff, size).expect("parse in chunks");
            assert_eq!(whole, chunked, "chunks of {size} bytes");
            assert_eq!(format!("{:?}", st.counts), format!("{:?}", st2.counts));
            assert_eq!(
                format!("{:?}", st.quarantine),
                format!("{:?}", st2.quarantine),
                "chunks of {size} bytes"
            );
        }
        // Spilled to 7 bucket files, as a large source is: the same rows.
        let spilled = crate::memory::ingest_in_memory(format.as_mut(), &bytes, cutoff, MSK, 40, 7)
            .expect("parse with a spill on disk");
        assert_eq!(
            format!("{:?}", st.counts),
            format!("{:?}", spilled.staging.counts)
        );
        for (a, b) in whole.iter().zip(&spilled.tables) {
            assert_eq!(in_lineage_order(a), in_lineage_order(b), "spilled to disk");
        }
        (whole, st)
    }

    /// The quarantined rows as `(line, reason)`.
    pub fn quarantine_lines(staging: &Staging) -> Vec<(u64, &'static str)> {
        staging
            .quarantine
            .iter()
            .map(|q| (q.line, q.reason.as_str()))
            .collect()
    }

    /// A column of a batch as text values (NULL as "∅").
    pub fn col(batch: &RecordBatch, name: &str) -> Vec<String> {
        let array = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let opts = arrow::util::display::FormatOptions::default().with_null("∅");
        let f = arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &opts)
            .expect("formatter");
        (0..array.len()).map(|i| f.value(i).to_string()).collect()
    }
}

#[cfg(test)]
mod robustness {
    //! Arbitrary bytes never panic any parser: every format gets random input (and
    //! random input behind a valid header), and the counts always balance.
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    const HEADERS: &[(SourceKind, &str)] = &[
        (
            SourceKind::Calltouch,
            "callId;date;callerNumber;targetCall\n",
        ),
        (
            SourceKind::MetricaVisits,
            "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:clientID\tym:s:purchaseID\n",
        ),
        (SourceKind::Ga4Events, ""),
        (
            SourceKind::ShopifyOrders,
            "Name,Email,Created at,Lineitem sku,Phone\n",
        ),
        (
            SourceKind::DirectSpend,
            "Date\tCampaignId\tCampaignName\tCost\n",
        ),
        (
            SourceKind::GoogleAdsSpend,
            "segments.date,campaign.name,metrics.cost_micros\n",
        ),
        (
            SourceKind::GenericSpend,
            "date,source,medium,campaign,cost\n",
        ),
        (
            SourceKind::MessageEvents,
            "channel,recipient,event,event_at\n",
        ),
        (SourceKind::Consents, "contact,channel,status,updated_at\n"),
    ];

    fn parse_any(kind: SourceKind, bytes: &[u8], chunk_bytes: usize) {
        let mut format = format_for(kind, opts());
        // A wrong file is an error, never a panic; the counts always balance.
        let _ = pipeline(format.as_mut(), &[bytes], NO_CUTOFF, chunk_bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), chunk in 1usize..64) {
            for (kind, _) in HEADERS {
                parse_any(*kind, &bytes, chunk);
            }
        }

        #[test]
        fn random_rows_behind_a_valid_header_never_panic(body in "[ -~\t\n;,\"'\\[\\]0-9/:.@+-]{0,300}", chunk in 1usize..64) {
            for (kind, header) in HEADERS {
                parse_any(*kind, format!("{header}{body}").as_bytes(), chunk);
            }
        }
    }
}
