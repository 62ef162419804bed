//! `business_date(ts)` and `business_month(ts)`: the calendar date, and the first day of
//! the month, of a UTC timestamp in the job's business time zone (tz database rules,
//! so Moscow's UTC+4 years are right).

use std::sync::Arc;

use chrono_tz::Tz;
use crmflow_core::zone::LocalDays;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Date32Builder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

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
    use chrono::{DateTime, Datelike, NaiveDate, Utc};

    use super::*;

    fn days(d: NaiveDate) -> i32 {
        d.num_days_from_ce() - 719_163
    }

    /// Against chrono, value by value: the month of every hour (and its edges) of
    /// 2010..2016 in zones with daylight saving time and Moscow's changes of 2011 and
    /// 2014 (the local days themselves are tested in `crmflow_core::zone`).
    #[test]
    fn local_months_agree_with_chrono() {
        let zones = [
            chrono_tz::Europe::Moscow,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
        ];
        let hour = 3_600_000_000_i64;
        let from = 1_262_304_000_000_000_i64;
        let instants: Vec<i64> = (0..(6 * 366 * 24))
            .flat_map(|h| [from + h * hour - 1, from + h * hour])
            .collect();
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
