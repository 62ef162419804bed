//! Shopify orders export (CSV, one row per line item; order-level columns only on the
//! order's first row). Tables `order_items` (one row per line item: the source rows) and
//! `orders` (one row per order). Key: the order number without `#`. An order is replaced
//! whole by its last occurrence.
//!
//! `orders`: order_key (`Name` without `#`), name, email, phone (first valid of `Phone`,
//! `Billing Phone`, `Shipping Phone`), financial_status (lower-cased), fulfillment_status,
//! accepts_marketing, currency, subtotal, shipping, taxes, total, discount_code,
//! discount_amount, created_at, paid_at, cancelled_at, refunded_amount, shopify_id (`Id`),
//! tags, source_name (`Source`).
//!
//! `order_items`: order_key, line_number (1-based within the order), sku, name, quantity,
//! price, created_at (the order's).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use crmflow_core::normalize::{boolean, decimal, integer, text, timestamp_micros};

use super::{Format, ParseOptions, each_record, email_checked, lowercase};
use crate::chunks::{Chunk, Framing};
use crate::error::Result;
use crate::stage::{Reason, Staging, TableStage, ts_type};
use crate::text::{DelimitedOptions, Header, Record};

pub struct Shopify {
    opts: ParseOptions,
}

pub fn orders_schema() -> Arc<Schema> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("order_key", DataType::Utf8, false),
        t("name"),
        t("email"),
        t("phone"),
        t("financial_status"),
        t("fulfillment_status"),
        Field::new("accepts_marketing", DataType::Boolean, true),
        t("currency"),
        f("subtotal"),
        f("shipping"),
        f("taxes"),
        f("total"),
        t("discount_code"),
        f("discount_amount"),
        Field::new("created_at", ts_type(), false),
        Field::new("paid_at", ts_type(), true),
        Field::new("cancelled_at", ts_type(), true),
        f("refunded_amount"),
        t("shopify_id"),
        t("tags"),
        t("source_name"),
    ]))
}

pub fn items_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("order_key", DataType::Utf8, false),
        Field::new("line_number", DataType::Int64, false),
        Field::new("sku", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("quantity", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
        Field::new("created_at", ts_type(), false),
    ]))
}

/// The export's columns the format reads, by header name; [`Columns`] holds their
/// positions in a file, resolved once per chunk (not a header lookup per value).
const COLUMNS: [&str; 26] = [
    "Name",
    "Email",
    "Financial Status",
    "Paid at",
    "Fulfillment Status",
    "Accepts Marketing",
    "Currency",
    "Subtotal",
    "Shipping",
    "Taxes",
    "Total",
    "Discount Code",
    "Discount Amount",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Billing Phone",
    "Shipping Phone",
    "Phone",
    "Cancelled at",
    "Refunded Amount",
    "Id",
    "Tags",
    "Source",
];
const NAME: usize = 0;
const EMAIL: usize = 1;
const FINANCIAL_STATUS: usize = 2;
const PAID_AT: usize = 3;
const FULFILLMENT_STATUS: usize = 4;
const ACCEPTS_MARKETING: usize = 5;
const CURRENCY: usize = 6;
const SUBTOTAL: usize = 7;
const SHIPPING: usize = 8;
const TAXES: usize = 9;
const TOTAL: usize = 10;
const DISCOUNT_CODE: usize = 11;
const DISCOUNT_AMOUNT: usize = 12;
const CREATED_AT: usize = 13;
const LINEITEM_QUANTITY: usize = 14;
const LINEITEM_NAME: usize = 15;
const LINEITEM_PRICE: usize = 16;
const LINEITEM_SKU: usize = 17;
const BILLING_PHONE: usize = 18;
const SHIPPING_PHONE: usize = 19;
const PHONE: usize = 20;
const CANCELLED_AT: usize = 21;
const REFUNDED_AMOUNT: usize = 22;
const ID: usize = 23;
const TAGS: usize = 24;
const SOURCE: usize = 25;

/// Positions of [`COLUMNS`] in a file's header.
struct Columns([Option<usize>; COLUMNS.len()]);

impl Columns {
    fn of(h: &Header) -> Self {
        Columns(COLUMNS.map(|name| h.col(name)))
    }
}

/// The order being read: its key, its state and the rows staged for it.
struct Block {
    name: String,
    key: Option<String>,
    /// The occurrence of the key this order's rows belong to.
    occurrence: u64,
    state: BlockState,
    rows: u64,
}

enum BlockState {
    Open { created_at: i64, date: i32 },
    Quarantined,
    AfterCutoff,
}

/// The order key of a `Name`: `#1001` -> `1001`.
pub fn order_key(name: &str) -> Option<String> {
    text(name)
        .and_then(|n| text(n.trim_start_matches('#')))
        .map(str::to_string)
}

impl Shopify {
    fn delimited(opts: ParseOptions) -> DelimitedOptions {
        DelimitedOptions {
            delimiter: opts.delimiter,
            quoting: true,
            skip_lines: 0,
        }
    }

