//! The normalisation rules of `spec/sources.md`, shared by every ingest format.
//!
//! Each function takes one raw field and returns the canonical value or `None`;
//! none of them panics on any input.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;

/// Values that mean "no value" once trimmed, compared case-insensitively.
const PLACEHOLDERS: &[&str] = &[
    "(not set)",
    "(not provided)",
    "<не указано>",
    "‹не указано>",
    "<не заполнено>",
    "‹не заполнено>",
    "-",
];

/// Trims a text value and maps empty, whitespace-only and placeholder values to `None`.
pub fn text(raw: &str) -> Option<&str> {
    let value = trim(raw);
    if value.is_empty() || is_placeholder(value) {
        None
    } else {
        Some(value)
    }
}

/// `str::trim`, with a fast path for the common value that starts and ends with a
/// visible ASCII character (every Unicode white space is either ASCII white space or not
/// ASCII at all). At 1M customers `str::trim` alone took 2% of the message events'
/// ingest CPU.
#[inline]
fn trim(raw: &str) -> &str {
    match raw.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => raw,
        [only] if only.is_ascii_graphic() => raw,
        _ => raw.trim(),
    }
}

fn is_placeholder(value: &str) -> bool {
    // Cheap pre-check: every placeholder starts with one of these characters.
    let first = value.as_bytes()[0];
    if !matches!(first, b'(' | b'<' | b'-' | 0xE2) {
        return false;
    }
    let lower = value.to_lowercase();
    PLACEHOLDERS.contains(&lower.as_str())
}

/// Normalises a phone to E.164 with the default region RU, exactly as the spec says:
/// keep digits and a leading `+`; with `+`, 8 to 15 digits (exactly 11 when they start
/// with `7`); without, 11 digits starting with `7`/`8`, or 10 starting with `3`,`4`,`8`,`9`.
pub fn phone(raw: &str) -> Option<String> {
    let value = text(raw)?;
    let plus = value.starts_with('+');
    // `+` and the digits, built in the string that is returned.
    let mut e164 = String::with_capacity(16);
    e164.push('+');
    e164.extend(value.chars().filter(char::is_ascii_digit));
    let n = e164.len() - 1;
    let first = e164.as_bytes().get(1).copied()?;
    if plus {
        let valid = (8..=15).contains(&n) && (first != b'7' || n == 11);
        return valid.then_some(e164);
    }
    match (n, first) {
        (11, b'7' | b'8') => {
            e164.replace_range(1..2, "7");
            Some(e164)
        }
        (10, b'3' | b'4' | b'8' | b'9') => {
            e164.insert(1, '7');
            Some(e164)
        }
        _ => None,
    }
}

/// Trims and lower-cases an email; `None` unless it has exactly one `@`, no whitespace,
/// a non-empty local part and a domain with a dot. An ASCII address is checked in one
/// pass over its bytes; other text goes through [`email_by_chars`]. Its five passes
/// took 4.3% of the message events' ingest.
pub fn email(raw: &str) -> Option<Cow<'_, str>> {
    let value = text(raw)?;
    if !value.is_ascii() {
        return email_by_chars(value);
    }
    let bytes = value.as_bytes();
    let (mut at, mut upper) = (None, false);
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'@' if at.is_some() => return None,
            b'@' => at = Some(i),
            b'A'..=b'Z' => upper = true,
            // `char::is_whitespace` of the ASCII range.
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => return None,
            _ => {}
        }
    }
    let at = at.filter(|at| *at > 0)?;
    if !bytes[at + 1..].contains(&b'.') {
        return None;
    }
    Some(match upper {
        true => Cow::Owned(value.to_ascii_lowercase()),
        false => Cow::Borrowed(value),
    })
}

/// [`email`] of a trimmed value char by char: for text beyond ASCII (and the tests).
fn email_by_chars(value: &str) -> Option<Cow<'_, str>> {
    let value = if value
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        Cow::Owned(value.to_lowercase())
    } else {
        Cow::Borrowed(value)
    };
    let (local, domain) = value.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !value.chars().any(char::is_whitespace);
    valid.then_some(value)
}

