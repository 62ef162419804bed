//! `markov_removal_effects(path, conversions, nulls)`: first-order Markov attribution
//! computed exactly. Aggregates paths (a list of channels, how many times it ended in a
//! conversion and how many times in `null`) into transition counts from `start` through
//! the channels to `conversion`/`null`, solves the absorbing chain as a linear system for
//! `P` = probability of reaching `conversion` from `start`, and for every channel `c` the
//! same with every transition into `c` sent to `null`: `RE_c = 1 - P_without_c / P`.
//!
//! Returns a list of `{channel, removal_effect, share, p_conversion}`, channels sorted;
//! `share = RE_c / sum(RE)`, all shares 0 when `P` is 0 or every removal effect is 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, ListArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};

const START: &str = "(start)";
const CONVERSION: &str = "(conversion)";
const NULL: &str = "(null)";

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("channel", DataType::Utf8, false),
        Field::new("removal_effect", DataType::Float64, false),
        Field::new("share", DataType::Float64, false),
        Field::new("p_conversion", DataType::Float64, false),
    ])
}

fn transition_fields() -> Fields {
    Fields::from(vec![
        Field::new("from", DataType::Utf8, false),
        Field::new("to", DataType::Utf8, false),
        Field::new("count", DataType::Float64, false),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MarkovRemovalEffects {
    signature: Signature,
}

impl MarkovRemovalEffects {
    pub fn new() -> Self {
        let path = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::Exact(vec![
                    path,
                    DataType::Float64,
                    DataType::Float64,
                ])],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for MarkovRemovalEffects {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for MarkovRemovalEffects {
    fn name(&self) -> &str {
        "markov_removal_effects"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let path = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        match arg_types {
            [DataType::List(_) | DataType::LargeList(_), _, _] => {
                Ok(vec![path, DataType::Float64, DataType::Float64])
            }
            _ => exec_err!("markov_removal_effects(path list<text>, conversions, nulls)"),
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(list_of(result_fields()))
    }
    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Transitions::default()))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}_transitions", args.name),
            list_of(transition_fields()),
            true,
        ))])
    }
}

/// Transition counts between states.
#[derive(Debug, Default, Clone)]
pub struct Transitions {
    counts: BTreeMap<(String, String), f64>,
}

impl Transitions {
    /// Adds one path with its conversion and null counts.
    pub fn add_path(&mut self, channels: &[&str], conversions: f64, nulls: f64) {
        let total = conversions + nulls;
        if channels.is_empty() || total <= 0.0 {
            return;
        }
        let mut from = START;
        for c in channels {
            *self
                .counts
                .entry((from.to_string(), c.to_string()))
                .or_default() += total;
            from = c;
        }
        if conversions > 0.0 {
            *self
                .counts
                .entry((from.to_string(), CONVERSION.to_string()))
                .or_default() += conversions;
        }
        if nulls > 0.0 {
            *self
                .counts
                .entry((from.to_string(), NULL.to_string()))
                .or_default() += nulls;
        }
    }

    pub fn channels(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for (from, to) in self.counts.keys() {
            for s in [from, to] {
                if ![START, CONVERSION, NULL].contains(&s.as_str()) {
                    set.insert(s.clone());
                }
            }
        }
        set.into_iter().collect()
    }

    /// Probability of reaching `conversion` from `start`, with `removed` sent to `null`.
    pub fn p_conversion(&self, removed: Option<&str>) -> f64 {
        let channels = self.channels();
        // Transient states: start (0) and the channels (1..).
        let n = channels.len() + 1;
        let index = |s: &str| -> Option<usize> {
            if s == START {
                Some(0)
            } else {
                channels
                    .binary_search_by(|c| c.as_str().cmp(s))
                    .ok()
                    .map(|i| i + 1)
            }
        };
        let mut totals = vec![0.0; n];
        for ((from, _), c) in &self.counts {
            if let Some(i) = index(from) {
                totals[i] += c;
            }
        }
        // (I - Q) x = r
        let mut a = vec![vec![0.0; n + 1]; n];
        for (i, row) in a.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        for ((from, to), c) in &self.counts {
            let Some(i) = index(from) else { continue };
            if totals[i] == 0.0 {
                continue;
            }
            let p = c / totals[i];
            if Some(to.as_str()) == removed {
                continue; // into the removed channel: to null
            }
            if to == CONVERSION {
                a[i][n] += p;
            } else if let Some(j) = index(to) {
                a[i][j] -= p;
            }
        }
        if let Some(r) = removed.and_then(index) {
            a[r] = vec![0.0; n + 1];
            a[r][r] = 1.0;
        }
        solve(a).map(|x| x[0]).unwrap_or(0.0)
    }

