//! Ad spend exports: Yandex Direct Reports API (TSV, optional title and `Total rows`
//! lines, cost in micros unless configured), Google Ads GAQL CSV (`metrics.cost_micros`),
//! and the generic spend CSV. All write table `ad_spend`:
//!
//! | column | type | Direct | Google Ads | generic |
//! |---|---|---|---|---|
//! | date | date | `Date` | `segments.date` | `date` |
//! | platform | text | `yandex_direct` | `google_ads` | `generic` |
//! | source, medium | text | `yandex` / `cpc` | `google` / `cpc` | `source`, `medium` |
//! | campaign | text | `CampaignName` | `campaign.name` | `campaign` |
//! | campaign_id | text | `CampaignId` | `campaign.id` | |
//! | impressions, clicks | int | `Impressions`, `Clicks` | `metrics.impressions`, `metrics.clicks` | `impressions`, `clicks` |
//! | cost | float | `Cost` / 1e6 | `metrics.cost_micros` / 1e6 | `cost` |
//! | currency | text | `Currency` | `customer.currency_code` | `currency` |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{date, date32, decimal, integer, start_of_day_micros, text};

use super::{Format, ParseOptions, each_record};
use crate::chunks::{Chunk, Framing};
use crate::error::Result;
use crate::stage::{Reason, Staging, TableStage};
use crate::text::DelimitedOptions;

pub fn schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("platform", DataType::Utf8, false),
        t("source"),
        t("medium"),
        t("campaign"),
        t("campaign_id"),
        Field::new("impressions", DataType::Int64, true),
        Field::new("clicks", DataType::Int64, true),
        Field::new("cost", DataType::Float64, true),
        t("currency"),
    ]))
}

/// Where each canonical column comes from in one spend export.
struct Columns {
    date: &'static str,
    source: Option<&'static str>,
    medium: Option<&'static str>,
    campaign: &'static str,
    campaign_id: Option<&'static str>,
    impressions: &'static str,
    clicks: &'static str,
    cost: &'static str,
    currency: &'static str,
    /// Columns of the primary key after the date.
    key: &'static [&'static str],
}

pub struct Spend {
    opts: ParseOptions,
    kind: &'static str,
    platform: &'static str,
    fixed_source: Option<(&'static str, &'static str)>,
    cols: Columns,
    tsv: bool,
    micros: bool,
}

impl Spend {
    pub fn direct(opts: ParseOptions) -> Self {
        Self {
            opts,
            kind: "Yandex Direct report",
            platform: "yandex_direct",
            fixed_source: Some(("yandex", "cpc")),
            cols: Columns {
                date: "Date",
                source: None,
                medium: None,
                campaign: "CampaignName",
                campaign_id: Some("CampaignId"),
                impressions: "Impressions",
                clicks: "Clicks",
                cost: "Cost",
                currency: "Currency",
                key: &["CampaignId"],
            },
            tsv: true,
            micros: opts.cost_in_micros,
        }
    }

    pub fn google_ads(opts: ParseOptions) -> Self {
        Self {
            opts,
            kind: "Google Ads report",
            platform: "google_ads",
            fixed_source: Some(("google", "cpc")),
            cols: Columns {
                date: "segments.date",
                source: None,
                medium: None,
                campaign: "campaign.name",
                campaign_id: Some("campaign.id"),
                impressions: "metrics.impressions",
                clicks: "metrics.clicks",
                cost: "metrics.cost_micros",
                currency: "customer.currency_code",
                key: &["campaign.name"],
            },
            tsv: false,
            micros: true,
        }
    }

    pub fn generic(opts: ParseOptions) -> Self {
        Self {
            opts,
            kind: "generic spend",
            platform: "generic",
            fixed_source: None,
            cols: Columns {
                date: "date",
                source: Some("source"),
                medium: Some("medium"),
                campaign: "campaign",
                campaign_id: None,
                impressions: "impressions",
                clicks: "clicks",
                cost: "cost",
                currency: "currency",
                key: &["source", "medium", "campaign"],
            },
            tsv: false,
            micros: false,
        }
    }
}

impl Spend {
    /// A Direct report may open with a title line: the header is the line with the date column.
    fn delimited(&self, head: &str) -> DelimitedOptions {
        let first = head.lines().next().unwrap_or("");
        let skip_lines =
            usize::from(self.tsv && !first.split('\t').any(|c| c.trim() == self.cols.date));
        DelimitedOptions {
            delimiter: self.opts.delimiter.or(self.tsv.then_some(b'\t')),
            quoting: !self.tsv,
            skip_lines,
        }
    }
}

impl Format for Spend {
    fn tables(&self) -> Vec<TableStage> {
        vec![TableStage::new("ad_spend", schema())]
    }