/// A boolean of the exports: `true`/`1`/`да`/`yes` are true; anything else, empty included, is false.
pub fn boolean(raw: &str) -> bool {
    let v = raw.trim();
    v.eq_ignore_ascii_case("true")
        || v == "1"
        || v.eq_ignore_ascii_case("yes")
        // every spelling whose `to_lowercase()` is `да`, without allocating one
        || matches!(v, "да" | "Да" | "дА" | "ДА")
}

/// A number that may use a decimal comma (`1234,50`) and spaces as thousand separators.
pub fn decimal(raw: &str) -> Option<f64> {
    let value = text(raw)?;
    // ASCII without a comma or whitespace parses as it is: the cleaned copy of every
    // value (a `String` each) took 7.7% of the CPU of Shopify's ingest at 1M customers.
    let plain = value
        .bytes()
        .all(|b| b.is_ascii() && !matches!(b, b',' | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'));
    match plain {
        true => value.parse::<f64>().ok().filter(|v| v.is_finite()),
        false => cleaned_decimal(value),
    }
}

/// [`decimal`] of a value with a comma, whitespace or text beyond ASCII: whitespace and
/// no-break spaces dropped, the comma read as a decimal point.
fn cleaned_decimal(value: &str) -> Option<f64> {
    let cleaned: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An integer, accepting a trailing `.0` and a decimal comma written by spreadsheets.
pub fn integer(raw: &str) -> Option<i64> {
    let value = text(raw)?;
    value.parse::<i64>().ok().or_else(|| {
        decimal(value)
            .filter(|v| v.fract() == 0.0)
            .map(|v| v as i64)
    })
}

/// Local-time layouts seen in the exports, tried in order.
const LOCAL_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d %H:%M",
];

/// Layouts that carry an explicit offset (Shopify `2026-11-20 14:03:11 +0300`, RFC 3339).
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%:z",
];

/// Parses a timestamp to microseconds since the epoch (UTC). A local time without an
/// offset is read in `tz`; an ambiguous local time (autumn clock change) takes the
/// earlier instant, a non-existent one (spring gap) is unparseable.
pub fn timestamp_micros(raw: &str, tz: Tz) -> Option<i64> {
    let value = text(raw)?;
    match iso_timestamp_micros(value.as_bytes(), tz) {
        Some(parsed) => parsed,
        None => timestamp_micros_by_formats(value, tz),
    }
}

/// [`timestamp_micros`] of a trimmed value by chrono's parser and the format lists.
fn timestamp_micros_by_formats(value: &str, tz: Tz) -> Option<i64> {
    if (value.ends_with('Z') || value.ends_with("+00:00"))
        && let Ok(dt) = DateTime::parse_from_rfc3339(value)
    {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    for f in OFFSET_FORMATS {
        if let Ok(dt) = DateTime::parse_from_str(value, f) {
            return Some(dt.with_timezone(&Utc).timestamp_micros());
        }
    }
    for f in LOCAL_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, f) {
            return local_to_utc_micros(naive, tz);
        }
    }
    None
}

