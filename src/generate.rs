//! `crmflow generate`: a deterministic generator of realistic vendor exports, in every
//! format of `spec/sources.md` and with its quirks: Windows-1251 and BOMs, `;` and
//! decimal commas, placeholders, ClickHouse array literals, multi-row Shopify orders,
//! Direct title and `Total rows` lines, paged and re-pulled (overlapping) exports,
//! rows past the cut-off and a few malformed rows. Customers travel across channels
//! (visits in Metrica and GA4, calls, orders), identities link through calls and purchase
//! ids, some buy again, products sell in pairs, and email campaigns get opens, clicks and
//! unsubscribes. The same seed gives the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cli::GenerateArgs;

const TZ: Tz = chrono_tz::Europe::Moscow;

/// A traffic channel as the exports show it.
struct Channel {
    weight: f64,
    traffic_type: &'static str,
    utm: Option<(&'static str, &'static str, &'static str)>,
    adv_engine: &'static str,
}

const CHANNELS: &[Channel] = &[
    Channel {
        weight: 22.0,
        traffic_type: "ad",
        utm: Some(("yandex", "cpc", "brand")),
        adv_engine: "ya_direct",
    },
    Channel {
        weight: 8.0,
        traffic_type: "ad",
        utm: Some(("yandex", "cpc", "generic")),
        adv_engine: "ya_direct",
    },
    Channel {
        weight: 10.0,
        traffic_type: "ad",
        utm: Some(("google", "cpc", "search_brand")),
        adv_engine: "google_adwords",
    },
    Channel {
        weight: 7.0,
        traffic_type: "ad",
        utm: Some(("vk", "cpc", "promo")),
        adv_engine: "",
    },
    Channel {
        weight: 15.0,
        traffic_type: "organic",
        utm: None,
        adv_engine: "",
    },
    Channel {
        weight: 14.0,
        traffic_type: "direct",
        utm: None,
        adv_engine: "",
    },
    Channel {
        weight: 5.0,
        traffic_type: "referral",
        utm: None,
        adv_engine: "",
    },
    Channel {
        weight: 7.0,
        traffic_type: "email",
        utm: Some(("newsletter", "email", "weekly")),
        adv_engine: "",
    },
    Channel {
        weight: 3.0,
        traffic_type: "undefined",
        utm: Some(("smsc", "sms", "sms_promo")),
        adv_engine: "",
    },
    Channel {
        weight: 4.0,
        traffic_type: "messenger",
        utm: Some(("telegram", "messenger", "tg_channel")),
        adv_engine: "",
    },
    Channel {
        weight: 3.0,
        traffic_type: "social",
        utm: None,
        adv_engine: "",
    },
    Channel {
        weight: 2.0,
        traffic_type: "saved",
        utm: None,
        adv_engine: "",
    },
];

/// Products: (sku, name, price); products 2k and 2k+1 sell together.
fn product(i: usize) -> (String, String, f64) {
    const NAMES: &[&str] = &[
        "Кружка",
        "Чайник",
        "Френч-пресс",
        "Кофе в зёрнах",
        "Фильтры",
        "Термос",
        "Поднос",
        "Ложки",
    ];
    let name = format!("{} {}", NAMES[i % NAMES.len()], i / NAMES.len() + 1);
    let price = 190.0 + ((i * 379) % 2900) as f64 + if i.is_multiple_of(3) { 0.5 } else { 0.0 };
    (format!("SKU-{:03}", i + 1), name, price)
}
const PRODUCTS: usize = 40;

struct Out {
    dir: PathBuf,
}

impl Out {
    fn file(&self, rel: &str) -> Result<BufWriter<File>> {
        let path = self.dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        Ok(BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        ))
    }
}

fn local(t: DateTime<Utc>) -> chrono::DateTime<Tz> {
    t.with_timezone(&TZ)
}

/// A visit of a customer.
struct Session {
    at: DateTime<Utc>,
    channel: usize,
    visit_id: u64,
    ga_session: i64,
}

/// Counters shared by all customers (ids are global sequences).
struct Seq {
    visit: u64,
    order: u64,
    call: u64,
}

