//! Time-zone conversions asked of the tz database once per day instead of once per value,
//! both ways: UTC instants to local calendar days ([`LocalDays`], the business date of a
//! row) and local wall times to UTC instants ([`local_to_utc_micros`], exports that write
//! local times).
//!
//! A day whose first and last moment have the same UTC offset is taken to have it
//! throughout: no zone of the tz database has two transitions within one day that cancel
//! out. Values on a day with a transition are converted one by one, exactly as chrono
//! does. Direct-mapped caches of 1024 days cover nearly three years of data in any row
//! order; tests check both directions value by value against chrono around every
//! transition of several zones.

use std::cell::RefCell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const CACHED_DAYS: usize = 1024;

/// A direct-mapped cache of [`CACHED_DAYS`] days: a day's UTC offset in microseconds
/// when it is constant over the day, `None` when the day has a transition.
struct DayOffsets {
    days: Vec<(i64, Option<i64>)>,
}

impl DayOffsets {
    fn new() -> Self {
        Self {
            days: vec![(i64::MIN, None); CACHED_DAYS],
        }
    }

    /// The cached offset of `day`, computed by `constant_offset` on a miss.
    fn of(&mut self, day: i64, constant_offset: impl FnOnce() -> Option<i64>) -> Option<i64> {
        let slot = day.rem_euclid(CACHED_DAYS as i64) as usize;
        match self.days.get(slot) {
            Some((d, offset)) if *d == day => *offset,
            _ => {
                let offset = constant_offset();
                if let Some(entry) = self.days.get_mut(slot) {
                    *entry = (day, offset);
                }
                offset
            }
        }
    }
}

/// Local calendar days (days since 1970-01-01) of UTC instants in one time zone.
pub struct LocalDays {
    tz: Tz,
    /// By UTC day.
    offsets: DayOffsets,
}

impl LocalDays {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            offsets: DayOffsets::new(),
        }
    }

    /// The local day of `micros` (days since 1970-01-01, Arrow's `Date32`); `None` outside
    /// chrono's range of dates.
    pub fn of(&mut self, micros: i64) -> Option<i32> {
        let day = micros.div_euclid(MICROS_PER_DAY);
        let tz = self.tz;
        let offset = match self.offsets.of(day, || constant_utc_offset(tz, day)) {
            Some(offset) => offset,
            None => offset_at(tz, micros)?,
        };
        i32::try_from(micros.checked_add(offset)?.div_euclid(MICROS_PER_DAY)).ok()
    }
}

/// The offset of `tz` at a UTC instant, in microseconds.
fn offset_at(tz: Tz, micros: i64) -> Option<i64> {
    let t = DateTime::<Utc>::from_timestamp_micros(micros)?;
    let offset = tz.offset_from_utc_datetime(&t.naive_utc());
    Some(i64::from(offset.fix().local_minus_utc()) * 1_000_000)
}

/// The offset of a UTC day when its first and last microsecond have the same one.
fn constant_utc_offset(tz: Tz, day: i64) -> Option<i64> {
    let first = day.checked_mul(MICROS_PER_DAY)?;
    let last = first.checked_add(MICROS_PER_DAY - 1)?;
    let offset = offset_at(tz, first)?;
    (offset_at(tz, last)? == offset).then_some(offset)
}

/// The offset of a local day when its first and last moment have the same single one.
fn constant_local_offset(tz: Tz, date: NaiveDate) -> Option<i64> {
    let single = |t: NaiveDateTime| match tz.offset_from_local_datetime(&t) {
        chrono::LocalResult::Single(o) => Some(i64::from(o.fix().local_minus_utc())),
        _ => None,
    };
    let first = single(date.and_hms_opt(0, 0, 0)?)?;
    let last = single(date.and_hms_micro_opt(23, 59, 59, 999_999)?)?;
    (first == last).then_some(first * 1_000_000)
}

