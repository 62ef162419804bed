//! `business_date(ts)` and `business_month(ts)`: the calendar date, and the first day of
//! the month, of a UTC timestamp in the job's business time zone (tz database rules,
//! so Moscow's UTC+4 years are right).

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Date32Builder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn to_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - EPOCH_DAYS_FROM_CE
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

fn map_dates(
    args: ScalarFunctionArgs,
    tz: Tz,
    f: impl Fn(NaiveDate) -> NaiveDate,
) -> Result<ColumnarValue> {
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
    let mut out = Date32Builder::with_capacity(micros.len());
    for v in micros.iter() {
        out.append_option(
            v.and_then(DateTime::<Utc>::from_timestamp_micros)
                .map(|t| to_days(f(t.with_timezone(&tz).date_naive()))),
        );
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
        map_dates(args, self.tz, |d| d.with_day(1).unwrap_or(d))
    }
}
