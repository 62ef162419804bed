//! Unique keys proven while a table is written in key order.
//!
//! A materialised table is written sorted by its `order_by` columns. When a `unique` data
//! test names exactly the first columns of that order (in any order), every repeated key
//! sits in adjacent rows, so comparing each row with its predecessor as the rows stream
//! to the writer decides the test: no adjacent pair equal means no duplicate at all.
//! [`SortedKeyCheck`] does that comparison (nulls equal, as in `GROUP BY`), and
//! [`crate::datatests::run_tests`] skips the test's `GROUP BY ... HAVING count(*) > 1`
//! query for a key it proved unique. A key seen twice proves nothing here: the query
//! runs as before and reports the count and the first offending rows.
//!
//! At 1M customers the query of `int_purchases`' unique test (1.68M rows, a string and
//! an integer key) took about a quarter of a second after the table was written; the
//! comparison costs one pass over the key columns of batches already in memory.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::cmp::not_distinct;
use datafusion::arrow::compute::kernels::partition::partition;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::datatests::DataTest;

/// A key (columns of a `unique` test) checkable against the sort order it is written in.
#[derive(Debug, Clone)]
struct Key {
    /// The index of its test in the model's tests.
    test: usize,
    /// Its length: the key is the first `len` columns of the sort order.
    len: usize,
    /// Two adjacent rows had this key (or a column could not be compared).
    repeated: bool,
}

/// Watches rows stream by in sort order and tells which `unique` keys never repeated.
#[derive(Debug)]
pub struct SortedKeyCheck {
    /// Positions in the batches of the sort-order columns the keys use, in sort order.
    positions: Vec<usize>,
    keys: Vec<Key>,
    /// The key columns of the last row seen, one-row arrays.
    last: Option<Vec<ArrayRef>>,
}

impl SortedKeyCheck {
    /// The check for the `unique` tests of `tests` that name a prefix of `sorted_by`
    /// (the columns the rows arrive sorted by) in a table of `schema`. Keys with a float
    /// column are left to their queries: float equality in a sort and in `GROUP BY`
    /// may differ (`-0.0`, NaN).
    pub fn new(tests: &[DataTest], sorted_by: &[String], schema: &Schema) -> Self {
        let mut keys = vec![];
        let unique = tests.iter().enumerate();
        for (test, columns) in unique.filter_map(|(i, t)| Some((i, t.unique.as_ref()?))) {
            let len = columns.len();
            let Some(prefix) = sorted_by.get(..len) else {
                continue;
            };
            let mut named: Vec<&String> = columns.iter().collect();
            let mut sorted: Vec<&String> = prefix.iter().collect();
            named.sort();
            sorted.sort();
            // Every key column is in the table and compares exactly.
            let exact = prefix.iter().all(|c| {
                schema.field_with_name(c).is_ok_and(|f| {
                    !matches!(
                        f.data_type(),
                        DataType::Float16 | DataType::Float32 | DataType::Float64
                    )
                })
            });
            if len > 0 && named == sorted && exact {
                keys.push(Key {
                    test,
                    len,
                    repeated: false,
                });
            }
        }
        let longest = keys.iter().map(|k| k.len).max().unwrap_or(0);
        let positions = sorted_by[..longest]
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .collect();
        Self {
            positions,
            keys,
            last: None,
        }
    }

    /// Compares the rows of `batch` with each other and its first row with the last
    /// row seen before it.
    pub fn observe(&mut self, batch: &RecordBatch) {
        let rows = batch.num_rows();
        if self.keys.iter().all(|k| k.repeated) || rows == 0 {
            return;
        }
        let columns: Vec<ArrayRef> = self
            .positions
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        for key in self.keys.iter_mut().filter(|k| !k.repeated) {
            let within = partition(&columns[..key.len]).map(|runs| runs.len() < rows);
            let across = match &self.last {
                None => Ok(false),
                Some(last) => equal_first_rows(&last[..key.len], &columns[..key.len]),
            };
            // A column the kernels cannot compare leaves the key to its query.
            key.repeated = within.unwrap_or(true) || across.unwrap_or(true);
        }
        self.last = Some(columns.iter().map(|c| c.slice(rows - 1, 1)).collect());
    }