    /// `(channel, removal_effect, share)` for every channel, and `P`.
    pub fn removal_effects(&self) -> (Vec<(String, f64, f64)>, f64) {
        let p = self.p_conversion(None);
        let channels = self.channels();
        let effects: Vec<f64> = channels
            .iter()
            .map(|c| {
                if p > 0.0 {
                    (1.0 - self.p_conversion(Some(c)) / p).max(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        let sum: f64 = effects.iter().sum();
        let out = channels
            .into_iter()
            .zip(effects)
            .map(|(c, re)| {
                let share = if sum > 0.0 { re / sum } else { 0.0 };
                (c, re, share)
            })
            .collect();
        (out, p)
    }

    fn to_scalar(&self) -> Result<ScalarValue> {
        let (mut f, mut t, mut c) = (
            StringBuilder::new(),
            StringBuilder::new(),
            Float64Builder::new(),
        );
        for ((from, to), n) in &self.counts {
            f.append_value(from);
            t.append_value(to);
            c.append_value(*n);
        }
        list_scalar(
            transition_fields(),
            vec![
                Arc::new(f.finish()),
                Arc::new(t.finish()),
                Arc::new(c.finish()),
            ],
            self.counts.len(),
        )
    }
}

fn list_scalar(fields: Fields, columns: Vec<ArrayRef>, len: usize) -> Result<ScalarValue> {
    let structs = StructArray::try_new(fields.clone(), columns, None)?;
    let list = ListArray::try_new(
        Arc::new(Field::new("item", DataType::Struct(fields), true)),
        OffsetBuffer::from_lengths([len]),
        Arc::new(structs),
        None,
    )?;
    Ok(ScalarValue::List(Arc::new(list)))
}

/// Gaussian elimination with partial pivoting on an augmented matrix.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r == col {
                continue;
            }
            let factor = row[col] / pivot_row[col];
            if factor != 0.0 {
                for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= factor * p;
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

impl Accumulator for Transitions {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [paths, conversions, nulls] = values else {
            return exec_err!("markov_removal_effects expects three arguments");
        };
        let paths = paths.as_list::<i32>();
        let conversions = conversions.as_primitive::<Float64Type>();
        let nulls = nulls.as_primitive::<Float64Type>();
        for i in 0..paths.len() {
            if paths.is_null(i) {
                continue;
            }
            let item = paths.value(i);
            let channels: Vec<&str> = item.as_string::<i32>().iter().flatten().collect();
            let conv = if conversions.is_null(i) {
                0.0
            } else {
                conversions.value(i)
            };
            let null = if nulls.is_null(i) {
                0.0
            } else {
                nulls.value(i)
            };
            self.add_path(&channels, conv, null);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let (effects, p) = self.removal_effects();
        let (mut c, mut re, mut share, mut pc) = (
            StringBuilder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
        );
        for (channel, e, s) in &effects {
            c.append_value(channel);
            re.append_value(*e);
            share.append_value(*s);
            pc.append_value(p);
        }
        list_scalar(
            result_fields(),
            vec![
                Arc::new(c.finish()),
                Arc::new(re.finish()),
                Arc::new(share.finish()),
                Arc::new(pc.finish()),
            ],
            effects.len(),
        )
    }

    fn size(&self) -> usize {
        self.counts.len() * 80
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.to_scalar()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first() else {
            return Ok(());
        };
        let lists = lists.as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            let item = lists.value(i);
            let s = item.as_struct();
            let (from, to, count) = (
                s.column(0).as_string::<i32>(),
                s.column(1).as_string::<i32>(),
                s.column(2).as_primitive::<Float64Type>(),
            );
            for j in 0..s.len() {
                *self
                    .counts
                    .entry((from.value(j).to_string(), to.value(j).to_string()))
                    .or_default() += count.value(j);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths: A > B converts once, A fails once, B converts once.
    /// start->A 2/3, start->B 1/3; A->B 1/2, A->null 1/2; B->conv 1.
    /// P = 2/3 * 1/2 + 1/3 = 2/3. Without A: P = 1/3 (RE 1/2). Without B: P = 0 (RE 1).
    #[test]
    fn hand_solved_chain() {
        let mut t = Transitions::default();
        t.add_path(&["A", "B"], 1.0, 0.0);
        t.add_path(&["A"], 0.0, 1.0);
        t.add_path(&["B"], 1.0, 0.0);
        let (effects, p) = t.removal_effects();
        assert!((p - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(effects[0].0, "A");
        assert!((effects[0].1 - 0.5).abs() < 1e-12);
        assert!((effects[1].1 - 1.0).abs() < 1e-12);
        assert!((effects[0].2 - 1.0 / 3.0).abs() < 1e-12);
        assert!((effects[1].2 - 2.0 / 3.0).abs() < 1e-12);
    }

    /// A self-loop: A -> A -> conv and A -> null: P(A) solves x = 1/3 x + 1/3.
    #[test]
    fn loops_are_solved_exactly() {
        let mut t = Transitions::default();
        t.add_path(&["A", "A"], 1.0, 0.0);
        t.add_path(&["A"], 0.0, 1.0);
        // start->A: 2; A->A: 1, A->conv: 1, A->null: 1.
        assert!((t.p_conversion(None) - 0.5).abs() < 1e-12);
        let (effects, _) = t.removal_effects();
        assert!((effects[0].1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_conversion_means_zero_shares() {
        let mut t = Transitions::default();
        t.add_path(&["A"], 0.0, 3.0);
        let (effects, p) = t.removal_effects();
        assert_eq!(p, 0.0);
        assert_eq!(effects[0].2, 0.0);
    }
}