struct Call {
    id: u64,
    at: DateTime<Utc>,
    phone: String,
    target: bool,
    duration: u32,
    source: String,
    medium: String,
    campaign: String,
    ya: String,
    ga: String,
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    anyhow::ensure!(args.customers > 0, "--customers must be at least 1");
    let out = Out {
        dir: args.out.clone(),
    };
    std::fs::create_dir_all(&out.dir)?;
    let as_of = args.as_of;
    let start = as_of - Duration::days(i64::from(args.days));
    let day_start = |d: NaiveDate| -> DateTime<Utc> {
        TZ.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let t_start = day_start(start);
    let t_end = day_start(as_of + Duration::days(1));
    // Exports run past the cut-off: activity goes on for a day after `as_of`.
    let t_export_end = day_start(as_of + Duration::days(2));
    let split = day_start(as_of - Duration::days(10));
    let overlap_end = day_start(as_of - Duration::days(7));
    let repull_from = day_start(as_of - Duration::days(14));

    let metrica_header = "ym:s:visitID\tym:s:counterID\tym:s:dateTime\tym:s:clientID\tym:s:startURL\tym:s:lastTrafficSource\tym:s:lastAdvEngine\tym:s:lastSearchEngine\tym:s:lastUTMSource\tym:s:lastUTMMedium\tym:s:lastUTMCampaign\tym:s:lastUTMContent\tym:s:lastUTMTerm\tym:s:deviceCategory\tym:s:pageViews\tym:s:visitDuration\tym:s:bounce\tym:s:purchaseID\tym:s:purchaseRevenue\tym:s:goalsID";
    let mut metrica1 = out.file("metrica/visits_1.tsv")?;
    let mut metrica2 = out.file("metrica/visits_2.tsv")?;
    writeln!(metrica1, "{metrica_header}")?;
    // The second export also carries the unprefixed UTM columns: they win.
    writeln!(metrica2, "{metrica_header}\tym:s:UTMSource\tym:s:UTMMedium")?;
    let mut ga4 = out.file("ga4/events.ndjson")?;
    let shop_header = "Name,Email,Financial Status,Paid at,Fulfillment Status,Accepts Marketing,Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Phone,Shipping Phone,Phone,Cancelled at,Refunded Amount,Id,Tags,Source";
    let mut shop1 = out.file("shopify/orders_export_1.csv")?;
    let mut shop2 = out.file("shopify/orders_export_2.csv")?;
    shop1.write_all(b"\xEF\xBB\xBF")?;
    writeln!(shop1, "{shop_header}")?;
    writeln!(shop2, "{shop_header}")?;
    let mut messages = out.file("messages/message_events.csv")?;
    writeln!(
        messages,
        "channel,campaign_id,campaign_name,recipient,event,event_at"
    )?;
    let mut consents = out.file("crm/consents.csv")?;
    writeln!(consents, "contact,channel,status,updated_at")?;

    let mut seq = Seq {
        visit: 7_012_345_600_000_000_000,
        order: 1000,
        call: 53_400_000,
    };
    let mut calls: Vec<Call> = vec![];
    let total_weight: f64 = CHANNELS.iter().map(|c| c.weight).sum();
    let email_campaigns: Vec<(usize, DateTime<Utc>)> = (0..)
        .map(|k| {
            (
                k,
                t_start + Duration::days(3 + 7 * k as i64) + Duration::hours(7),
            )
        })
        .take_while(|(_, t)| *t < t_end - Duration::days(1))
        .collect();
    let sms_campaigns: Vec<(usize, DateTime<Utc>)> = (0..)
        .map(|k| {
            (
                k,
                t_start + Duration::days(10 + 30 * k as i64) + Duration::hours(9),
            )
        })
        .take_while(|(_, t)| *t < t_end - Duration::days(1))
        .collect();
    let mut malformed_done = [false; 6];

    for i in 0..args.customers {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i);
        let first_at = t_start
            + Duration::seconds(rng.random_range(0..(t_export_end - t_start).num_seconds().max(1)));
        let has_email = rng.random_bool(0.85);
        let has_phone = !has_email || rng.random_bool(0.7);
        let domains = [
            "gmail.com",
            "yandex.ru",
            "mail.ru",
            "example.com",
            "googlemail.com",
        ];
        let email = format!("user.{i}@{}", domains[(i % 5) as usize]);
        let phone_digits = format!("79{:09}", (i * 7919 + 12_345) % 1_000_000_000);
        let ym_id = format!("{}{:09}", 1_650_000_000 + i, (i * 104_729) % 1_000_000_000);
        let uses_ga = rng.random_bool(0.6);
        let ga_id = format!("{}.{}", 1_000_000_000 + i, first_at.timestamp());
        let engaged = rng.random_bool(0.3);
        let buyer = rng.random_bool(0.5);
        let repeat_p = if engaged { 0.45 } else { 0.25 };

        // Sessions from the first visit to the end, gaps of about three weeks.
        let mut sessions = vec![];
        let mut t = first_at;
        while t < t_export_end && sessions.len() < 40 {
            let r: f64 = rng.random::<f64>() * total_weight;
            let mut acc = 0.0;
            let channel = CHANNELS.iter().position(|c| {
                acc += c.weight;
                r < acc
            });
            seq.visit += 1 + rng.random_range(0..3);
            sessions.push(Session {
                at: t,
                channel: channel.unwrap_or(0),
                visit_id: seq.visit,
                ga_session: t.timestamp(),
            });
            let gap_days = -(1.0 - rng.random::<f64>()).ln() * if buyer { 18.0 } else { 25.0 };
            t += Duration::seconds((gap_days * 86_400.0) as i64 + 600);
        }

        let mut purchases = 0;
        let mut last_purchase_session: Option<usize> = None;
        for (s_idx, s) in sessions.iter().enumerate() {
            let ch = &CHANNELS[s.channel];
            let want = if purchases == 0 {
                buyer && (s_idx >= 1 || rng.random_bool(0.4))
            } else {
                rng.random_bool(repeat_p)
            };
            let order = if want && s.at + Duration::minutes(30) < t_export_end {
                purchases += 1;
                last_purchase_session = Some(s_idx);
                seq.order += 1;
                Some(seq.order)
            } else {
                None
            };
            // Items: a main product, often its pair, sometimes another.
            let mut items: Vec<(usize, u32)> = vec![];
            let mut revenue = 0.0;
            if order.is_some() {
                let main = rng.random_range(0..PRODUCTS);
                items.push((main, rng.random_range(1..3)));
                if rng.random_bool(0.45) {
                    items.push((main ^ 1, 1));
                }
                if rng.random_bool(0.2) {
                    let extra = rng.random_range(0..PRODUCTS);
                    if !items.iter().any(|(p, _)| *p == extra) {
                        items.push((extra, 1));
                    }
                }
                revenue = items
                    .iter()
                    .map(|(p, q)| product(*p).2 * f64::from(*q))
                    .sum::<f64>()
                    + 300.0;
            }
            let status = if order.is_some() {
                let r: f64 = rng.random();
                if r < 0.80 {
                    "paid"
                } else if r < 0.85 {
                    "refunded"
                } else if r < 0.88 {
                    "partially_refunded"
                } else if r < 0.92 {
                    "pending"
                } else if r < 0.94 {
                    "voided"
                } else if r < 0.97 {
                    "partially_paid"
                } else {
                    "authorized"
                }
            } else {
                ""
            };
            let counted = matches!(status, "paid" | "partially_paid" | "partially_refunded");
            let ids = match order {
                Some(o) if counted || rng.random_bool(0.5) => format!("['{o}']"),
                _ => "[]".to_string(),
            };
            let rev = if ids == "[]" {
                "[]".to_string()
            } else {
                format!("[{revenue}]")
            };
            let goals = if order.is_some() {
                "[123456,654321]"
            } else if rng.random_bool(0.2) {
                "[123456]"
            } else {
                "[]"
            };
            let (src, med, camp) = match ch.utm {
                Some((s, m, c)) => (s.to_string(), m.to_string(), c.to_string()),
                None => (
                    String::new(),
                    if rng.random_bool(0.3) {
                        "(not set)".into()
                    } else {
                        String::new()
                    },
                    String::new(),
                ),
            };
            let search_engine = if ch.traffic_type == "organic" {
                "yandex_search"
            } else {
                ""
            };
            let url = match ch.utm {
                Some((s, m, c)) => {
                    format!("https://shop.example/?utm_source={s}&utm_medium={m}&utm_campaign={c}")
                }
                None => "https://shop.example/".to_string(),
            };
            let device = 1 + (s.visit_id % 3);
            let page_views = 1 + rng.random_range(0..9);
            let base = format!(
                "{}\t12345678\t{}\t{ym_id}\t{url}\t{}\t{}\t{search_engine}",
                s.visit_id,
                local(s.at).format("%Y-%m-%d %H:%M:%S"),
                ch.traffic_type,
                ch.adv_engine
            );
            let tail = format!(
                "{device}\t{page_views}\t{}\t{}\t{ids}\t{rev}\t{goals}",
                page_views * 47,
                u8::from(page_views == 1)
            );
            if s.at < overlap_end {
                writeln!(metrica1, "{base}\t{src}\t{med}\t{camp}\t\t\t{tail}")?;
                if !malformed_done[0] && i > 3 {
                    // A truncated line (a wrong column count) and a visit without an id.
                    writeln!(
                        metrica1,
                        "{}\t12345678\t{}",
                        s.visit_id + 1,
                        local(s.at).format("%Y-%m-%d %H:%M:%S")
                    )?;
                    writeln!(
                        metrica1,
                        "\t12345678\t{}\t{ym_id}\t{url}\tdirect\t\t\t\t\t\t\t\t1\t1\t0\t1\t[]\t[]\t[]",
                        local(s.at).format("%Y-%m-%d %H:%M:%S")
                    )?;
                    malformed_done[0] = true;
                }
            }
            if s.at >= split {
                // The re-pull: the unprefixed UTM columns win over stale `last*` ones.
                let stale_src = if src.is_empty() {
                    String::new()
                } else {
                    "stale".to_string()
                };
                writeln!(
                    metrica2,
                    "{base}\t{stale_src}\t{med}\t{camp}\t\t\t{tail}\t{src}\t{med}"
                )?;
            }

            if uses_ga {
                let ts = s.at.timestamp_micros();
                let (lc, cts) = match ch.utm {
                    Some((s_, _, _)) if s_ == "google" && rng.random_bool(0.5) => (
                        String::new(),
                        r#","collected_traffic_source":{"gclid":"Cj0KCQ"}"#.to_string(),
                    ),
                    Some((s_, m, c)) => (
                        format!(
                            r#","session_traffic_source_last_click":{{"manual_campaign":{{"source":"{s_}","medium":"{m}","campaign_name":"{c}"}}}}"#
                        ),
                        format!(
                            r#","collected_traffic_source":{{"manual_source":"{s_}","manual_medium":"{m}","manual_campaign_name":"{c}"}}"#
                        ),
                    ),
                    None => (String::new(), String::new()),
                };
                let sid = if s.visit_id % 7 == 0 {
                    format!("\"{}\"", s.ga_session)
                } else {
                    s.ga_session.to_string()
                };
                let stamp = |micros: i64| {
                    if micros % 2 == 0 {
                        format!("\"{micros}\"")
                    } else {
                        micros.to_string()
                    }
                };
                let day = local(s.at).format("%Y%m%d");
                let common = format!(
                    r#""event_date":"{day}","user_pseudo_id":"{ga_id}","traffic_source":{{"source":"(direct)","medium":"(none)"}},"device":{{"category":"{}"}},"geo":{{"city":"Moscow"}}"#,
                    ["desktop", "mobile", "tablet"][(device - 1) as usize]
                );
                writeln!(
                    ga4,
                    r#"{{"event_timestamp":{},"event_name":"session_start","event_params":[{{"key":"ga_session_id","value":{{"int_value":{sid}}}}},{{"key":"page_location","value":{{"string_value":"{url}"}}}}],{common}{cts}{lc}}}"#,
                    stamp(ts)
                )?;
                writeln!(
                    ga4,
                    r#"{{"event_timestamp":{},"event_name":"page_view","event_params":[{{"key":"ga_session_id","value":{{"int_value":{sid}}}}}],{common}}}"#,
                    stamp(ts + 40_000_000)
                )?;
                if let (Some(o), true) = (order, ids != "[]") {
                    writeln!(
                        ga4,
                        r#"{{"event_timestamp":{},"event_name":"purchase","event_params":[{{"key":"ga_session_id","value":{{"int_value":{sid}}}}}],"ecommerce":{{"transaction_id":"{o}","purchase_revenue":{revenue}}},{common}}}"#,
                        stamp(ts + 600_000_000)
                    )?;
                }
                if !malformed_done[1] && i > 5 {
                    writeln!(
                        ga4,
                        r#"{{"event_timestamp": "16925", "event_name": "page_view", "user_pseudo_id": "#
                    )?;
                    writeln!(
                        ga4,
                        r#"{{"event_name":"page_view","user_pseudo_id":"{ga_id}"}}"#
                    )?;
                    malformed_done[1] = true;
                }
            }

            // Calls: a fifth of sessions before a purchase ring the shop.
            if rng.random_bool(if order.is_some() { 0.25 } else { 0.06 }) {
                seq.call += 1;
                let phone = if rng.random_bool(0.03) {
                    "12345".to_string()
                } else {
                    phone_digits.clone()
                };
                let (source, medium, campaign) = match ch.utm {
                    Some((s_, m, c)) => (s_.to_string(), m.to_string(), c.to_string()),
                    None => (
                        ch.traffic_type.to_string(),
                        "(none)".to_string(),
                        String::new(),
                    ),
                };
                calls.push(Call {
                    id: seq.call,
                    at: s.at + Duration::minutes(3),
                    phone,
                    target: rng.random_bool(0.7),
                    duration: rng.random_range(15..600),
                    source,
                    medium,
                    campaign,
                    ya: ym_id.clone(),
                    ga: if uses_ga {
                        ga_id.clone()
                    } else {
                        String::new()
                    },
                });
            }

            if let Some(o) = order {
                let created = s.at + Duration::minutes(7);
                write_order(
                    &mut shop1,
                    o,
                    &email,
                    &phone_digits,
                    has_email,
                    has_phone,
                    status,
                    created,
                    &items,
                    &mut rng,
                    &mut malformed_done[2],
                )?;
                if created >= repull_from {
                    // The re-pull carries the current state: some orders were refunded since.
                    let status2 = if status == "paid" && rng.random_bool(0.1) {
                        "refunded"
                    } else {
                        status
                    };
                    let mut dummy = true;
                    write_order(
                        &mut shop2,
                        o,
                        &email,
                        &phone_digits,
                        has_email,
                        has_phone,
                        status2,
                        created,
                        &items,
                        &mut rng,
                        &mut dummy,
                    )?;
                }
            }
        }
        // Offline: some customers first called a static number from a billboard.
        if has_phone && rng.random_bool(0.05) {
            seq.call += 1;
            calls.push(Call {
                id: seq.call,
                at: first_at - Duration::hours(rng.random_range(1..72)),
                phone: phone_digits.clone(),
                target: true,
                duration: rng.random_range(30..400),
                source: "billboard".into(),
                medium: "offline".into(),
                campaign: "metro_2026".into(),
                ya: String::new(),
                ga: String::new(),
            });
        }
        let _ = last_purchase_session;

        // Consents and messages.
        let consent_at = first_at + Duration::minutes(5);
        let email_ok = has_email && rng.random_bool(0.8);
        let shown_email = if i % 9 == 0 {
            format!(" {} ", email.to_uppercase())
        } else {
            email.clone()
        };
        if has_email {
            writeln!(
                consents,
                "{shown_email},email,{},{}",
                if email_ok { "granted" } else { "revoked" },
                local(consent_at).format("%Y-%m-%d %H:%M:%S")
            )?;
            writeln!(
                consents,
                "{email},ads,granted,{}",
                local(consent_at).format("%Y-%m-%d %H:%M:%S")
            )?;
        }
        let phone_shown = format!(
            "+7 ({}) {}-{}-{}",
            &phone_digits[1..4],
            &phone_digits[4..7],
            &phone_digits[7..9],
            &phone_digits[9..11]
        );
        let sms_ok = has_phone && rng.random_bool(0.6);
        if has_phone {
            writeln!(
                consents,
                "{phone_shown},sms,{},{}",
                if sms_ok { "granted" } else { "revoked" },
                local(consent_at).format("%Y-%m-%d %H:%M:%S")
            )?;
        }
        if email_ok {
            let open_p = if engaged { 0.8 } else { 0.2 };
            for (k, at) in email_campaigns.iter().filter(|(_, at)| *at > first_at) {
                if !rng.random_bool(0.92) {
                    continue;
                }
                let name = format!("Weekly digest #{}", k + 1);
                let row = |ev: &str, t: DateTime<Utc>| {
                    format!(
                        "email,em{k},{name},{email},{ev},{}",
                        local(t).format("%Y-%m-%d %H:%M:%S")
                    )
                };
                writeln!(messages, "{}", row("sent", *at))?;
                if rng.random_bool(0.006) {
                    writeln!(messages, "{}", row("bounce", *at + Duration::minutes(1)))?;
                    break;
                }
                writeln!(messages, "{}", row("delivered", *at + Duration::minutes(1)))?;
                if rng.random_bool(open_p) {
                    let opened = *at + Duration::minutes(rng.random_range(10..2000));
                    writeln!(messages, "{}", row("open", opened))?;
                    if rng.random_bool(0.25) {
                        writeln!(messages, "{}", row("click", opened + Duration::minutes(1)))?;
                    }
                }
                if rng.random_bool(0.004) {
                    writeln!(messages, "{}", row("unsubscribe", *at + Duration::hours(3)))?;
                    break;
                }
                if rng.random_bool(0.0005) {
                    writeln!(messages, "{}", row("complaint", *at + Duration::hours(4)))?;
                    break;
                }
            }
            if !malformed_done[3] && i > 7 {
                writeln!(
                    messages,
                    "email,em0,Weekly digest #1,{email},open,yesterday"
                )?;
                malformed_done[3] = true;
            }
        }
        if sms_ok {
            for (k, at) in sms_campaigns.iter().filter(|(_, at)| *at > first_at) {
                writeln!(
                    messages,
                    "sms,sm{k},Promo SMS {},{phone_shown},sent,{}",
                    k + 1,
                    local(*at).format("%Y-%m-%d %H:%M:%S")
                )?;
                writeln!(
                    messages,
                    "sms,sm{k},Promo SMS {},{phone_shown},delivered,{}",
                    k + 1,
                    local(*at + Duration::minutes(1)).format("%Y-%m-%d %H:%M:%S")
                )?;
            }
        }
    }