    pub fn new(opts: ParseOptions) -> Self {
        Shopify { opts }
    }

    fn close(block: Option<Block>, staging: &mut Staging) {
        if let Some(b) = block
            && let BlockState::Open { .. } = b.state
        {
            staging.loaded(b.rows);
        }
    }

    /// Starts a block from an order's first row.
    fn open(&self, file: u32, rec: &Record, cols: &Columns, staging: &mut Staging) -> Block {
        let get = |c: usize| rec.get(cols.0[c]);
        let name = get(NAME).trim().to_string();
        let mut block = Block {
            key: order_key(&name),
            name,
            occurrence: staging.occurrence(),
            state: BlockState::Quarantined,
            rows: 0,
        };
        let Some(key) = block.key.as_deref() else {
            staging.quarantine(
                file,
                rec.line,
                rec.raw,
                Some("Name"),
                Reason::MissingPrimaryKey,
                "Name is empty".into(),
            );
            return block;
        };
        let tz = self.opts.tz;
        let Some(created_at) = timestamp_micros(get(CREATED_AT), tz) else {
            staging.quarantine(
                file,
                rec.line,
                rec.raw,
                Some("Created at"),
                Reason::UnparseableTimestamp,
                "Created at is not a yyyy-mm-dd hh:mm:ss +hhmm time".into(),
            );
            return block;
        };
        if staging.after_cutoff(created_at, 0) {
            block.state = BlockState::AfterCutoff;
            return block;
        }
        let Some(date) = staging.date_of(created_at) else {
            return block;
        };
        let phone = [PHONE, BILLING_PHONE, SHIPPING_PHONE]
            .iter()
            .find_map(|&c| crmflow_core::normalize::phone(get(c)));
        if phone.is_none()
            && [PHONE, BILLING_PHONE, SHIPPING_PHONE]
                .iter()
                .any(|&c| text(get(c)).is_some())
        {
            staging.counts.invalid_phones += 1;
        }
        let email = email_checked(staging, get(EMAIL));
        let t = |c: usize| text(get(c));
        let ts = |c: usize| timestamp_micros(get(c), tz);
        staging.tables[1]
            .row(date, file, rec.line, Some((key, block.occurrence)))
            .str(Some(key))
            .str(Some(&block.name))
            .str(email.as_deref())
            .str(phone.as_deref())
            .str(t(FINANCIAL_STATUS).map(|v| lowercase(v.into())).as_deref())
            .str(
                t(FULFILLMENT_STATUS)
                    .map(|v| lowercase(v.into()))
                    .as_deref(),
            )
            .boolean(t(ACCEPTS_MARKETING).map(boolean))
            .str(t(CURRENCY))
            .f64(decimal(get(SUBTOTAL)))
            .f64(decimal(get(SHIPPING)))
            .f64(decimal(get(TAXES)))
            .f64(decimal(get(TOTAL)))
            .str(t(DISCOUNT_CODE))
            .f64(decimal(get(DISCOUNT_AMOUNT)))
            .ts(Some(created_at))
            .ts(ts(PAID_AT))
            .ts(ts(CANCELLED_AT))
            .f64(decimal(get(REFUNDED_AMOUNT)))
            .str(t(ID))
            .str(t(TAGS))
            .str(t(SOURCE))
            .end();
        block.state = BlockState::Open { created_at, date };
        block
    }

    fn item(file: u32, rec: &Record, cols: &Columns, block: &mut Block, staging: &mut Staging) {
        match block.state {
            BlockState::Open { created_at, date } => {
                let get = |c: usize| rec.get(cols.0[c]);
                block.rows += 1;
                staging.tables[0]
                    .row(
                        date,
                        file,
                        rec.line,
                        block.key.as_deref().map(|k| (k, block.occurrence)),
                    )
                    .str(block.key.as_deref())
                    .i64(Some(block.rows as i64))
                    .str(text(get(LINEITEM_SKU)))
                    .str(text(get(LINEITEM_NAME)))
                    .i64(integer(get(LINEITEM_QUANTITY)))
                    .f64(decimal(get(LINEITEM_PRICE)))
                    .ts(Some(created_at))
                    .end();
            }
            BlockState::AfterCutoff => staging.counts.rows_after_cutoff += 1,
            // The order's first row was quarantined: its other rows are orphans.
            BlockState::Quarantined => staging.quarantine(
                file,
                rec.line,
                rec.raw,
                Some("Name"),
                Reason::OrphanLineItem,
                format!(
                    "line item of order {} whose first row was quarantined",
                    block.name
                ),
            ),
        }
    }
}

impl Format for Shopify {
    fn tables(&self) -> Vec<TableStage> {
        vec![
            TableStage::new("order_items", items_schema()),
            TableStage::new("orders", orders_schema()),
        ]
    }

    /// An order's rows (one `Name`) stay in one chunk.
    fn framing(&self, _head: &str) -> Framing {
        let DelimitedOptions {
            delimiter,
            quoting,
            skip_lines,
        } = Self::delimited(self.opts);
        Framing::Delimited {
            delimiter,
            quoting,
            skip_lines,
            group_by: Some("Name"),
        }
    }

