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
pub mod messages;
pub mod metrica;
pub mod shopify;
pub mod spend;

use chrono_tz::Tz;
use crmflow_core::config::SourceKind;

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

/// An export format: its tables and how to parse one file into them.
pub trait Format: Send {
    /// The canonical tables this format writes; the first one holds one row per source row.
    fn tables(&self) -> Vec<TableStage>;
    /// Parses one decoded file into the staging area.
    fn parse(&mut self, file: u32, name: &str, text: &str, staging: &mut Staging) -> Result<()>;
    /// Builds derived tables once every file is parsed.
    fn finish(&mut self, _staging: &mut Staging) -> Result<()> {
        Ok(())
    }
}

/// The format of a source kind.
pub fn format_for(kind: SourceKind, opts: ParseOptions) -> Box<dyn Format> {
    match kind {
        SourceKind::Calltouch => Box::new(calltouch::Calltouch { opts }),
        SourceKind::MetricaVisits => Box::new(metrica::Metrica { opts }),
        SourceKind::Ga4Events => Box::new(ga4::Ga4::new(opts)),
        SourceKind::ShopifyOrders => Box::new(shopify::Shopify { opts }),
        SourceKind::DirectSpend => Box::new(spend::Spend::direct(opts)),
        SourceKind::GoogleAdsSpend => Box::new(spend::Spend::google_ads(opts)),
        SourceKind::GenericSpend => Box::new(spend::Spend::generic(opts)),
        SourceKind::MessageEvents => Box::new(messages::MessageEvents { opts }),
        SourceKind::Consents => Box::new(messages::Consents { opts }),
    }
}

/// Reads the delimited records of a file: checks the required header columns (a wrong
/// file fails naming the missing columns), quarantines records that cannot be split or
/// have the wrong number of fields, and hands every other record to `row`.
#[allow(clippy::too_many_arguments)] // one call per format; a struct would only rename them
pub(crate) fn each_record<'t>(
    kind: &str,
    name: &str,
    text: &'t str,
    opts: DelimitedOptions,
    required: &[&str],
    file: u32,
    staging: &mut Staging,
    mut row: impl FnMut(&Record<'t>, &crate::text::Header, &mut Staging),
) -> Result<()> {
    let Some(mut records) = Delimited::open(text, opts) else {
        return Ok(()); // an empty file has no rows
    };
    if let Some(missing) = records.header.missing(required) {
        return Err(IngestError::MissingColumns {
            file: name.to_string(),
            kind: kind.to_string(),
            missing,
        });
    }
    let header = records.header.clone();
    let width = header.names.len();
    for record in records.by_ref() {
        match record {
            Err(bad) => staging.quarantine(
                file,
                bad.line,
                bad.raw,
                None,
                Reason::UnparseableRecord,
                bad.message,
            ),
            Ok(rec) if rec.fields.len() != width => staging.quarantine(
                file,
                rec.line,
                rec.raw,
                None,
                Reason::WrongColumnCount,
                format!("{} fields, the header has {width}", rec.fields.len()),
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
pub(crate) fn email_checked(staging: &mut Staging, raw: &str) -> Option<String> {
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

    pub fn run(
        mut format: Box<dyn Format>,
        files: &[&str],
        cutoff: i64,
    ) -> (Vec<RecordBatch>, Staging) {
        let mut staging = Staging::new(format.tables(), cutoff, MSK);
        for (i, text) in files.iter().enumerate() {
            let name = format!("file{i}");
            let idx = staging.add_file(&name, text.len() as u64);
            format.parse(idx, &name, text, &mut staging).expect("parse");
        }
        format.finish(&mut staging).expect("finish");
        let names = staging.file_names.clone();
        let batches = staging
            .tables
            .iter_mut()
            .map(|t| t.finish(&names).expect("finish table").0)
            .collect();
        assert!(staging.counts.balanced(), "{:?}", staging.counts);
        (batches, staging)
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

    fn parse_any(kind: SourceKind, bytes: &[u8]) {
        let mut format = format_for(kind, opts());
        let mut staging = Staging::new(format.tables(), NO_CUTOFF, MSK);
        let text = crate::text::decode(bytes, crmflow_core::config::TextEncoding::Auto);
        let file = staging.add_file("fuzz", bytes.len() as u64);
        // A wrong file is an error, never a panic.
        let _ = format.parse(file, "fuzz", &text, &mut staging);
        let _ = format.finish(&mut staging);
        let names = staging.file_names.clone();
        for t in &mut staging.tables {
            t.finish(&names).expect("tables stay consistent");
        }
        assert!(staging.counts.balanced(), "{:?}", staging.counts);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            for (kind, _) in HEADERS {
                parse_any(*kind, &bytes);
            }
        }

        #[test]
        fn random_rows_behind_a_valid_header_never_panic(body in "[ -~\t\n;,\"'\\[\\]0-9/:.@+-]{0,300}") {
            for (kind, header) in HEADERS {
                parse_any(*kind, format!("{header}{body}").as_bytes());
            }
        }
    }
}