    write_calls(&out, &calls)?;
    write_spend(&out, start, as_of, args.customers)?;
    for mut w in [metrica1, metrica2, ga4, shop1, shop2, messages, consents] {
        w.flush()?;
    }
    let manifest = serde_json::json!({
        "as_of": as_of.to_string(),
        "customers": args.customers,
        "seed": args.seed,
        "days": args.days,
        "generator": format!("crmflow {}", env!("CARGO_PKG_VERSION")),
    });
    std::fs::write(
        out.dir.join("sample.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    eprintln!(
        "generated {} customers into {}",
        args.customers,
        out.dir.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_order(
    w: &mut impl Write,
    order: u64,
    email: &str,
    phone: &str,
    has_email: bool,
    has_phone: bool,
    status: &str,
    created: DateTime<Utc>,
    items: &[(usize, u32)],
    rng: &mut ChaCha8Rng,
    malformed_done: &mut bool,
) -> Result<()> {
    let subtotal: f64 = items
        .iter()
        .map(|(p, q)| product(*p).2 * f64::from(*q))
        .sum();
    let total = subtotal + 300.0;
    let guest = rng.random_bool(0.04);
    let email_field = if has_email && !guest {
        if order.is_multiple_of(5) {
            format!(" {}", email.replace("user", "User"))
        } else {
            email.to_string()
        }
    } else {
        String::new()
    };
    let phone_fmt = match order % 4 {
        0 => format!(
            "8 {} {}-{}-{}",
            &phone[1..4],
            &phone[4..7],
            &phone[7..9],
            &phone[9..11]
        ),
        1 => format!(
            "+7 ({}) {}-{}-{}",
            &phone[1..4],
            &phone[4..7],
            &phone[7..9],
            &phone[9..11]
        ),
        2 => phone[1..].to_string(),
        _ => phone.to_string(),
    };
    let (billing, shipping, main) = if has_phone && !guest {
        match order % 3 {
            0 => (phone_fmt, String::new(), String::new()),
            1 => ("-".to_string(), phone_fmt, String::new()),
            _ => (String::new(), String::new(), phone_fmt),
        }
    } else {
        (String::new(), String::new(), String::new())
    };
    let tz = |t: DateTime<Utc>| local(t).format("%Y-%m-%d %H:%M:%S %z").to_string();
    let paid_at = if matches!(
        status,
        "paid" | "partially_paid" | "partially_refunded" | "refunded"
    ) {
        tz(created + Duration::minutes(2))
    } else {
        String::new()
    };
    let cancelled = if status == "voided" {
        tz(created + Duration::hours(5))
    } else {
        String::new()
    };
    let refunded = match status {
        "refunded" => format!("{total:.2}"),
        "partially_refunded" => format!("{:.2}", total / 2.0),
        _ => String::new(),
    };
    let accepts = if rng.random_bool(0.7) { "yes" } else { "no" };
    let created_text = if !*malformed_done && order % 50 == 7 {
        *malformed_done = true;
        "31/02/2026 25:61".to_string()
    } else {
        tz(created)
    };
    for (n, (p, q)) in items.iter().enumerate() {
        let (sku, name, price) = product(*p);
        if n == 0 {
            writeln!(
                w,
                "#{order},{email_field},{status},{paid_at},fulfilled,{accepts},RUB,{subtotal:.2},300.00,0.00,{total:.2},,0.00,{created_text},{q},\"{name}\",{price:.2},{sku},{billing},{shipping},{main},{cancelled},{refunded},{},,web",
                5_000_000_000u64 + order
            )?;
        } else {
            writeln!(
                w,
                "#{order},,,,,,,,,,,,,,{q},\"{name}\",{price:.2},{sku},,,,,,,,"
            )?;
        }
    }
    Ok(())
}

fn write_calls(out: &Out, calls: &[Call]) -> Result<()> {
    let json_of = |c: &Call| {
        serde_json::json!({
            "callId": c.id,
            "date": local(c.at).format("%d/%m/%Y %H:%M:%S").to_string(),
            "callerNumber": c.phone,
            "duration": c.duration,
            "waitingConnect": 8,
            "successful": true,
            "uniqueCall": true,
            "targetCall": c.target,
            "callbackCall": false,
            "source": c.source,
            "medium": c.medium,
            "utmSource": if c.ya.is_empty() { "" } else { c.source.as_str() },
            "utmMedium": if c.ya.is_empty() { "" } else { c.medium.as_str() },
            "utmCampaign": c.campaign,
            "utmContent": "<не указано>",
            "utmTerm": "(not set)",
            "sessionId": c.id * 3,
            "yaClientId": c.ya,
            "clientId": c.ga,
            "url": "https://shop.example/contacts",
            "city": "Москва",
        })
    };
    let dynamic: Vec<&Call> = calls.iter().filter(|c| !c.ya.is_empty()).collect();
    let per_page = dynamic.len().div_ceil(2).max(1);
    let pages: Vec<&[&Call]> = dynamic.chunks(per_page).collect();
    for (p, chunk) in pages.iter().enumerate() {
        let mut records: Vec<serde_json::Value> = chunk.iter().map(|c| json_of(c)).collect();
        if p == 0 && !records.is_empty() {
            records.push(serde_json::json!({"callId": "", "date": "01/01/2026 10:00:00"}));
        }
        let page = serde_json::json!({
            "page": p + 1, "pageTotal": pages.len(), "pageSize": per_page,
            "recordsTotal": dynamic.len(), "records": records,
        });
        let mut w = out.file(&format!("calltouch/calls_page_{}.json", p + 1))?;
        serde_json::to_writer_pretty(&mut w, &page)?;
        w.flush()?;
    }
    // A re-pull of the latest calls as a plain array, with updated durations.
    let repull: Vec<serde_json::Value> = dynamic
        .iter()
        .rev()
        .take(20)
        .map(|c| {
            let mut v = json_of(c);
            v["duration"] = serde_json::json!(c.duration + 5);
            v
        })
        .collect();
    let mut w = out.file("calltouch/calls_repull.json")?;
    serde_json::to_writer(&mut w, &repull)?;
    w.flush()?;
    // Static-number calls: a Windows-1251 CSV with `;`.
    let mut text = String::from(
        "callId;date;callerNumber;duration;successful;uniqueCall;targetCall;callbackCall;source;medium;utmCampaign;city\n",
    );
    for c in calls.iter().filter(|c| c.ya.is_empty()) {
        text.push_str(&format!(
            "{};{};{};{};да;да;{};нет;{};{};{};Москва\n",
            c.id,
            local(c.at).format("%d/%m/%Y %H:%M:%S"),
            c.phone,
            c.duration,
            if c.target { "да" } else { "нет" },
            c.source,
            c.medium,
            c.campaign
        ));
    }
    text.push_str("99999999;не дата;79990000000;10;да;да;да;нет;billboard;offline;;Москва\n");
    let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(&text);
    std::fs::write(out.dir.join("calltouch/calls_offline.csv"), bytes)?;
    Ok(())
}

fn write_spend(out: &Out, start: NaiveDate, as_of: NaiveDate, customers: u64) -> Result<()> {
    let scale = customers as f64 / 1000.0;
    let days: Vec<NaiveDate> = start
        .iter_days()
        .take_while(|d| *d <= as_of + Duration::days(1))
        .collect();
    let mut direct = format!(
        "\"Кампании crmflow ({start} - {as_of})\"\nDate\tCampaignId\tCampaignName\tImpressions\tClicks\tCost\n"
    );
    let mut rows = 0;
    for (n, d) in days.iter().enumerate() {
        for (id, name, base) in [(701, "brand", 900.0), (702, "generic", 1400.0)] {
            let cost = (base * scale * (1.0 + (n % 7) as f64 / 10.0) * 1_000_000.0).round() as u64;
            direct.push_str(&format!(
                "{d}\t{id}\t{name}\t{}\t{}\t{cost}\n",
                1000 + n * 3,
                40 + n % 9
            ));
            rows += 1;
        }
    }
    direct.push_str(&format!("Total rows: {rows}\n"));
    std::fs::create_dir_all(out.dir.join("spend/direct"))?;
    std::fs::write(out.dir.join("spend/direct/direct_report.tsv"), direct)?;

    let mut google = String::from(
        "segments.date,campaign.name,metrics.impressions,metrics.clicks,metrics.cost_micros\n",
    );
    for (n, d) in days.iter().enumerate() {
        let cost = (700.0 * scale * (1.0 + (n % 5) as f64 / 10.0) * 1_000_000.0).round() as u64;
        google.push_str(&format!(
            "{d},search_brand,{},{},{cost}\n",
            800 + n,
            20 + n % 7
        ));
    }
    std::fs::create_dir_all(out.dir.join("spend/google_ads"))?;
    std::fs::write(out.dir.join("spend/google_ads/google_ads.csv"), google)?;

    let mut other = String::from("date;source;medium;campaign;impressions;clicks;cost;currency\n");
    for (n, d) in days.iter().enumerate() {
        let vk = 500.0 * scale * (1.0 + (n % 3) as f64 / 10.0);
        other.push_str(&format!(
            "{};VK;cpc;Промо ВК;{};{};{};RUB\n",
            d.format("%d.%m.%Y"),
            3000 + n,
            30 + n % 4,
            format!("{vk:.2}").replace('.', ",")
        ));
        let tg = 150.0 * scale;
        other.push_str(&format!(
            "{};telegram;messenger;Канал;{};{};{};RUB\n",
            d.format("%d.%m.%Y"),
            900 + n,
            10 + n % 3,
            format!("{tg:.2}").replace('.', ",")
        ));
    }
    let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(&other);
    std::fs::create_dir_all(out.dir.join("spend/other"))?;
    std::fs::write(out.dir.join("spend/other/other_spend.csv"), bytes)?;
    Ok(())
}
