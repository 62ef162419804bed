//! `channel_path(channel, order_key [, tiebreak])`: the channels of a group in the order
//! of `(order_key, tiebreak)` (NULL keys last), joined by `' > '`, the path format that
//! Markov tools read. NULL channels are skipped; a group of NULL channels gives `''`.
//!
//! The same result as `array_to_string(array_agg(channel ORDER BY order_key, tiebreak),
//! ' > ')`, which in DataFusion 55 keeps every value as a `ScalarValue` with its sort
//! keys: at 100k customers that took 16 s and 2.7 GB for `attribution_paths`. This one
//! keeps `(key, tiebreak, channel)` triples and sorts each group once.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The separator between channels.
pub const SEPARATOR: &str = " > ";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ChannelPath {
    signature: Signature,
}

impl ChannelPath {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ChannelPath {
    fn default() -> Self {
        Self::new()
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
    )
}

fn is_key(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Null
        )
}

impl AggregateUDFImpl for ChannelPath {
    fn name(&self) -> &str {
        "channel_path"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [c, k] if is_text(c) && is_key(k) => Ok(vec![DataType::Utf8, DataType::Int64]),
            [c, k, t] if is_text(c) && is_key(k) && is_text(t) => {
                Ok(vec![DataType::Utf8, DataType::Int64, DataType::Utf8])
            }
            _ => exec_err!(
                "channel_path(channel text, order_key integer|timestamp [, tiebreak text]): got {arg_types:?}"
            ),
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(PathParts::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_keys", args.name),
                list(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_ties", args.name),
                list(DataType::Utf8),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_channels", args.name),
                list(DataType::Utf8),
                true,
            )),
        ])
    }
}

/// The touches of one group: (order key, tiebreak, channel).
#[derive(Debug, Default)]
pub struct PathParts {
    items: Vec<(Option<i64>, Option<String>, String)>,
    text_bytes: usize,
}

impl PathParts {
    fn push(&mut self, key: Option<i64>, tie: Option<&str>, channel: &str) {
        self.text_bytes += channel.len() + tie.map_or(0, str::len);
        self.items
            .push((key, tie.map(str::to_string), channel.to_string()));
    }

    fn add(&mut self, channels: &StringArray, keys: &Int64Array, ties: Option<&StringArray>) {
        for i in 0..channels.len() {
            if channels.is_null(i) {
                continue;
            }
            let key = keys.is_valid(i).then(|| keys.value(i));
            let tie = ties.and_then(|t| t.is_valid(i).then(|| t.value(i)));
            self.push(key, tie, channels.value(i));
        }
    }

    /// The joined path.
    pub fn path(&mut self) -> String {
        // NULLs last, as ORDER BY ... ASC does.
        self.items.sort_by(|a, b| {
            (a.0.is_none(), a.0, a.1.is_none(), &a.1).cmp(&(
                b.0.is_none(),
                b.0,
                b.1.is_none(),
                &b.1,
            ))
        });
        let channels: Vec<&str> = self.items.iter().map(|(_, _, c)| c.as_str()).collect();
        channels.join(SEPARATOR)
    }
}

impl Accumulator for PathParts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [c, k] => self.add(c.as_string::<i32>(), k.as_primitive::<Int64Type>(), None),
            [c, k, t] => self.add(
                c.as_string::<i32>(),
                k.as_primitive::<Int64Type>(),
                Some(t.as_string::<i32>()),
            ),
            _ => return exec_err!("channel_path expects two or three arguments"),
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Utf8(Some(self.path())))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.items.capacity() * size_of::<(Option<i64>, Option<String>, String)>()
            + self.text_bytes
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let keys: Int64Array = self.items.iter().map(|(k, _, _)| *k).collect();
        let ties: StringArray = self.items.iter().map(|(_, t, _)| t.as_deref()).collect();
        let channels: StringArray = self
            .items
            .iter()
            .map(|(_, _, c)| Some(c.as_str()))
            .collect();
        Ok(vec![
            SingleRowListArrayBuilder::new(Arc::new(keys)).build_list_scalar(),
            SingleRowListArrayBuilder::new(Arc::new(ties)).build_list_scalar(),
            SingleRowListArrayBuilder::new(Arc::new(channels)).build_list_scalar(),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [keys, ties, channels] = states else {
            return exec_err!("channel_path state has three columns");
        };
        let (keys, ties, channels) = (
            keys.as_list::<i32>(),
            ties.as_list::<i32>(),
            channels.as_list::<i32>(),
        );
        for row in 0..channels.len() {
            if channels.is_null(row) {
                continue;
            }
            let (k, t, c) = (keys.value(row), ties.value(row), channels.value(row));
            self.add(
                c.as_string::<i32>(),
                k.as_primitive::<Int64Type>(),
                Some(t.as_string::<i32>()),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_key_then_tiebreak_with_nulls_last_and_skips_null_channels() {
        let mut parts = PathParts::default();
        let channels = StringArray::from(vec![Some("C"), Some("A"), None, Some("B"), Some("Z")]);
        let keys = Int64Array::from(vec![Some(3), Some(1), Some(0), Some(1), None]);
        let ties = StringArray::from(vec![Some("x"), Some("b"), Some("a"), Some("a"), Some("a")]);
        parts.add(&channels, &keys, Some(&ties));
        assert_eq!(parts.path(), "B > A > C > Z");
    }

    #[test]
    fn state_round_trips_through_merge() {
        let mut left = PathParts::default();
        left.add(
            &StringArray::from(vec!["Paid Search", "Direct"]),
            &Int64Array::from(vec![2, 9]),
            None,
        );
        let state = left.state().expect("state");
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().expect("array")).collect();
        let mut right = PathParts::default();
        right.add(
            &StringArray::from(vec!["Email"]),
            &Int64Array::from(vec![5]),
            None,
        );
        right.merge_batch(&arrays).expect("merge");
        assert_eq!(right.path(), "Paid Search > Email > Direct");
    }
}