    /// The indices (in the model's tests) of the `unique` tests this check decides.
    pub fn checked_tests(&self) -> Vec<usize> {
        self.keys.iter().map(|k| k.test).collect()
    }

    /// The indices (in the model's tests) of the `unique` tests whose key no two rows
    /// shared.
    pub fn passed_tests(&self) -> Vec<usize> {
        self.keys
            .iter()
            .filter(|k| !k.repeated)
            .map(|k| k.test)
            .collect()
    }
}

/// Whether row 0 of `a` equals row 0 of `b` in every column (nulls equal).
fn equal_first_rows(a: &[ArrayRef], b: &[ArrayRef]) -> datafusion::arrow::error::Result<bool> {
    for (a, b) in a.iter().zip(b) {
        let same = not_distinct(&a.slice(0, 1), &b.slice(0, 1))?;
        if !same.value(0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Test helpers that [`crate::hashed_keys`] and [`crate::materialize`] tests share.
#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    pub(crate) fn unique(columns: &[&str]) -> DataTest {
        DataTest {
            unique: Some(columns.iter().map(|c| c.to_string()).collect()),
            ..DataTest::default()
        }
    }

    pub(crate) fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("customer", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
        ]))
    }

    pub(crate) fn batch(customers: &[Option<&str>], n: &[Option<i64>]) -> RecordBatch {
        let scores = Float64Array::from(vec![0.5; n.len()]);
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(customers.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(scores),
            ],
        )
        .unwrap()
    }

    fn sorted_by(columns: &[&str]) -> Vec<String> {
        columns.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn only_keys_that_are_a_prefix_of_the_order_without_floats_are_checked() {
        let tests = [
            unique(&["n", "customer"]),
            unique(&["customer"]),
            unique(&["n"]),
            unique(&["customer", "n", "score"]),
        ];
        let check = SortedKeyCheck::new(&tests, &sorted_by(&["customer", "n", "score"]), &schema());
        // unique(n, customer) and unique(customer).
        assert_eq!(check.passed_tests(), [0, 1]);
        let none = SortedKeyCheck::new(&tests, &[], &schema());
        assert!(none.passed_tests().is_empty());
    }

    #[test]
    fn a_key_repeated_within_or_across_batches_is_not_proven() {
        let tests = [unique(&["customer", "n"]), unique(&["customer"])];
        let order = sorted_by(&["customer", "n"]);
        let mut check = SortedKeyCheck::new(&tests, &order, &schema());
        check.observe(&batch(&[Some("a"), Some("a")], &[Some(1), Some(2)]));
        assert_eq!(check.passed_tests(), [0], "unique(customer, n)");
        // The next batch starts with the last key of the one before.
        check.observe(&batch(&[Some("a"), Some("b")], &[Some(2), Some(1)]));
        assert!(check.passed_tests().is_empty());

        let mut check = SortedKeyCheck::new(&tests, &order, &schema());
        check.observe(&batch(&[Some("a")], &[Some(1)]));
        check.observe(&batch(&[Some("b"), Some("c")], &[Some(1), Some(1)]));
        check.observe(&batch(&[], &[]));
        check.observe(&batch(&[Some("d")], &[Some(1)]));
        assert_eq!(check.passed_tests().len(), 2);
    }

    #[test]
    fn nulls_are_equal_as_in_group_by() {
        let tests = [unique(&["customer", "n"])];
        let order = sorted_by(&["customer", "n"]);
        let mut check = SortedKeyCheck::new(&tests, &order, &schema());
        check.observe(&batch(&[Some("a"), None], &[Some(1), None]));
        assert_eq!(check.passed_tests().len(), 1);
        check.observe(&batch(&[None], &[None]));
        assert!(check.passed_tests().is_empty());
    }
}