/// The fast path of [`timestamp_micros`] for the shapes nearly every export writes:
/// `YYYY-MM-DD[ T]HH:MM:SS`, an optional fraction of 1 to 9 digits, then nothing (local
/// time), `Z`, `±HH:MM` (after `T`) or ` ±HHMM` (after a space, Shopify). `None`: not
/// one of these shapes, the format list decides; `Some(result)`: exactly what the
/// format list would return (a property test holds the two paths equal).
fn iso_timestamp_micros(v: &[u8], tz: Tz) -> Option<Option<i64>> {
    let digit = |i: usize| -> Option<u32> {
        let d = v.get(i)?.wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let two = |i: usize| -> Option<u32> { Some(digit(i)? * 10 + digit(i + 1)?) };
    if v.len() < 19 || v[4] != b'-' || v[7] != b'-' || v[13] != b':' || v[16] != b':' {
        return None;
    }
    let t_separator = match v[10] {
        b'T' => true,
        b' ' => false,
        _ => return None,
    };
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if second > 59 {
        return None; // a leap second: the format list's rules apply
    }
    let mut rest = &v[19..];
    let mut nanos = 0u32;
    let mut nanos_digits = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for b in &fraction[..digits] {
            nanos = nanos * 10 + u32::from(b - b'0');
        }
        nanos *= 10u32.pow(9 - digits as u32);
        nanos_digits = digits;
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        [] => None,
        [b'Z'] if t_separator => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if t_separator => {
            Some(signed_offset(*sign, [*h1, *h2, *m1, *m2])?)
        }
        [b' ', sign @ (b'+' | b'-'), h1, h2, m1, m2] if !t_separator && nanos_digits == 0 => {
            Some(signed_offset(*sign, [*h1, *h2, *m1, *m2])?)
        }
        _ => return None,
    };
    // Seconds are at most 59 and the fraction below one second: no leap second here.
    let (Some(days), true) = (civil_days(year, month, day), hour < 24 && minute < 60) else {
        return Some(None);
    };
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let micros = seconds * 1_000_000 + i64::from(nanos / 1000);
    Some(match offset_seconds {
        None => crate::zone::local_micros_to_utc(micros, tz),
        Some(offset) => Some(micros - i64::from(offset) * 1_000_000),
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date of years 0 to 9999, `None` when
/// there is no such day; the arithmetic of Howard Hinnant's `days_from_civil`. Building
/// a chrono date and time and converting it back took 2.9% of the message events'
/// ingest CPU at 1M customers (perf); with this, reading a timestamp counts 13% fewer
/// instructions (callgrind, 527k message events).
fn civil_days(year: u32, month: u32, day: u32) -> Option<i64> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days || year > 9999 {
        return None;
    }
    // Years from March: January and February count with the year before.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * i64::from((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// `±HHMM` as seconds east of UTC; `None` when not digits or out of chrono's range.
fn signed_offset(sign: u8, hhmm: [u8; 4]) -> Option<i32> {
    if !hhmm.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d = |i: usize| i32::from(hhmm[i] - b'0');
    let (hours, minutes) = (d(0) * 10 + d(1), d(2) * 10 + d(3));
    if minutes > 59 || hours > 23 {
        return None;
    }
    let seconds = hours * 3600 + minutes * 60;
    Some(if sign == b'-' { -seconds } else { seconds })
}

/// Interprets a naive local time in `tz`, see [`timestamp_micros`].
pub fn local_to_utc_micros(naive: NaiveDateTime, tz: Tz) -> Option<i64> {
    crate::zone::local_to_utc_micros(naive, tz)
}

/// Parses a calendar date: `YYYY-MM-DD`, `YYYYMMDD`, `DD.MM.YYYY`.
pub fn date(raw: &str) -> Option<NaiveDate> {
    let value = text(raw)?;
    iso_date_digits(value).unwrap_or_else(|| date_by_formats(value))
}

/// A trimmed date value read by chrono's formats, the first that fits.
fn date_by_formats(value: &str) -> Option<NaiveDate> {
    ["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(value, f).ok())
}

/// The common shapes `YYYY-MM-DD` and `YYYYMMDD` (GA4's `event_date`) read without
/// chrono's format parser, which took 2.4% of GA4's ingest: `Some(date)` or
/// `Some(None)` (no such day, as the formats would decide), `None` for another shape.
fn iso_date_digits(value: &str) -> Option<Option<NaiveDate>> {
    let b = value.as_bytes();
    let (year, month, day) = match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' => (&b[..4], &b[5..7], &b[8..]),
        8 => (&b[..4], &b[4..6], &b[6..]),
        _ => return None,
    };
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(year)?, number(month)?, number(day)?);
    Some(NaiveDate::from_ymd_opt(year as i32, month, day))
}

/// Days since 1970-01-01 of a date, the Arrow `Date32` value.
pub fn date32(d: NaiveDate) -> i32 {
    const EPOCH_DAYS_FROM_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&d) - EPOCH_DAYS_FROM_CE
}

/// The UTC instant (microseconds) of the last microsecond of `day` in `tz`: the cut-off of a run.
pub fn end_of_day_micros(day: NaiveDate, tz: Tz) -> i64 {
    let next = day.succ_opt().unwrap_or(day);
    start_of_day_micros(next, tz) - 1
}

/// The UTC instant (microseconds) at which `day` starts in `tz`.
pub fn start_of_day_micros(day: NaiveDate, tz: Tz) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A day that starts in a DST gap starts at the first valid instant after it.
    (0..4)
        .find_map(|h| local_to_utc_micros(midnight + chrono::Duration::hours(h), tz))
        .unwrap_or_else(|| midnight.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSK: Tz = chrono_tz::Europe::Moscow;

    /// [`date`] by chrono's formats alone, without the fast path.
    fn slow_date(raw: &str) -> Option<NaiveDate> {
        text(raw).and_then(date_by_formats)
    }

    proptest! {
        #[test]
        fn the_fast_trim_trims_as_str_does(raw in "[ \t\u{a0}\u{3000}]{0,2}[a-z ]{0,3}[ \t\u{a0}\u{3000}]{0,2}|\\PC{0,6}") {
            prop_assert_eq!(trim(&raw), raw.trim());
        }

        #[test]
        fn the_fast_date_shapes_read_as_the_formats_do(raw in "[0-9]{4}-?[0-9]{2}-?[0-9]{2}|[0-9 .x+-]{8,10}") {
            prop_assert_eq!(date(&raw), slow_date(&raw));
        }
    }

    #[test]
    fn dates_of_the_fast_shapes() {
        for raw in [
            "2026-11-20",
            "20261120",
            "2026-02-30",
            "20260230",
            "2024-02-29",
            "0000-01-01",
            "2026-1-05",
            "20.11.2026",
        ] {
            assert_eq!(date(raw), slow_date(raw), "{raw}");
        }
        assert_eq!(date("20261120"), NaiveDate::from_ymd_opt(2026, 11, 20));
        assert_eq!(date("2026-02-30"), None);
    }

    #[test]
    fn placeholders_are_null_after_trim_case_insensitive() {
        for p in [
            "",
            "  ",
            "\t",
            "(not set)",
            " (NOT SET) ",
            "(not provided)",
            "<не указано>",
            "‹не указано>",
            "<НЕ ЗАПОЛНЕНО>",
            "‹не заполнено>",
            "-",
            " - ",
        ] {
            assert_eq!(text(p), None, "{p:?}");
        }
        assert_eq!(text(" yandex "), Some("yandex"));
        assert_eq!(text("--"), Some("--"));
        assert_eq!(text("(direct)"), Some("(direct)"));
    }

    #[test]
    fn phones_follow_the_spec_rule() {
        for raw in [
            "8 912 345-67-89",
            "+7 (912) 345-67-89",
            "79123456789",
            "9123456789",
        ] {
            assert_eq!(phone(raw).as_deref(), Some("+79123456789"), "{raw}");
        }
        assert_eq!(phone("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        assert_eq!(phone("+7 912 345 67 8"), None, "+7 needs exactly 11 digits");
        assert_eq!(phone("+1234567"), None, "7 digits after + is too short");
        assert_eq!(phone("+12345678").as_deref(), Some("+12345678"));
        assert_eq!(phone("+1234567890123456"), None, "16 digits is too long");
        assert_eq!(phone("4951234567").as_deref(), Some("+74951234567"));
        assert_eq!(phone("1234567890"), None, "10 digits starting with 1");
        assert_eq!(phone("69123456789"), None, "11 digits starting with 6");
        assert_eq!(phone("(not set)"), None);
        assert_eq!(phone("abc"), None);
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_validated() {
        assert_eq!(
            email(" Anna@Example.COM ").as_deref(),
            Some("anna@example.com")
        );
        assert_eq!(email("a@b"), None, "domain without a dot");
        assert_eq!(email("@b.ru"), None, "empty local part");
        assert_eq!(email("a@@b.ru"), None);
        assert_eq!(email("a b@c.ru"), None);
        assert_eq!(email("a@b@c.ru"), None);
        assert_eq!(email("-"), None);
        assert_eq!(
            email("first.last+tag@gmail.com").as_deref(),
            Some("first.last+tag@gmail.com")
        );
    }

    #[test]
    fn booleans_only_true_values_are_true() {
        for t in ["true", "TRUE", "1", "да", "Да", "yes"] {
            assert!(boolean(t), "{t}");
        }
        for f in ["false", "0", "нет", "", "maybe", "2"] {
            assert!(!boolean(f), "{f}");
        }
    }

    #[test]
    fn decimals_accept_comma_and_spaces() {
        assert_eq!(decimal("1234,50"), Some(1234.5));
        assert_eq!(decimal("1 234,50"), Some(1234.5));
        assert_eq!(decimal("99"), Some(99.0));
        assert_eq!(decimal("-"), None);
        assert_eq!(decimal("NaN"), None);
        assert_eq!(integer("12"), Some(12));
        assert_eq!(integer("12.0"), Some(12));
        assert_eq!(integer("12.5"), None);
    }

    #[test]
    fn local_times_use_the_tz_database() {
        // 2013: Moscow was UTC+4 all year.
        let t = timestamp_micros("2013-07-01 12:00:00", MSK).unwrap();
        assert_eq!(
            DateTime::<Utc>::from_timestamp_micros(t)
                .unwrap()
                .to_rfc3339(),
            "2013-07-01T08:00:00+00:00"
        );
        let t = timestamp_micros("30/06/2023 18:11:56", MSK).unwrap();
        assert_eq!(
            DateTime::<Utc>::from_timestamp_micros(t)
                .unwrap()
                .to_rfc3339(),
            "2023-06-30T15:11:56+00:00"
        );
        let t = timestamp_micros("2026-11-20 14:03:11 +0300", MSK).unwrap();
        assert_eq!(
            DateTime::<Utc>::from_timestamp_micros(t)
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T11:03:11+00:00"
        );
        let t = timestamp_micros("2026-11-20T11:03:11Z", MSK).unwrap();
        assert_eq!(
            DateTime::<Utc>::from_timestamp_micros(t)
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T11:03:11+00:00"
        );
        assert_eq!(timestamp_micros("yesterday", MSK), None);
        assert_eq!(timestamp_micros("", MSK), None);
    }

    #[test]
    fn business_day_bounds() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let end = end_of_day_micros(d, MSK);
        // Business dates are crate::zone::LocalDays's.
        let mut days = crate::zone::LocalDays::new(MSK);
        assert_eq!(days.of(end), Some(date32(d)));
        assert_eq!(days.of(end + 1), d.succ_opt().map(date32));
        assert_eq!(date32(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }

    proptest::proptest! {
        #[test]
        fn normalisers_never_panic(s in "\\PC*") {
            let _ = text(&s);
            let _ = phone(&s);
            let _ = email(&s);
            let _ = decimal(&s);
            let _ = integer(&s);
            let _ = timestamp_micros(&s, MSK);
            let _ = date(&s);
        }

    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Numbers parsed as they are (ASCII without a comma or whitespace) read as the
        /// cleaned copy of every value reads, on text of digits, signs, exponents,
        /// commas, dots, ASCII and other whitespace, and words `f64` also parses.
        #[test]
        fn plain_decimals_equal_the_cleaned_copy(
            raw in "([0-9+eE.,-]|[ \t\u{b}\u{c}\r\u{a0}\u{85}\u{2009}]|inf|NaN|x){0,12}"
        ) {
            let cleaned = text(&raw).and_then(cleaned_decimal);
            proptest::prop_assert_eq!(decimal(&raw).map(f64::to_bits), cleaned.map(f64::to_bits), "{:?}", raw);
        }

        /// `boolean` agrees with comparing the lower-cased value with `да`, on every
        /// case of the words it accepts and near them.
        #[test]
        fn booleans_equal_the_lower_cased_comparison(raw in "[ дДаАtTrRuUeE1yYsS]{0,5}") {
            let v = raw.trim();
            let lowered = v.to_lowercase();
            let expected = v.eq_ignore_ascii_case("true")
                || v == "1"
                || v.eq_ignore_ascii_case("yes")
                || lowered == "да";
            proptest::prop_assert_eq!(boolean(&raw), expected, "{:?}", raw);
        }

        /// The one-pass check of ASCII addresses agrees with the char by char one, on
        /// text made of the characters that decide: `@`, dots, cases, ASCII and other
        /// whitespace, and letters beyond ASCII.
        #[test]
        fn ascii_emails_equal_the_char_by_char_check(raw in "[aZ@. \t\u{b}\u{c}\r\u{a0}\u{85}Ä_-]{0,12}") {
            let by_chars = text(&raw).and_then(email_by_chars);
            proptest::prop_assert_eq!(email(&raw), by_chars, "{:?}", raw);
        }

        /// The fast path agrees with chrono's format list on every shape near the ones
        /// it takes: valid and invalid calendar values, DST gaps and overlaps (Berlin),
        /// fractions of 0 to 10 digits, every offset spelling and separator.
        #[test]
        fn fast_timestamps_equal_the_format_list(
            year in prop_oneof![Just(2026u32), 0u32..10000],
            month in 0u32..14, day in 0u32..33, hour in 0u32..26, minute in 0u32..61,
            second in 0u32..62,
            separator in prop_oneof![4 => Just("T"), 4 => Just(" "), 1 => Just("t"), 1 => Just("_")],
            fraction in prop_oneof![Just(String::new()), "\\.[0-9]{0,10}", "\\.[0-9a]{1,3}"],
            offset in prop_oneof![
                Just(String::new()), Just("Z".to_string()), Just("z".to_string()),
                "[+-][0-2][0-9]:[0-6][0-9]", " [+-][0-2][0-9][0-6][0-9]",
                "[+-][0-2][0-9][0-6][0-9]", " [+-][0-2][0-9]:[0-6][0-9]", " Z", "[+-]0[0-9]:?",
            ],
            tz in prop_oneof![Just(MSK), Just(chrono_tz::Europe::Berlin), Just(chrono_tz::UTC)],
        ) {
            let raw = format!(
                "{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}{fraction}{offset}"
            );
            let fast = iso_timestamp_micros(raw.as_bytes(), tz);
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(fast, timestamp_micros_by_formats(&raw, tz), "{}", raw);
            }
            proptest::prop_assert_eq!(timestamp_micros(&raw, tz), timestamp_micros_by_formats(&raw, tz));
        }
    }

    #[test]
    fn civil_days_count_as_chrono_does() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for year in (0..=2500).chain(9990..=10_000) {
            for month in 0..=13 {
                for day in 0..=32 {
                    let chrono = NaiveDate::from_ymd_opt(year as i32, month, day)
                        .filter(|_| year <= 9999)
                        .map(|d| (d - epoch).num_days());
                    assert_eq!(civil_days(year, month, day), chrono, "{year}-{month}-{day}");
                }
            }
        }
    }

    #[test]
    fn fast_timestamps_take_the_common_shapes() {
        for raw in [
            "2026-11-20 14:03:11",
            "2026-11-20T14:03:11",
            "2026-11-20T14:03:11.123456",
            "2026-11-20 14:03:11.5",
            "2026-11-20T14:03:11Z",
            "2026-11-20T14:03:11.250Z",
            "2026-11-20T14:03:11+03:00",
            "2026-11-20 14:03:11 +0300",
            "2026-03-29 02:30:00",
        ] {
            let fast = iso_timestamp_micros(raw.as_bytes(), chrono_tz::Europe::Berlin);
            assert!(fast.is_some(), "{raw} not on the fast path");
            assert_eq!(
                fast.flatten(),
                timestamp_micros_by_formats(raw, chrono_tz::Europe::Berlin),
                "{raw}"
            );
        }
    }
}
