//! `business_date(ts)` and `business_month(ts)`: the calendar date, and the first day of
//! the month, of a UTC timestamp in the job's business time zone (tz database rules,
//! so Moscow's UTC+4 years are right).

use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Date32Builder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;
const CACHED_DAYS: usize = 1024;

/// Local calendar days (days since 1970-01-01) of UTC instants in one time zone. The
/// tz database is asked once per UTC day met, not once per value: a UTC day whose
/// first and last microsecond have the same UTC offset is taken to have it throughout
/// (no zone has two transitions within a day that cancel out), and the values of a day
/// with a transition are converted one by one. A direct-mapped cache of 1024 UTC days
/// covers nearly three years of data in any row order.
struct LocalDays {
    tz: Tz,
    /// (UTC day, its offset in microseconds when constant over the day).
    days: Vec<(i64, Option<i64>)>,
}

impl LocalDays {
    fn new(tz: Tz) -> Self {
        Self {
            tz,
            days: vec![(i64::MIN, None); CACHED_DAYS],
        }
    }

    /// The local day of `micros`; None outside chrono's range of dates.
    fn of(&mut self, micros: i64) -> Option<i32> {
        let day = micros.div_euclid(MICROS_PER_DAY);
        let slot = day.rem_euclid(CACHED_DAYS as i64) as usize;
        let cached = match self.days.get(slot) {
            Some((d, offset)) if *d == day => *offset,
            _ => {
                let offset = self.constant_offset(day);
                if let Some(entry) = self.days.get_mut(slot) {
                    *entry = (day, offset);
                }
                offset
            }
        };
        let offset = match cached {
            Some(offset) => offset,
            None => self.offset_at(micros)?,
        };
        i32::try_from(micros.checked_add(offset)?.div_euclid(MICROS_PER_DAY)).ok()
    }

    fn offset_at(&self, micros: i64) -> Option<i64> {
        let t = DateTime::<Utc>::from_timestamp_micros(micros)?;
        let offset = self.tz.offset_from_utc_datetime(&t.naive_utc());
        Some(i64::from(offset.fix().local_minus_utc()) * 1_000_000)
    }

    fn constant_offset(&self, day: i64) -> Option<i64> {
        let first = day.checked_mul(MICROS_PER_DAY)?;
        let last = first.checked_add(MICROS_PER_DAY - 1)?;
        let offset = self.offset_at(first)?;
        (self.offset_at(last)? == offset).then_some(offset)
    }
}

/// The first day of the month of a day (days since 1970-01-01), by Howard Hinnant's
/// `civil_from_days` (proleptic Gregorian calendar).
fn first_of_month(days: i32) -> i32 {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_index + 2) / 5 + 1;
    days - (day_of_month as i32 - 1)
}

fn signature() -> Signature {
    Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into()),
            )]),
            TypeSignature::Exact(vec![DataType::Timestamp(TimeUnit::Microsecond, None)]),
            TypeSignature::Exact(vec![DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into()),
            )]),
            TypeSignature::Exact(vec![DataType::Timestamp(TimeUnit::Nanosecond, None)]),
        ],
        Volatility::Immutable,
    )
}

fn map_dates(args: ScalarFunctionArgs, tz: Tz, f: impl Fn(i32) -> i32) -> Result<ColumnarValue> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("expects one timestamp argument");
    };
    let scalar = matches!(arg, ColumnarValue::Scalar(_));
    let array = arg.to_array(args.number_rows)?;
    let micros = datafusion::arrow::compute::cast(
        &array,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    let Some(micros) = micros.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
        return exec_err!("expects a timestamp");
    };
    let mut local = LocalDays::new(tz);
    let mut out = Date32Builder::with_capacity(micros.len());
    for v in micros.iter() {
        out.append_option(v.and_then(|m| local.of(m)).map(&f));
    }
    let result: ArrayRef = Arc::new(out.finish());
    if scalar {
        let d = result
            .as_any()
            .downcast_ref::<Date32Array>()
            .map(|a| a.slice(0, 1));
        if let Some(d) = d {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&d, 0)?,
            ));
        }
    }
    Ok(ColumnarValue::Array(result))
}

/// `business_date(ts) -> DATE`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BusinessDate {
    tz: Tz,
    signature: Signature,
}

impl BusinessDate {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            signature: signature(),
        }
    }
}

impl ScalarUDFImpl for BusinessDate {
    fn name(&self) -> &str {
        "business_date"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_dates(args, self.tz, |d| d)
    }
}

/// `business_month(ts) -> DATE`, the first day of the month.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BusinessMonth {
    tz: Tz,
    signature: Signature,
}

impl BusinessMonth {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            signature: signature(),
        }
    }
}

impl ScalarUDFImpl for BusinessMonth {
    fn name(&self) -> &str {
        "business_month"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_dates(args, self.tz, first_of_month)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, NaiveDate};

    use super::*;

    fn days(d: NaiveDate) -> i32 {
        d.num_days_from_ce() - 719_163
    }

    /// Against chrono, value by value: instants around every transition of zones with
    /// daylight saving time, Moscow's changes of 2011 and 2014, and random instants
    /// from 1900 to 2100, in an order that sends many days to the same cache slot.
    #[test]
    fn local_days_and_months_agree_with_chrono() {
        let zones = [
            chrono_tz::Europe::Moscow,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::UTC,
        ];
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
        // Every hour of 2010..2016 and its edges (transitions are on the hour or so).
        let hour = 3_600_000_000_i64;
        let from = 1_262_304_000_000_000_i64;
        for h in 0..(6 * 366 * 24) {
            let t = from + h * hour;
            instants.extend([t - 1, t, t + 1, t + 30 * 60_000_000]);
        }
        instants.extend([i64::MIN, i64::MAX, -1, 0]);
        for tz in zones {
            let mut local = LocalDays::new(tz);
            for &m in &instants {
                let expected = DateTime::<Utc>::from_timestamp_micros(m)
                    .map(|t| t.with_timezone(&tz).date_naive());
                let got = local.of(m);
                assert_eq!(got, expected.map(days), "{tz} at {m}");
                if let (Some(d), Some(e)) = (got, expected) {
                    let month = e.with_day(1).map(days);
                    assert_eq!(Some(first_of_month(d)), month, "{tz} at {m}");
                }
            }
        }
    }
}