/// A local wall time in `tz` to UTC microseconds. A time that occurs twice (clocks set
/// back) takes its earliest instant; a time that does not occur (clocks set forward)
/// is `None`. Exactly chrono's `from_local_datetime(..).earliest()`, with the answer for
/// each local day cached per thread.
pub fn local_to_utc_micros(naive: NaiveDateTime, tz: Tz) -> Option<i64> {
    local_micros_to_utc(naive.and_utc().timestamp_micros(), tz)
}

/// [`local_to_utc_micros`] of a wall time given as microseconds since 1970-01-01 00:00
/// local time.
pub fn local_micros_to_utc(local: i64, tz: Tz) -> Option<i64> {
    thread_local! {
        /// By local day, for the zone of the last call.
        static OFFSETS: RefCell<Option<(Tz, DayOffsets)>> = const { RefCell::new(None) };
    }
    let day = local.div_euclid(MICROS_PER_DAY);
    let cached = OFFSETS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let offsets = match cell.as_mut() {
            Some((zone, offsets)) if *zone == tz => offsets,
            _ => &mut cell.insert((tz, DayOffsets::new())).1,
        };
        offsets.of(day, || {
            let date = DateTime::from_timestamp_micros(local)?.date_naive();
            constant_local_offset(tz, date)
        })
    });
    match cached {
        Some(offset) => local.checked_sub(offset),
        None => by_chrono(DateTime::from_timestamp_micros(local)?.naive_utc(), tz),
    }
}

/// [`local_to_utc_micros`] without the cache: chrono, value by value.
fn by_chrono(naive: NaiveDateTime, tz: Tz) -> Option<i64> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|dt| dt.with_timezone(&Utc).timestamp_micros())
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::*;

    const ZONES: [Tz; 6] = [
        chrono_tz::Europe::Moscow,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Asia::Kathmandu,
        chrono_tz::UTC,
    ];

    fn days(d: NaiveDate) -> i32 {
        d.num_days_from_ce() - 719_163
    }

    /// Random instants from 1900 to 2100, in an order that sends many days to the same
    /// cache slot, and every hour of 2010..2016 with its edges (transitions are on the
    /// hour or so), and the extremes.
    fn instants() -> Vec<i64> {
        let mut instants = vec![];
        let mut state = 11_u64;
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // 1900..2100 in microseconds.
            let span = 6_311_390_400_000_000_u64;
            instants.push((state >> 4) as i64 % span as i64 - 2_208_988_800_000_000);
        }
        let hour = 3_600_000_000_i64;
        let from = 1_262_304_000_000_000_i64;
        for h in 0..(6 * 366 * 24) {
            let t = from + h * hour;
            instants.extend([t - 1, t, t + 1, t + 30 * 60_000_000]);
        }
        instants.extend([i64::MIN, i64::MAX, -1, 0]);
        instants
    }

    /// Against chrono, value by value, in zones with daylight saving time, Moscow's
    /// changes of 2011 and 2014, half-hour and 45-minute offsets.
    #[test]
    fn local_days_agree_with_chrono() {
        let instants = instants();
        for tz in ZONES {
            let mut local = LocalDays::new(tz);
            for &m in &instants {
                let expected = DateTime::<Utc>::from_timestamp_micros(m)
                    .map(|t| days(t.with_timezone(&tz).date_naive()));
                assert_eq!(local.of(m), expected, "{tz} at {m}");
            }
        }
    }

    /// The same instants read as local wall times (the gaps and repeated hours of every
    /// transition included), against chrono's earliest instant.
    #[test]
    fn local_times_to_utc_agree_with_chrono() {
        let instants = instants();
        for tz in ZONES {
            for &m in &instants {
                let Some(naive) = DateTime::<Utc>::from_timestamp_micros(m).map(|t| t.naive_utc())
                else {
                    continue;
                };
                assert_eq!(
                    local_to_utc_micros(naive, tz),
                    by_chrono(naive, tz),
                    "{tz} at {naive}"
                );
            }
        }
    }
}