    fn parse(&mut self, chunk: &Chunk, staging: &mut Staging) -> Result<()> {
        let file = chunk.file;
        let mut block: Option<Block> = None;
        let mut columns: Option<Columns> = None;
        each_record(
            "Shopify orders",
            chunk,
            Self::delimited(self.opts),
            &["Name", "Created at"],
            staging,
            |rec, h, staging| {
                let cols = columns.get_or_insert_with(|| Columns::of(h));
                let row_name = rec.get(cols.0[NAME]).trim();
                let starts_order = text(rec.get(cols.0[CREATED_AT])).is_some()
                    || block.as_ref().is_none_or(|b| b.name != row_name);
                if starts_order {
                    Self::close(block.take(), staging);
                    let mut b = self.open(file, rec, cols, staging);
                    if !matches!(b.state, BlockState::Quarantined) {
                        Self::item(file, rec, cols, &mut b, staging);
                    }
                    block = Some(b);
                } else if let Some(b) = block.as_mut() {
                    Self::item(file, rec, cols, b, staging);
                }
            },
        )?;
        Self::close(block, staging);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::test_support::*;

    const HEADER: &str = "Name,Email,Financial Status,Paid at,Accepts Marketing,Currency,Total,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Phone,Phone,Cancelled at,Refunded Amount";

    #[test]
    fn multi_row_orders_quarantine_and_orphans() {
        let csv = format!(
            "{HEADER}\n\
             #1001, Anna@Example.com ,PAID,2026-11-20 14:05:00 +0300,yes,RUB,\"1234,50\",2026-11-20 14:03:11 +0300,1,Mug,1000,SKU-1,bad,8 912 345-67-89,,\n\
             #1001,,,,,,,,2,Spoon,117.25,SKU-2,,,,\n\
             #1002,b@x.ru,paid,,no,RUB,10,garbage,1,Mug,10,SKU-1,,,,\n\
             #1002,,,,,,,,1,Spoon,5,SKU-2,,,,\n\
             #1003,c@x.ru,refunded,,no,RUB,50,2026-11-20 15:00:00 +0300,1,Mug,50,SKU-1,,,,50\n"
        );
        let (b, st) = run(Box::new(Shopify::new(opts())), &[&csv], NO_CUTOFF);
        let (items, orders) = (&b[0], &b[1]);
        assert_eq!(col(orders, "order_key"), ["1001", "1003"]);
        assert_eq!(col(orders, "email"), ["anna@example.com", "c@x.ru"]);
        assert_eq!(
            col(orders, "phone"),
            ["+79123456789", "∅"],
            "first valid of Phone, Billing Phone, Shipping Phone"
        );
        assert_eq!(col(orders, "financial_status"), ["paid", "refunded"]);
        assert_eq!(col(orders, "total"), ["1234.5", "50.0"]);
        assert_eq!(col(orders, "created_at")[0], "2026-11-20T11:03:11Z");
        assert_eq!(col(items, "sku"), ["SKU-1", "SKU-2", "SKU-1"]);
        assert_eq!(col(items, "line_number"), ["1", "2", "1"]);
        let q = quarantine_lines(&st);
        assert_eq!(q, [(4, "unparseable_timestamp"), (5, "orphan_line_item")]);
        assert_eq!((st.counts.rows_read, st.counts.rows_loaded), (5, 3));
    }

    #[test]
    fn an_order_is_replaced_whole_by_its_last_file() {
        let f1 = format!(
            "{HEADER}\n#7,a@b.ru,paid,,yes,RUB,30,2026-11-20 10:00:00 +0300,1,A,10,A,,,,\n#7,,,,,,,,1,B,20,B,,,,\n"
        );
        let f2 = format!(
            "{HEADER}\n#7,a@b.ru,refunded,,yes,RUB,30,2026-11-20 10:00:00 +0300,1,A,10,A,,,,30\n"
        );
        let (b, st) = run(Box::new(Shopify::new(opts())), &[&f1, &f2], NO_CUTOFF);
        assert_eq!(col(&b[1], "financial_status"), ["refunded"]);
        assert_eq!(col(&b[0], "sku"), ["A"]);
        assert_eq!(st.counts.duplicates_collapsed, 2);
        assert_eq!(st.counts.rows_loaded, 1);
    }

    #[test]
    fn orders_after_cutoff_are_skipped_whole() {
        let csv = format!(
            "{HEADER}\n#8,a@b.ru,paid,,yes,RUB,30,2026-11-21 10:00:00 +0300,1,A,10,A,,,,\n#8,,,,,,,,1,B,20,B,,,,\n"
        );
        let cutoff = crmflow_core::normalize::end_of_day_micros(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            MSK,
        );
        let (b, st) = run(Box::new(Shopify::new(opts())), &[&csv], cutoff);
        assert_eq!(b[1].num_rows(), 0);
        assert_eq!(st.counts.rows_after_cutoff, 2);
    }
}