    fn framing(&self, head: &str) -> Framing {
        self.delimited(head).into()
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let (file, body) = (chunk.file, chunk.text);
        let opts = self.delimited(body);
        let c = &self.cols;
        let mut required = vec![c.date, c.campaign, c.cost];
        required.extend(c.source);
        required.extend(c.medium);
        let tz = self.opts.tz;
        let (fixed, platform, micros) = (self.fixed_source, self.platform, self.micros);
        // The footer `Total rows: N` (last chunk) has one field; it is not a row.
        let body = match body.trim_end().rsplit_once('\n') {
            Some((head, last))
                if chunk.last && self.tsv && last.trim_start().starts_with("Total rows") =>
            {
                head
            }
            _ => body,
        };
        let chunk = Chunk {
            text: body,
            ..*chunk
        };
        each_record(
            self.kind,
            &chunk,
            opts,
            &required,
            staging,
            |rec, h, staging| {
                let get = |col: &str| rec.get(h.col(col));
                let Some(day) = date(get(c.date)) else {
                    staging.quarantine(
                        file,
                        rec.line,
                        rec.raw,
                        Some(c.date),
                        Reason::UnparseableTimestamp,
                        format!("{} is not a date", c.date),
                    );
                    return;
                };
                if staging.after_cutoff(start_of_day_micros(day, tz), 1) {
                    return;
                }
                let key_parts: Vec<&str> = c.key.iter().map(|k| get(k).trim()).collect();
                let campaign = text(get(c.campaign));
                if key_parts.iter().all(|k| text(k).is_none()) {
                    staging.quarantine(
                        file,
                        rec.line,
                        rec.raw,
                        Some(c.key[0]),
                        Reason::MissingPrimaryKey,
                        format!("{} is empty", c.key.join(", ")),
                    );
                    return;
                }
                let (source, medium) = match fixed {
                    Some((s, m)) => (Some(s), Some(m)),
                    None => (
                        c.source.and_then(|s| text(get(s))),
                        c.medium.and_then(|m| text(get(m))),
                    ),
                };
                let cost = decimal(get(c.cost)).map(|v| if micros { v / 1_000_000.0 } else { v });
                let key = format!("{day}\u{1f}{}", key_parts.join("\u{1f}"));
                let occurrence = staging.occurrence();
                staging.tables[0]
                    .row(date32(day), file, rec.line, Some((&key, occurrence)))
                    .date(Some(date32(day)))
                    .str(Some(platform))
                    .str(source)
                    .str(medium)
                    .str(campaign)
                    .str(c.campaign_id.and_then(|id| text(get(id))))
                    .i64(integer(get(c.impressions)))
                    .i64(integer(get(c.clicks)))
                    .f64(cost)
                    .str(text(get(c.currency)))
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
    fn direct_with_title_footer_and_micros() {
        let tsv = "\"Отчёт (2026-11-01 - 2026-11-20)\"\nDate\tCampaignId\tCampaignName\tImpressions\tClicks\tCost\n\
                   2026-11-20\t11\tBrand\t1000\t50\t1500000000\n\
                   2026-11-20\t\tNoId\t1\t1\t1\n\
                   Total rows: 2\n";
        let (b, st) = run(Box::new(Spend::direct(opts())), &[tsv], NO_CUTOFF);
        assert_eq!(col(&b[0], "cost"), ["1500.0"]);
        assert_eq!(col(&b[0], "source"), ["yandex"]);
        assert_eq!(col(&b[0], "_source_line"), ["3"]);
        assert_eq!(st.counts.rows_read, 2, "the footer is not a row");
        assert_eq!(
            (st.quarantine[0].line, st.quarantine[0].reason),
            (4, Reason::MissingPrimaryKey)
        );
    }

    #[test]
    fn direct_without_micros_and_decimal_comma() {
        let tsv = "Date\tCampaignId\tCampaignName\tImpressions\tClicks\tCost\n2026-11-20\t11\tBrand\t1000\t50\t1500,50\n";
        let mut o = opts();
        o.cost_in_micros = false;
        let (b, _) = run(Box::new(Spend::direct(o)), &[tsv], NO_CUTOFF);
        assert_eq!(col(&b[0], "cost"), ["1500.5"]);
    }

    #[test]
    fn google_ads_and_generic() {
        let g = "segments.date,campaign.name,metrics.impressions,metrics.clicks,metrics.cost_micros\n2026-11-20,Search,10,2,2500000\n2026-11-20,Search,10,2,3500000\n";
        let (b, st) = run(Box::new(Spend::google_ads(opts())), &[g], NO_CUTOFF);
        assert_eq!(col(&b[0], "cost"), ["3.5"]);
        assert_eq!(st.counts.duplicates_collapsed, 1);
        let csv = "date,source,medium,campaign,impressions,clicks,cost,currency\n2026-11-20, VK ,cpc,promo,5,1,\"10,5\",RUB\n20.11.2026,tg,cpm,x,1,1,1,RUB\nbad,tg,cpm,x,1,1,1,RUB\n";
        let (b, st) = run(Box::new(Spend::generic(opts())), &[csv], NO_CUTOFF);
        assert_eq!(col(&b[0], "source"), ["VK", "tg"]);
        assert_eq!(col(&b[0], "cost"), ["10.5", "1.0"]);
        assert_eq!(st.quarantine[0].reason, Reason::UnparseableTimestamp);
    }
}
